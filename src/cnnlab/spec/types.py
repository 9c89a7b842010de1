"""The spec objects: frozen dataclasses that code past the edge sees (layers, models, studies)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

from cnnlab.errors import SpecError
from cnnlab.grid import Scalar, did_you_mean
from cnnlab.spec.recipes import KerasObject
from cnnlab.spec.training import checked_fields

Padding = Literal["valid", "same"]
Pair = tuple[int, int]

# Keras 3's activation names (keras/src/activations/__init__.py, ALL_OBJECTS_DICT), each an
# `activation =` value and a layer; cnnlab.layers.ACTIVATIONS holds their torch modules.
ACTIVATIONS = (
    "relu",
    "relu6",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "hard_tanh",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "gelu",
    "silu",
    "hard_silu",
    "mish",
    "softplus",
    "softsign",
    "log_sigmoid",
    "tanh_shrink",
    "exponential",
    "softmax",
    "linear",
)
# Keras's other names of the same functions; a spec keeps the name Keras's get_config() writes.
ACTIVATION_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

# Dense(units=CLASSES) means "as many units as the dataset has classes" (the notebook's
# `num_classes`), so one spec serves MNIST and any other dataset.
CLASSES = "classes"


# A field added after runs were stored: left out of run keys while it has its default, so
# studies stored before it was added still resume (cnnlab.store.identity).
NEW_FIELD = {"omit_default": True}


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"  # Keras default
    activation: str = "linear"  # Keras default: activation=None
    use_bias: bool = True
    # keras/src/layers/convolutional/conv2d.py: dilation_rate=(1, 1); Keras refuses
    # strides > 1 together with dilation_rate > 1 (base_conv.py), and so does the parser.
    dilation_rate: Pair = field(default=(1, 1), metadata=NEW_FIELD)


@dataclass(frozen=True)
class SeparableConv2D:
    """keras/src/layers/convolutional/separable_conv2d.py: its defaults, in its order."""

    filters: int
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    dilation_rate: Pair = (1, 1)
    depth_multiplier: int = 1
    activation: str = "linear"
    use_bias: bool = True


@dataclass(frozen=True)
class DepthwiseConv2D:
    """keras/src/layers/convolutional/depthwise_conv2d.py: its defaults, in its order."""

    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    depth_multiplier: int = 1
    dilation_rate: Pair = (1, 1)
    activation: str = "linear"
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
class GlobalMaxPooling2D:
    pass


@dataclass(frozen=True)
class LayerNormalization:
    # keras/src/layers/normalization/layer_normalization.py: axis=-1 (channels, or units),
    # epsilon=1e-3, center and scale on.
    epsilon: float = 1e-3


@dataclass(frozen=True)
class Dense:
    units: int | Literal["classes"]
    activation: str = "linear"
    use_bias: bool = True


@dataclass(frozen=True)
class Activation:
    activation: str


SHORTCUTS = ("identity", "projection", "none")


@dataclass(frozen=True)
class Residual:
    """A block whose output is activation(layers(x) + shortcut(x)), as in Keras's ResNet v1.

    shortcut: "identity" adds x itself (the layers must keep x's shape); "projection" adds
    Conv2D(1x1, the block's strides) then BatchNormalization of x, for a block that changes the
    shape (keras/src/applications/resnet.py, `residual_block_v1`); "none" adds nothing (a plain
    block: the other level of a plain-vs-residual grid axis). Written out, never inferred, so
    the file shows the structure and layer names do not depend on the input shape.
    """

    layers: tuple[Layer, ...]
    shortcut: str = "identity"
    activation: str = "linear"  # after the addition; ResNet v1 writes "relu"
    # True exactly when shortcut is "none": before cnnlab built such a block without the
    # addition, it added the identity (a bug), so its stored runs trained another network.
    # Being part of the run key only for these blocks (NEW_FIELD: left out while False), it
    # sends them to be trained again and keeps every other stored key as it was.
    adds_nothing: bool = field(default=False, metadata=NEW_FIELD, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adds_nothing", self.shortcut == "none")


Layer = Union[  # noqa: UP007 (a runtime alias, kept readable on 3.10)
    Conv2D,
    SeparableConv2D,
    DepthwiseConv2D,
    MaxPooling2D,
    AveragePooling2D,
    Dropout,
    BatchNormalization,
    LayerNormalization,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Dense,
    Activation,
    Residual,
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
    """How a run trains: the one place training defaults live, checked when made.

    A bad field raises a SpecError naming it, the rule and the value (a study file's parser
    adds the file and line). `identity()` is what run keys and checkpoints hash.
    """

    epochs: int = 12  # the seed notebook's
    batch_size: int = 128  # the seed notebook's
    # A fraction of the training set held out (Keras's validation_split: the last part), or
    # "test" to validate on the test set as the seed notebook did.
    validation: float | Literal["test"] = 0.1
    train_limit: int | None = None  # train on the first N training images only (quick looks)
    # "bf16": autocast to bfloat16 (the fast mode on CPUs and GPUs that have it); fp32 otherwise.
    precision: Literal["fp32", "bf16"] = "fp32"
    # Keras preprocessing layers applied to training batches only ({ random_crop = 32, pad = 4 }).
    augment: tuple[KerasObject, ...] = ()
    # A Keras learning-rate schedule, evaluated at every step (as Keras's optimizer does).
    learning_rate_schedule: KerasObject | None = None
    early_stopping: KerasObject | None = None  # Keras's EarlyStopping callback
    reduce_lr_on_plateau: KerasObject | None = None  # Keras's ReduceLROnPlateau callback
    label_smoothing: float = 0.0  # CategoricalCrossentropy(label_smoothing=...)
    # "scale": x / 255 (the notebook's); "per-channel": then (x - mean) / std per channel, with
    # the mean and std of the images trained on (never the validation part or the test set).
    normalize: Literal["scale", "per-channel"] = "scale"

    def __post_init__(self) -> None:
        for name, value in checked_fields(self).items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> TrainingSpec:
        """A copy with `changes` (fields by name), checked as a new spec is."""
        names = [f.name for f in fields(self)]
        for name in changes:
            if name not in names:
                raise SpecError(
                    f"TrainingSpec has no field {name!r}{did_you_mean(name, names)} "
                    f"(fields: {', '.join(names)})"
                )
        return dataclasses.replace(self, **changes) if changes else self

    def identity(self) -> dict[str, Any]:
        """Every field that changes a run's numbers, as run keys hash them.

        Fields added after studies were first stored appear only when set, so the keys of
        studies that do not use them stay what they were.
        """
        identity = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        for name, default in RECIPE_DEFAULTS.items():
            if getattr(self, name) != default:
                identity[name] = _plain(getattr(self, name))
        return identity


def _plain(value: Any) -> Any:
    """JSON's types for a recipe field: a KerasObject as {"name": ..., its arguments}."""
    if isinstance(value, KerasObject):
        return {"name": value.name, **{key: _plain(v) for key, v in value.args}}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


# The training fields that every run key has held since the first stored study.
IDENTITY_FIELDS = ("epochs", "batch_size", "validation", "train_limit", "precision")
# Fields added later: in a run's identity only when set.
RECIPE_DEFAULTS: dict[str, Any] = {
    "augment": (),
    "learning_rate_schedule": None,
    "early_stopping": None,
    "reduce_lr_on_plateau": None,
    "label_smoothing": 0.0,
    "normalize": "scale",
}


@dataclass(frozen=True)
class SeedRange:
    """`seeds = { min = 2, max = 10 }`: seeds added while a model's place is open
    (`cnnlab run --until-decided`, docs/sequential.md); margin and budget as its options."""

    min: int
    max: int
    margin: float | None = None  # accuracy points, as --margin
    budget: str | None = None  # as --budget: "500runs", "2h"


@dataclass(frozen=True)
class Pruning:
    """`prune = { method = "halving", factor = 3, min_epochs = 1 }`: stop the models that rank
    low at a rung (`cnnlab run --prune halving`, docs/sequential.md). None: that option's
    default. Not part of [training]: pruning decides which runs go on, not what a run computes,
    so run keys (and finished runs) stay the same with or without it."""

    method: str = "halving"
    factor: int | None = None  # as --prune-factor
    min_epochs: int | None = None  # as --prune-min-epochs
    metric: str | None = None  # as --prune-metric: val_accuracy or val_loss


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
    prune: Pruning | None = None
