"""The spec objects: frozen dataclasses that code past the edge sees (layers, models, studies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from cnnlab.grid import Scalar

Padding = Literal["valid", "same"]
Pair = tuple[int, int]

ACTIVATIONS = (
    "relu",
    "sigmoid",
    "tanh",
    "elu",
    "selu",
    "leaky_relu",
    "gelu",
    "softmax",
    "linear",
)

# Dense(units=CLASSES) means "as many units as the dataset has classes" (the notebook's
# `num_classes`), so one spec serves MNIST and any other dataset.
CLASSES = "classes"


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"  # Keras default
    activation: str = "linear"  # Keras default: activation=None
    use_bias: bool = True


@dataclass(frozen=True)
class MaxPooling2D:
    pool_size: Pair = (2, 2)
    strides: Pair | None = None  # Keras: None means strides = pool_size
    padding: Padding = "valid"


@dataclass(frozen=True)
class AveragePooling2D:
    pool_size: Pair = (2, 2)
    strides: Pair | None = None
    padding: Padding = "valid"


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class BatchNormalization:
    momentum: float = 0.99  # Keras default; torch's momentum is 1 - this
    epsilon: float = 1e-3  # Keras default; torch's is 1e-5


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class GlobalAveragePooling2D:
    pass


@dataclass(frozen=True)
class Dense:
    units: int | Literal["classes"]
    activation: str = "linear"
    use_bias: bool = True


@dataclass(frozen=True)
class Activation:
    activation: str


Layer = Union[  # noqa: UP007 (a runtime alias, kept readable on 3.10)
    Conv2D,
    MaxPooling2D,
    AveragePooling2D,
    Dropout,
    BatchNormalization,
    Flatten,
    GlobalAveragePooling2D,
    Dense,
    Activation,
]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer by name plus overrides of its Keras defaults, e.g. ("learning_rate", 0.1)."""

    name: str = "adadelta"
    params: tuple[tuple[str, float | bool], ...] = ()

    def kwargs(self) -> dict[str, float | bool]:
        return dict(self.params)


@dataclass(frozen=True)
class ModelSpec:
    """A Sequential model: an ordered list of layers and the optimizer it is compiled with."""

    name: str
    layers: tuple[Layer, ...]
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    description: str = ""
    # Figures reported elsewhere for this model (e.g. the seed notebook's "Test loss:"), by key.
    reported: tuple[tuple[str, float], ...] = ()
    # The grid axis values this model was generated with, in axis order (for per-factor effects).
    factors: tuple[tuple[str, Scalar], ...] = ()
    # Where each layer was written ("model.toml:7"; "" where unknown), for errors found later
    # (shapes need the dataset). Not part of the model: left out of equality and run keys.
    layer_places: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 12
    batch_size: int = 128
    # A fraction of the training set held out (Keras's validation_split: the last part), or
    # "test" to validate on the test set as the seed notebook did.
    validation: float | Literal["test"] = 0.1
    # "bf16": autocast to bfloat16 (the fast mode on CPUs and GPUs that have it); fp32 otherwise.
    precision: Literal["fp32", "bf16"] = "fp32"


@dataclass(frozen=True)
class SeedRange:
    """`seeds = { min = 2, max = 10 }`: seeds added while a model's place is open
    (`cnnlab run --until-decided`, docs/sequential.md); margin and budget as its options."""

    min: int
    max: int
    margin: float | None = None  # accuracy points, as --margin
    budget: str | None = None  # as --budget: "500runs", "2h"


@dataclass(frozen=True)
class StudySpec:
    """Models x seeds on one dataset with one training recipe."""

    name: str
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...] = (0,)  # with seed_range: its minimum, 0..min-1
    dataset: str = "mnist"
    training: TrainingSpec = field(default_factory=TrainingSpec)
    description: str = ""
    seed_range: SeedRange | None = None
