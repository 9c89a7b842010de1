"""Build the PyTorch network that Keras would build from the same layer list.

The result takes float NCHW images and returns logits: a final softmax is left out (the loss is
cross-entropy on logits, numerically safer than log of softmax) and recorded on the module as
`output_softmax = True`. Submodules carry Keras's layer names (`conv2d`, `conv2d_1`,
`max_pooling2d`, `dense`, ...), so parameters are named `conv2d.weight`, `dense_1.bias`, ...
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

from cnnlab import layers as keras_layers
from cnnlab import spec as s
from cnnlab.shapes import Shape, check_classifier_output, infer_shapes, named_layers

NamedLayer = tuple[str, s.Layer, nn.Module]


class KerasSequential(nn.Sequential):
    """A Sequential whose children are named as Keras names them; forward is the plain chain.

    `keras_layers` lists (keras_name, layer_spec, module) in order, the spec as written (its
    softmax included); `output_softmax` says the spec's final softmax was left out.
    """

    def __init__(
        self,
        named: list[NamedLayer],
        *,
        model_spec: s.ModelSpec,
        input_shape: tuple[int, int, int],
        classes: int,
        output_softmax: bool,
    ) -> None:
        super().__init__(OrderedDict((name, module) for name, _, module in named))
        self.keras_layers = tuple(named)
        self.model_spec = model_spec
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.output_softmax = output_softmax


def build_model(
    spec: s.ModelSpec,
    input_shape: tuple[int, int, int],
    classes: int,
    *,
    generator: torch.Generator | None = None,
) -> KerasSequential:
    """The spec's network with Keras's initial weights (glorot_uniform kernels, zero biases).

    `input_shape` is Keras's (H, W, C), but the module is torch's: it takes NCHW float images
    in [0, 1] (`images.permute(0, 3, 1, 2)` for Keras's NHWC) and returns logits. A final
    softmax of the spec is folded into the loss, as `F.cross_entropy` does it
    (`model.output_softmax` says so; `logits.softmax(1)` gives Keras's probabilities).
    Initial weights come from `generator` when given (the global RNG is then left untouched),
    else from torch's global RNG, so `torch.manual_seed` makes builds repeatable either way.
    Raises `SpecError` (layer index and rule) when the layers cannot take their inputs or the
    output is not one score per class.
    """
    shapes = infer_shapes(spec.layers, input_shape, classes, spec.layer_places)
    check_classifier_output(shapes, classes)
    built_layers, output_softmax = without_output_softmax(spec.layers)
    inputs: list[Shape] = [tuple(input_shape), *shapes[:-1]]
    names = named_layers(spec.layers)
    with _global_rng_kept(generator is not None):
        modules = [
            keras_layers.make_module(dataclasses.replace(item, layer=layer), shape, classes)
            for item, layer, shape in zip(names, built_layers, inputs, strict=True)
        ]
    if generator is not None:
        reset_parameters(modules, generator)
    pool_before_relu(modules)
    named = [(item.name, item.layer, module) for item, module in zip(names, modules, strict=True)]
    return KerasSequential(
        named,
        model_spec=spec,
        input_shape=input_shape,
        classes=classes,
        output_softmax=output_softmax,
    )


def without_output_softmax(layers: tuple[s.Layer, ...]) -> tuple[tuple[s.Layer, ...], bool]:
    """The layers with a final softmax (Dense's or an Activation layer's) made linear."""
    if not layers:
        return layers, False
    last = layers[-1]
    if getattr(last, "activation", None) == "softmax" and not isinstance(last, s.Residual):
        return (*layers[:-1], dataclasses.replace(last, activation="linear")), True
    return layers, False


def pool_before_relu(modules: list[nn.Module]) -> None:
    """Run a Conv2D's ReLU after the MaxPooling2D that follows it, on a quarter of the values.

    max(relu(a), relu(b)) == relu(max(a, b)) exactly (ReLU is monotonic, max is exact), and
    the gradient reaches the same element (or is zero in both orders when the window's max is
    <= 0), so the numbers are bit-identical to Keras's order. Measured: 3-8 % of a seed
    model's CPU training step, where ReLU and its backward over full-size maps are memory-bound.
    """
    for conv, pool in zip(modules[:-1], modules[1:], strict=True):
        if (
            isinstance(conv, keras_layers.Conv2D)
            and isinstance(conv.activation, nn.ReLU)
            and isinstance(pool, keras_layers.MaxPooling2D)
        ):
            pool.activation, conv.activation = conv.activation, nn.Identity()


def reset_parameters(modules: list[nn.Module], generator: torch.Generator | None) -> None:
    """Draw every kernel again from `generator`, layer by layer in order (Keras's initialisers)."""
    for module in modules:
        for part in module.modules():  # a block's layers in Keras's creation order
            if isinstance(part, keras_layers.KerasInitialised):
                part.reset_parameters(generator)


@contextlib.contextmanager
def _global_rng_kept(keep: bool) -> Iterator[None]:
    """Restore torch's global CPU RNG afterwards when `keep`: the modules' own first draw
    must not shift a training run's later dropout masks."""
    if not keep:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        yield
