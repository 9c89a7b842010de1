"""Several seeds of one network as one computation: the seeds' layers side by side.

Feature maps carry the seeds along the channel axis, (N, S*C, H, W): convolutions are grouped by
seed (groups=S), and batch norm, pooling and activations already act per channel. Vectors carry
them along a leading axis, (S, N, F): Dense is one batched matmul. Seed s only ever reads its own
channels and rows, so it computes what its separate run computes, up to the order of
floating-point sums. Its dropout masks come from its own generator, drawn in the order and layout
a separate run draws them, so on CPU they are the very same masks.

Each seed's own model (`build_model`'s) stays alive beside the stack: `write_back` copies the
stacked weights into them, so a seed is checkpointed, evaluated or resumed as a separate run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import layers as keras_layers
from cnnlab.build import KerasSequential
from cnnlab.spec import kind_of

Layout = Literal["map", "vector"]


class CannotStack(ValueError):
    """The network holds a layer whose stacked form would mix seeds (e.g. a softmax inside)."""


@dataclass(frozen=True)
class Binding:
    """A stacked tensor and the seeds' own tensors it was made of (parameter or buffer).

    how: "cat" along dim 0 (conv kernels, per-channel vectors), "stack" on a new dim 0 (Dense),
    or "shared" (a counter every seed holds the same value of).
    """

    stacked: torch.Tensor
    pieces: tuple[torch.Tensor, ...]
    how: Literal["cat", "stack", "shared"]

    def split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """`tensor` (shaped like `stacked`) cut into the seeds' parts."""
        seeds = len(self.pieces)
        if self.how == "cat":
            return list(tensor.chunk(seeds, 0))
        if self.how == "stack":
            return list(tensor.unbind(0))
        return [tensor] * seeds

    def join(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The seeds' tensors (shaped like `pieces`) as one shaped like `stacked`."""
        if self.how == "cat":
            return _like(torch.cat(list(tensors)), self.stacked)
        if self.how == "stack":
            return torch.stack(list(tensors))
        return tensors[0].clone()


def _like(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Keep channels_last kernels channels_last (oneDNN's and cuDNN's fast layout)."""
    if reference.dim() == 4 and reference.is_contiguous(memory_format=torch.channels_last):
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


class StackedSeeds(nn.Module):
    """S seeds' copies of one Keras network, trained as one; logits come out as (S, N, classes).

    `models` are the seeds' networks from `build_model` (already initialised, perhaps resumed);
    `dropout_generators` give each seed its own masks. Input: the seeds' batches side by side
    along channels, (N, S*C, H, W) (see `stack_images`).
    """

    def __init__(
        self, models: Sequence[KerasSequential], dropout_generators: Sequence[torch.Generator]
    ) -> None:
        super().__init__()
        if len(models) != len(dropout_generators):
            raise ValueError("one dropout generator per model is needed")
        self.seeds = len(models)
        self.bindings: list[Binding] = []  # parameters first, in each model's parameter order
        self.buffer_bindings: list[Binding] = []
        layout: Layout = "map"
        stacked = []
        for position, (name, layer, first) in enumerate(models[0].keras_layers):
            same = [model.keras_layers[position][2] for model in models]
            kind = kind_of(layer)
            try:
                module, layout = self._stack_layer(layer, first, same, layout, dropout_generators)
            except CannotStack as error:
                where = f"layer {position + 1} ({kind.keras_class} {name!r})"
                raise CannotStack(f"{where}: {error}") from None
            stacked.append(module)
        self.layers = nn.Sequential(*stacked)
        self.output_layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def stacked_parameters(self) -> list[nn.Parameter]:
        """The stacked parameters in each seed's own parameter order (optimiser states match)."""
        return [binding.stacked for binding in self.bindings]  # type: ignore[misc]

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked weights and statistics into every seed's own model."""
        for binding in (*self.bindings, *self.buffer_bindings):
            for piece, part in zip(binding.pieces, binding.split(binding.stacked), strict=True):
                piece.copy_(part)

    def _stack_layer(
        self,
        layer: object,
        first: nn.Module,
        same: list[nn.Module],
        layout: Layout,
        generators: Sequence[torch.Generator],
    ) -> tuple[nn.Module, Layout]:
        """The stacked form of one layer by its row's stacking rule (cnnlab.spec.kinds)."""
        rule = kind_of(layer).stacking
        if rule == "residual":
            return StackedResidual(self, layer, same, generators), "map"
        if rule == "conv":
            return StackedConv2D(same, self._bind), "map"
        if rule == "depthwise":
            return StackedDepthwiseConv2D(same, self._bind), "map"
        if rule == "separable":
            return StackedSeparableConv2D(same, self._bind), "map"
        if rule == "dense":
            return StackedDense(same, self._bind), "vector"
        if rule == "batchnorm":
            return StackedBatchNorm(same, layout, self._bind, self._bind_buffer), layout
        if rule == "layernorm":
            return StackedLayerNorm(same, layout, self.seeds, self._bind), layout
        if rule == "dropout":
            return StackedDropout(first.rate, generators, layout), layout
        if rule == "flatten":
            return StackedFlatten(self.seeds, layout), "vector"
        if rule in ("global_average", "global_max"):
            return StackedGlobalPooling(self.seeds, rule == "global_max"), "vector"
        if rule == "as_is":  # per channel already, without weights: pooling, activations
            _check_elementwise(first)
            _check_elementwise(getattr(first, "activation", None))  # a ReLU moved after a pool
            return first, layout
        raise CannotStack("--stack-seeds cannot stack this layer kind; train its seeds apart")

    def _bind(self, pieces: list[torch.Tensor], how: Literal["cat", "stack"]) -> nn.Parameter:
        joined = Binding(pieces[0], tuple(pieces), how).join([p.detach() for p in pieces])
        parameter = nn.Parameter(joined.clone())
        self.bindings.append(Binding(parameter, tuple(pieces), how))
        return parameter

    def _bind_buffer(
        self, pieces: list[torch.Tensor], how: Literal["cat", "shared"]
    ) -> torch.Tensor:
        joined = Binding(pieces[0], tuple(pieces), how).join(pieces).clone()
        self.buffer_bindings.append(Binding(joined, tuple(pieces), how))
        return joined


def _check_elementwise(activation: nn.Module | None) -> None:
    if isinstance(activation, nn.Softmax):
        raise CannotStack("a softmax inside the network normalises across channels")


class StackedResidual(nn.Module):
    """The seeds' residual blocks: their layers and shortcuts stacked, then added per channel."""

    def __init__(self, stacker: StackedSeeds, block, blocks: list[nn.Module], generators) -> None:
        super().__init__()
        first = blocks[0]
        _check_elementwise(first.after_add)
        self.after_add = first.after_add
        self.plain = first.plain
        parts = []
        for name, layer in zip(first.body_names, block.layers, strict=True):
            same = [getattr(seed, name) for seed in blocks]
            parts.append(stacker._stack_layer(layer, same[0], same, "map", generators)[0])
        self.body = nn.Sequential(*parts)
        shortcut = []
        for name, rule in zip(first.shortcut_names, ("conv", "batchnorm"), strict=False):
            same = [getattr(seed, name) for seed in blocks]
            if rule == "conv":
                shortcut.append(StackedConv2D(same, stacker._bind))
            else:
                shortcut.append(StackedBatchNorm(same, "map", stacker._bind, stacker._bind_buffer))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.after_add(y if self.plain else y + self.shortcut(x))


class StackedConv2D(nn.Module):
    """The seeds' Conv2D layers as one convolution with groups = seeds (TF 'same' padding kept)."""

    def __init__(self, convs: list[keras_layers.Conv2D], bind) -> None:
        super().__init__()
        first = convs[0]
        _check_elementwise(first.activation)
        # Each seed's groups side by side: seeds x the layer's own groups (depthwise: channels).
        self.groups = len(convs) * first.groups
        self.stride, self.padding, self.pre_pad = first.stride, first.padding, first.pre_pad
        self.dilation = first.dilation
        self.activation = first.activation
        self.weight = bind([conv.weight for conv in convs], "cat")  # (S*out, in, kh, kw)
        self.bias = bind([conv.bias for conv in convs], "cat") if first.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return self.activation(y)


class StackedDepthwiseConv2D(StackedConv2D):
    """The seeds' DepthwiseConv2D layers: groups = seeds x channels, kernels side by side.

    Seed s's channel c is group s*C + c, whose outputs are seed s's c*m ... c*m + m - 1: the
    seeds' kernels concatenated in order.
    """


class StackedSeparableConv2D(nn.Module):
    """The seeds' SeparableConv2D layers: a stacked depthwise, then a pointwise grouped by seed."""

    def __init__(self, convs: list[keras_layers.SeparableConv2D], bind) -> None:
        super().__init__()
        first = convs[0]
        _check_elementwise(first.activation)
        self.seeds = len(convs)
        self.stride, self.symmetric, self.pre_pad = first.stride, first.symmetric, first.pre_pad
        self.dilation, self.groups = first.dilation, first.groups * self.seeds
        self.activation = first.activation
        self.depthwise_weight = bind([conv.depthwise_weight for conv in convs], "cat")
        self.weight = bind([conv.weight for conv in convs], "cat")
        self.bias = bind([conv.bias for conv in convs], "cat") if first.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(
            x, self.depthwise_weight, None, self.stride, self.symmetric, self.dilation, self.groups
        )
        return self.activation(F.conv2d(y, self.weight, self.bias, groups=self.seeds))


class StackedDense(nn.Module):
    """The seeds' Dense layers as one batched matmul: (S, N, in) -> (S, N, out)."""

    def __init__(self, denses: list[keras_layers.Dense], bind) -> None:
        super().__init__()
        _check_elementwise(denses[0].activation)
        self.activation = denses[0].activation
        self.weight = bind([dense.weight for dense in denses], "stack")  # (S, out, in)
        has_bias = denses[0].bias is not None
        self.bias = bind([dense.bias for dense in denses], "stack") if has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.weight.transpose(1, 2)
        if self.bias is None:
            return self.activation(torch.bmm(x, kernel))
        return self.activation(torch.baddbmm(self.bias.unsqueeze(1), x, kernel))


class StackedBatchNorm(nn.Module):
    """The seeds' BatchNormalization layers as one over S*C channels (statistics per channel)."""

    def __init__(self, norms: list[nn.Module], layout: Layout, bind, bind_buffer) -> None:
        super().__init__()
        first = norms[0]
        self.layout = layout
        # The seeds' own class (Keras's moving-variance update), sized for all their channels.
        self.norm = type(first).__new__(type(first))
        torch_base = nn.BatchNorm2d if isinstance(first, nn.BatchNorm2d) else nn.BatchNorm1d
        torch_base.__init__(
            self.norm, first.num_features * len(norms), eps=first.eps, momentum=first.momentum
        )
        self.norm.weight = bind([n.weight for n in norms], "cat")
        self.norm.bias = bind([n.bias for n in norms], "cat")
        self.norm.running_mean = bind_buffer([n.running_mean for n in norms], "cat")
        self.norm.running_var = bind_buffer([n.running_var for n in norms], "cat")
        self.norm.num_batches_tracked = bind_buffer(
            [n.num_batches_tracked for n in norms], "shared"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "map":
            return self.norm(x)
        seeds, batch, units = x.shape  # (S, N, F) -> (N, S*F): one column per seed's unit
        y = self.norm(x.transpose(0, 1).reshape(batch, seeds * units))
        return y.view(batch, seeds, units).transpose(0, 1)


class StackedDropout(nn.Module):
    """Each seed's dropout mask from its own generator, as its separate run would draw it.

    On CPU the bits are `keras_layers.Dropout`'s: 16-bit integers, in the memory order of the
    seed's own tensor (channels_last maps, row-major vectors). Elsewhere each seed draws a
    uniform mask from its generator (the same distribution as torch's dropout kernel).
    """

    def __init__(self, rate: float, generators: Sequence[torch.Generator], layout: Layout) -> None:
        super().__init__()
        self.rate, self.layout = rate, layout
        self.generators = list(generators)
        self.reference = keras_layers.Dropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        seeds = len(self.generators)
        if self.layout == "map":
            batch, channels, height, width = x.shape
            shape = (batch, height, width, channels // seeds)  # a seed's map in memory order
            masks = torch.stack([self._mask(shape, g, x) for g in self.generators], dim=3)
            mask = masks.view(batch, height, width, channels).permute(0, 3, 1, 2)
        else:
            mask = torch.stack([self._mask(tuple(x.shape[1:]), g, x) for g in self.generators])
        return x * mask

    def _mask(self, shape: tuple[int, ...], generator: torch.Generator, x: torch.Tensor):
        count = 1
        for size in shape:
            count *= size
        scale = self.reference.scale
        if x.device.type == "cpu":
            words = torch.empty((count + 3) // 4, dtype=torch.int64)
            words.random_(-(2**63), None, generator=generator)
            bits = words.view(torch.int16)[:count].view(shape)
            return (bits >= self.reference.threshold).to(x.dtype).mul_(scale)
        keep = torch.rand(shape, generator=generator, device=x.device) >= self.rate
        return keep.to(x.dtype).mul_(scale)


class StackedFlatten(nn.Module):
    """Keras's (H, W, C) flatten per seed: (N, S*C, H, W) -> (S, N, H*W*C)."""

    def __init__(self, seeds: int, layout: Layout) -> None:
        super().__init__()
        self.seeds, self.layout = seeds, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "vector":
            return x.flatten(2)
        batch, channels, height, width = x.shape
        per_seed = x.view(batch, self.seeds, channels // self.seeds, height, width)
        return per_seed.permute(1, 0, 3, 4, 2).reshape(self.seeds, batch, -1)


class StackedGlobalPooling(nn.Module):
    """The mean (or maximum) over height and width per channel, then the seeds apart: (S, N, C)."""

    def __init__(self, seeds: int, maximum: bool = False) -> None:
        super().__init__()
        self.seeds, self.maximum = seeds, maximum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.amax(dim=(2, 3)) if self.maximum else x.mean(dim=(2, 3))
        return pooled.view(x.shape[0], self.seeds, -1).transpose(0, 1)


class StackedLayerNorm(nn.Module):
    """The seeds' LayerNormalization layers: each seed's channels (or units) normalised apart."""

    def __init__(
        self, norms: list[keras_layers.LayerNormalization], layout: Layout, seeds: int, bind
    ) -> None:
        super().__init__()
        self.layout, self.seeds, self.epsilon = layout, seeds, norms[0].epsilon
        self.weight = bind([norm.weight for norm in norms], "stack")  # (S, C)
        self.bias = bind([norm.bias for norm in norms], "stack")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "vector":  # (S, N, F)
            y = F.layer_norm(x, x.shape[-1:], None, None, self.epsilon)
            return y * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)
        batch, channels, height, width = x.shape  # (N, S*C, H, W) -> (N, H, W, S, C)
        per_seed = x.permute(0, 2, 3, 1).reshape(batch, height, width, self.seeds, -1)
        y = F.layer_norm(per_seed, per_seed.shape[-1:], None, None, self.epsilon)
        y = y * self.weight + self.bias
        return y.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def stack_images(batches: torch.Tensor) -> torch.Tensor:
    """The seeds' image batches (S, N, H, W, C) as the stack's input (N, S*C, H, W).

    One copy into (N, H, W, S, C) order: channels_last for the grouped convolution.
    """
    seeds, batch, height, width, channels = batches.shape
    side_by_side = batches.permute(1, 2, 3, 0, 4).reshape(batch, height, width, seeds * channels)
    return side_by_side.permute(0, 3, 1, 2)


def repeat_images(images: torch.Tensor, seeds: int) -> torch.Tensor:
    """One batch (N, H, W, C) shown to every seed (evaluation): (N, S*C, H, W)."""
    return images.repeat(1, 1, 1, seeds).permute(0, 3, 1, 2)


# -- optimiser state between the stack and the seeds' own optimisers ------------------------


def share_optimizer_state(
    stacked: torch.optim.Optimizer, stack: StackedSeeds, own: Sequence[torch.optim.Optimizer]
) -> None:
    """Give each seed's optimiser its part of the stacked state (for its checkpoint)."""
    for binding in stack.bindings:
        state = stacked.state.get(binding.stacked)
        if not state:
            continue
        for index, optimizer in enumerate(own):
            optimizer.state[binding.pieces[index]] = {
                key: _part(binding, value, index) for key, value in state.items()
            }
    for optimizer in own:
        _copy_group_settings(stacked, optimizer)


def gather_optimizer_state(
    stacked: torch.optim.Optimizer, stack: StackedSeeds, own: Sequence[torch.optim.Optimizer]
) -> None:
    """Start the stacked optimiser from the seeds' own states (restored from checkpoints)."""
    for binding in stack.bindings:
        states = [
            optimizer.state.get(piece) for optimizer, piece in zip(own, binding.pieces, strict=True)
        ]
        if not all(states):
            continue
        stacked.state[binding.stacked] = {
            key: _joined(binding, [state[key] for state in states])  # type: ignore[index]
            for key in states[0]  # type: ignore[union-attr]
        }
    _copy_group_settings(own[0], stacked)


def _part(binding, value: Any, index: int) -> Any:
    if torch.is_tensor(value) and value.shape == binding.stacked.shape:
        return binding.split(value)[index].clone()
    return value.clone() if torch.is_tensor(value) else value


def _joined(binding, values: list[Any]) -> Any:
    first = values[0]
    if torch.is_tensor(first) and first.shape == binding.pieces[0].shape and first.dim() > 0:
        return binding.join(values)
    return first.clone() if torch.is_tensor(first) else first


def _copy_group_settings(source: torch.optim.Optimizer, target: torch.optim.Optimizer) -> None:
    """Per-group values an optimiser keeps beside its tensors (Keras Adam's step count)."""
    for key, value in source.param_groups[0].items():
        if key != "params":
            target.param_groups[0][key] = value
