"""Short overviews of models, for listings such as `cnnlab models`."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.spec.types import (
    Conv2D,
    DepthwiseConv2D,
    Layer,
    ModelSpec,
    Pair,
    Residual,
    SeparableConv2D,
)


@dataclass(frozen=True)
class ModelOverview:
    """What a listing of models shows: enough to tell the seed's models apart at a glance."""

    name: str
    layers: int
    conv_layers: int
    kernel_sizes: tuple[Pair, ...]  # distinct, in order of appearance
    optimizer: str
    optimizer_params: tuple[tuple[str, float | bool], ...]
    description: str


def describe_model(spec: ModelSpec) -> ModelOverview:
    """The overview of one model (layer counts, kernel sizes, optimizer)."""
    convs = [
        layer
        for layer in _all_layers(spec.layers)
        if isinstance(layer, (Conv2D, SeparableConv2D, DepthwiseConv2D))
    ]
    return ModelOverview(
        name=spec.name,
        layers=len(spec.layers),
        conv_layers=len(convs),
        kernel_sizes=tuple(dict.fromkeys(layer.kernel_size for layer in convs)),
        optimizer=spec.optimizer.name,
        optimizer_params=spec.optimizer.params,
        description=spec.description,
    )


def _all_layers(layers: tuple[Layer, ...]) -> list[Layer]:
    """The layers, those inside residual blocks included, in order."""
    found: list[Layer] = []
    for layer in layers:
        found += _all_layers(layer.layers) if isinstance(layer, Residual) else [layer]
    return found
