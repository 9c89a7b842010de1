"""PyTorch modules that compute exactly what the Keras layers of the same name compute.

Tensors are NCHW as torch expects; every Keras subtlety that changes numbers is reproduced:
TensorFlow's asymmetric 'same' padding, Keras's initialisers and BatchNormalization statistics,
Flatten in Keras's (H, W, C) order. Sources are cited at each constant; `tests/test_build_parity.py`
checks the outputs against real Keras to 1e-5.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import spec
from cnnlab.errors import SpecError
from cnnlab.shapes import NamedLayer, Shape, dense_units, same_padding
from cnnlab.spec import kind_of
from cnnlab.spec.kinds import layer_shapes, projection


class Exponential(nn.Module):
    """keras.activations.exponential: exp(x), which torch has as a function only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


# Keras 3's activation strings (keras/src/activations/__init__.py maps each to the function of
# that name in keras/src/activations/activations.py, called with its defaults; the TensorFlow
# backend's formulas are in keras/src/backend/tensorflow/nn.py):
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,  # Keras 3: relu6(x + 3) / 6, torch's formula exactly
    "tanh": nn.Tanh,
    "hard_tanh": nn.Hardtanh,  # clip(x, -1, 1) in both
    "elu": nn.ELU,  # keras.activations.elu(x, alpha=1.0) = torch's default alpha
    "selu": nn.SELU,  # same fixed alpha and scale constants in both
    "celu": nn.CELU,  # alpha=1.0 in both
    # `activation="leaky_relu"` is keras.activations.leaky_relu(x, negative_slope=0.2); the
    # 0.3 default belongs to the LeakyReLU *layer*, which the string does not mean.
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.2),
    # keras.activations.gelu(x, approximate=False): the exact erf form, torch's "none".
    "gelu": lambda: nn.GELU(approximate="none"),
    "silu": nn.SiLU,  # x * sigmoid(x); Keras's "swish" is the same function
    "hard_silu": nn.Hardswish,  # x * relu6(x + 3) / 6; Keras's "hard_swish" too
    "mish": nn.Mish,  # x * tanh(softplus(x))
    # log(1 + exp(x)); torch returns x itself above x = 20, where the two differ by < 1e-8.
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "log_sigmoid": nn.LogSigmoid,
    "tanh_shrink": nn.Tanhshrink,  # x - tanh(x)
    "exponential": Exponential,
    # Keras's softmax acts on the last (channels) axis: axis 1 in NCHW and in (N, units).
    "softmax": lambda: nn.Softmax(dim=1),
    "linear": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """The module for a Keras activation string; unknown names get close matches suggested."""
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, ACTIVATIONS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}{hint}")
    return ACTIVATIONS[name]()


def _same_pads(hw: tuple[int, int], window, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) of TF's 'same' padding for a map of size `hw`."""
    return (
        same_padding(hw[0], window[0], strides[0]),
        same_padding(hw[1], window[1], strides[1]),
    )


def _split_padding(pads) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """Padding as torch's symmetric (pad_h, pad_w), or, when uneven, an F.pad tuple instead."""
    (top, bottom), (left, right) = pads
    if top == bottom and left == right:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


def glorot_uniform_(
    weight: torch.Tensor,
    generator: torch.Generator | None = None,
    fans: tuple[int, int] | None = None,
) -> None:
    """Keras's default kernel initialiser, with Keras's fans, in place.

    keras/src/initializers/random_initializers.py: GlorotUniform = VarianceScaling(scale=1,
    mode="fan_avg", distribution="uniform"), limit = sqrt(3 * scale / ((fan_in + fan_out) / 2))
    = sqrt(6 / (fan_in + fan_out)); `compute_fans` takes a conv kernel (kh, kw, in, out) as
    fan_in = kh*kw*in, fan_out = kh*kw*out. Torch's (out, in, kh, kw) gives the same products;
    a depthwise kernel, whose Keras shape torch does not share, passes its `fans`.
    """
    receptive_field = math.prod(weight.shape[2:])
    fan_in, fan_out = fans or (weight.shape[1] * receptive_field, weight.shape[0] * receptive_field)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-limit, limit, generator=generator)


class KerasInitialised:
    """A module whose weights Keras draws at build time; `build` redraws them in layer order."""

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        raise NotImplementedError


class _KerasKernelInit(KerasInitialised):
    """glorot_uniform kernel, zero bias: Keras's Conv2D and Dense defaults
    (kernel_initializer="glorot_uniform", bias_initializer="zeros" in
    keras/src/layers/convolutional/base_conv.py and keras/src/layers/core/dense.py)."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        glorot_uniform_(self.weight, generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def _window_padding(layer, input_hw: tuple[int, int]):
    """(symmetric, pre_pad) of a convolution: TF's 'same' padding for the dilated kernel.

    TF pads for the effective kernel size (k - 1) * dilation + 1
    (tensorflow/python/ops/nn_ops.py, "Notes on padding").
    """
    if layer.padding != "same":
        return (0, 0), None
    dilation = getattr(layer, "dilation_rate", (1, 1))
    window = tuple((k - 1) * d + 1 for k, d in zip(layer.kernel_size, dilation, strict=True))
    return _split_padding(_same_pads(input_hw, window, layer.strides))


class Conv2D(_KerasKernelInit, nn.Conv2d):
    """Keras Conv2D: TF 'same' padding (extra row/column at the bottom/right), then activation.

    The padding is fixed at build time from the known input size: symmetric padding goes to the
    convolution itself; only an uneven one (even kernel, or stride > 1 on some sizes) costs an
    explicit zero pad.
    """

    def __init__(self, layer: spec.Conv2D, in_channels: int, input_hw: tuple[int, int]) -> None:
        symmetric, pre_pad = _window_padding(layer, input_hw)
        super().__init__(
            in_channels,
            layer.filters,
            kernel_size=layer.kernel_size,
            stride=layer.strides,
            padding=symmetric,
            dilation=layer.dilation_rate,
            bias=layer.use_bias,
        )
        self.pre_pad = pre_pad
        self.activation = make_activation(layer.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self.activation(super().forward(x))


class DepthwiseConv2D(KerasInitialised, nn.Conv2d):
    """Keras DepthwiseConv2D: each input channel convolved with `depth_multiplier` kernels.

    Output channel c * m + j comes from input channel c (tf.nn.depthwise_conv2d's order), which
    is torch's grouped convolution with groups = channels. Keras's kernel is (kh, kw, C, m), so
    glorot's fans are kh*kw*C and kh*kw*m (keras/src/layers/convolutional/base_depthwise_conv.py:
    depthwise_initializer="glorot_uniform", bias_initializer="zeros").
    """

    def __init__(self, layer, in_channels: int, input_hw: tuple[int, int]) -> None:
        symmetric, pre_pad = _window_padding(layer, input_hw)
        self.fans = tuple(
            math.prod(layer.kernel_size) * n for n in (in_channels, layer.depth_multiplier)
        )
        super().__init__(
            in_channels,
            in_channels * layer.depth_multiplier,
            kernel_size=layer.kernel_size,
            stride=layer.strides,
            padding=symmetric,
            dilation=layer.dilation_rate,
            groups=in_channels,
            bias=layer.use_bias,
        )
        self.pre_pad = pre_pad
        self.activation = make_activation(layer.activation)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        glorot_uniform_(self.weight, generator, self.fans)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self.activation(super().forward(x))


class SeparableConv2D(KerasInitialised, nn.Module):
    """Keras SeparableConv2D: a depthwise convolution (no bias), then a 1x1 convolution + bias.

    keras/src/layers/convolutional/base_separable_conv.py: depthwise kernel (kh, kw, C, m),
    pointwise kernel (1, 1, C*m, filters), one bias of `filters`, both kernels glorot_uniform,
    drawn depthwise first. `weight` is the pointwise kernel (the layer's output channels), so
    a report shows it as the layer's kernel; `depthwise_weight` is the depthwise one.
    """

    def __init__(self, layer, in_channels: int, input_hw: tuple[int, int]) -> None:
        super().__init__()
        self.symmetric, self.pre_pad = _window_padding(layer, input_hw)
        self.stride, self.dilation, self.groups = layer.strides, layer.dilation_rate, in_channels
        depth = in_channels * layer.depth_multiplier
        self.fans = tuple(
            math.prod(layer.kernel_size) * n for n in (in_channels, layer.depth_multiplier)
        )
        self.depthwise_weight = nn.Parameter(torch.empty(depth, 1, *layer.kernel_size))
        self.weight = nn.Parameter(torch.empty(layer.filters, depth, 1, 1))
        self.bias = nn.Parameter(torch.empty(layer.filters)) if layer.use_bias else None
        self.activation = make_activation(layer.activation)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        glorot_uniform_(self.depthwise_weight, generator, self.fans)
        glorot_uniform_(self.weight, generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(
            x, self.depthwise_weight, None, self.stride, self.symmetric, self.dilation, self.groups
        )
        return self.activation(F.conv2d(y, self.weight, self.bias))


class Dense(_KerasKernelInit, nn.Linear):
    """Keras Dense on a vector; torch keeps the kernel as (out, in), Keras's transposed."""

    def __init__(self, in_features: int, units: int, activation: str, use_bias: bool) -> None:
        super().__init__(in_features, units, bias=use_bias)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_linear_fits(x, self.weight):
            return self.activation(_OneDnnLinear.apply(x, self.weight, self.bias))
        return self.activation(super().forward(x))


# oneDNN's linear primitive (the op torch.compile's CPU backend uses). torch's own CPU matmul
# goes to MKL's sgemm, which on AMD CPUs ran at half oneDNN's speed: the 9216x128 Dense of
# seed/reference took 4.5 ms of a 36 ms training step that way, 2.2 ms through oneDNN.
_LINEAR_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn_linear_fits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _LINEAR_POINTWISE is not None
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 2
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        # An export (ONNX, TorchScript) records the plain linear every runtime knows.
        and not (torch.compiler.is_compiling() or torch.jit.is_tracing())
    )


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN; strided (transposed) operands are read in place."""
    return _LINEAR_POINTWISE(x, weight, bias, "none", [None], None)


class _OneDnnLinear(torch.autograd.Function):
    """F.linear computed by oneDNN, forward and backward (the same products, in another BLAS)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        grad_x = _linear(grad, weight.t(), None) if need_x else None  # grad @ weight
        grad_weight = _linear(grad.t(), x.t(), None) if need_weight else None  # grad.T @ x
        grad_bias = grad.sum(0) if ctx.has_bias and need_bias else None
        return grad_x, grad_weight, grad_bias


class MaxPooling2D(nn.Module):
    """Keras MaxPooling2D; 'same' pads with -inf, the odd row/column at the bottom/right (TF)."""

    def __init__(self, layer: spec.MaxPooling2D, input_hw: tuple[int, int]) -> None:
        super().__init__()
        strides = layer.strides or layer.pool_size  # Keras: strides=None means pool_size
        pads = ((0, 0), (0, 0))
        if layer.padding == "same":
            pads = _same_pads(input_hw, layer.pool_size, strides)
        symmetric, self.pre_pad = _split_padding(pads)
        # torch's own pooling padding is -inf too, so the symmetric case needs no copy.
        self.pool = nn.MaxPool2d(layer.pool_size, strides, padding=symmetric)
        # The preceding Conv2D's ReLU when `build` moves it here (see build.pool_before_relu).
        self.activation: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, value=-math.inf)
        return self.activation(self.pool(x))


class AveragePooling2D(nn.Module):
    """Keras AveragePooling2D; 'same' averages over the real pixels only, as TF does.

    TF's avg_pool divides each window by the number of input pixels it covers, not counting
    padding. For uneven padding the windows are summed over a zero pad and divided by a
    per-position count fixed at build time (a non-persistent buffer: no state_dict entry).
    """

    def __init__(self, layer: spec.AveragePooling2D, input_hw: tuple[int, int]) -> None:
        super().__init__()
        self.window = layer.pool_size
        self.strides = layer.strides or layer.pool_size
        pads = ((0, 0), (0, 0))
        if layer.padding == "same":
            pads = _same_pads(input_hw, self.window, self.strides)
        self.symmetric, self.pre_pad = _split_padding(pads)
        if self.pre_pad is not None:
            ones = F.pad(torch.ones(1, 1, *input_hw), self.pre_pad)
            counts = F.avg_pool2d(ones, self.window, self.strides, divisor_override=1)
            self.register_buffer("inverse_count", 1.0 / counts, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is None:
            return F.avg_pool2d(
                x, self.window, self.strides, self.symmetric, count_include_pad=False
            )
        summed = F.avg_pool2d(F.pad(x, self.pre_pad), self.window, self.strides, divisor_override=1)
        return summed * self.inverse_count


class _KerasBatchStatistics:
    """Keras's moving-variance update, on torch's fused batch norm.

    Keras (keras/src/layers/normalization/batch_normalization.py, `call`) blends the *biased*
    batch variance from `ops.moments` into moving_variance; torch blends the unbiased one
    (x n/(n-1)). Torch updates a copy, rv' = (1-m) rv + m u; Keras's value is
    (1-m) rv + m u (n-1)/n = rv' - (rv' - (1-m) rv) / n: a few C-sized operations. (The copy
    keeps the buffer autograd saved untouched, so backward still works.)
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor
    weight: nn.Parameter
    bias: nn.Parameter
    momentum: float
    eps: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        blended = self.running_var.clone()
        y = F.batch_norm(
            x, self.running_mean, blended, self.weight, self.bias, True, self.momentum, self.eps
        )
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            previous = self.running_var
            previous.copy_(blended - (blended - (1.0 - self.momentum) * previous) / count)
            self.num_batches_tracked.add_(1)
        return y


def _torch_bn_kwargs(layer: spec.BatchNormalization) -> dict[str, float]:
    # Keras: moving = momentum * moving + (1 - momentum) * batch (momentum=0.99 default);
    # torch: running = (1 - momentum) * running + momentum * batch, so torch's is 1 - Keras's.
    # epsilon: Keras's default 1e-3 (torch's is 1e-5). Gamma 1, beta 0, moving mean 0 and
    # variance 1 are Keras's initialisers and torch's defaults alike.
    return {"eps": layer.epsilon, "momentum": 1.0 - layer.momentum}


class BatchNormalization2d(_KerasBatchStatistics, nn.BatchNorm2d):
    """Keras BatchNormalization on a feature map: per channel (Keras's axis=-1 is C)."""

    def __init__(self, layer: spec.BatchNormalization, channels: int) -> None:
        super().__init__(channels, **_torch_bn_kwargs(layer))


class BatchNormalization1d(_KerasBatchStatistics, nn.BatchNorm1d):
    """Keras BatchNormalization on a vector: per unit."""

    def __init__(self, layer: spec.BatchNormalization, units: int) -> None:
        super().__init__(units, **_torch_bn_kwargs(layer))


class Flatten(nn.Module):
    """Keras Flatten: a feature map is flattened in (H, W, C) order, Keras's channels_last.

    So Dense weights imported from Keras line up. On a channels_last tensor the permute is a
    free view; on an NCHW one it is the single copy the model makes for it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.flatten(1)


class Dropout(nn.Module):
    """Keras Dropout: in training, zero a `rate` fraction and scale the rest by 1/(1 - rate).

    On CPU the keep-mask is drawn as 16-bit random integers, four from each 64-bit draw of
    torch's generator, instead of torch's bernoulli_ (one draw per element): dropout's masks
    were ~18 % of a small model's training step, and this is 4x faster. The rate is then a
    multiple of 1/65536 (0.2 -> 0.199997). Other devices use torch's fused dropout kernel.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.scale = 1.0 / (1.0 - rate) if rate < 1 else 0.0
        # int16 bits >= threshold with probability 1 - round(rate * 65536) / 65536.
        self.threshold = round(rate * 65536) - 32768

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.rate, training=True)
        x = x if _dense(x) else x.contiguous()
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        bits = words.view(torch.int16)[: x.numel()].as_strided(x.size(), x.stride())
        mask = (bits >= self.threshold).to(x.dtype).mul_(self.scale)  # laid out like x
        return x * mask

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def _dense(x: torch.Tensor) -> bool:
    """Whether x's elements fill its storage without gaps (row-major or channels_last)."""
    return x.is_contiguous() or (
        x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    )


class GlobalAveragePooling2D(nn.Module):
    """Keras GlobalAveragePooling2D: the mean over height and width, per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPooling2D(nn.Module):
    """Keras GlobalMaxPooling2D: the maximum over height and width, per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class LayerNormalization(nn.Module):
    """Keras LayerNormalization(axis=-1): each position normalised over its channels (or units).

    keras/src/layers/normalization/layer_normalization.py: epsilon=1e-3, gamma ones, beta
    zeros, the biased variance; on a feature map that is the channels at each pixel, so NCHW is
    normalised along dim 1 (`weight` is gamma, `bias` is beta).
    """

    def __init__(self, layer, features: int) -> None:
        super().__init__()
        self.epsilon = layer.epsilon
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.weight.shape
        if x.dim() == 4:
            y = F.layer_norm(x.permute(0, 2, 3, 1), shape, self.weight, self.bias, self.epsilon)
            return y.permute(0, 3, 1, 2)
        return F.layer_norm(x, shape, self.weight, self.bias, self.epsilon)


class Residual(nn.Module):
    """A residual block: activation(body(x) + shortcut(x)), as Keras's ResNet v1 adds them.

    Children carry Keras's names in the order Keras would create them (the body's layers, then
    the shortcut's Conv2D and BatchNormalization), so parameters read `residual.conv2d_1.weight`.
    An empty shortcut is the identity; `plain` (shortcut = "none") adds nothing, the plain twin.
    """

    def __init__(
        self,
        body: list[tuple[str, nn.Module]],
        shortcut: list[tuple[str, nn.Module]],
        activation: str,
        *,
        plain: bool = False,
    ) -> None:
        super().__init__()
        for name, module in (*body, *shortcut):
            self.add_module(name, module)
        self.body_names = tuple(name for name, _ in body)
        self.shortcut_names = tuple(name for name, _ in shortcut)
        self.plain = plain
        # Not `activation`: that may be the Keras name of an Activation layer of the body.
        self.after_add = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, shortcut = x, x
        for name in self.body_names:
            y = self._modules[name](y)
        if self.plain:
            return self.after_add(y)
        for name in self.shortcut_names:
            shortcut = self._modules[name](shortcut)
        return self.after_add(y + shortcut)


# --- Builders: the layer table's `module` names one of these ----------------------------------
# Each takes (layer spec, Keras input shape (H, W, C) or (units,), class count, NamedLayer).


def make_module(named: NamedLayer, input_shape: Shape, classes: int) -> nn.Module:
    """The torch module of one named layer spec receiving `input_shape` (Keras's H, W, C)."""
    builder = _BUILDERS.get(kind_of(named.layer).module)
    if builder is None:  # a row naming no builder here: a programming error, said plainly
        raise SpecError(f"no torch module for layer type {type(named.layer).__name__}")
    return builder(named.layer, input_shape, classes, named)


def conv2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return Conv2D(layer, shape[2], shape[:2])


def separable_conv2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return SeparableConv2D(layer, shape[2], shape[:2])


def depthwise_conv2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return DepthwiseConv2D(layer, shape[2], shape[:2])


def max_pooling2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return MaxPooling2D(layer, shape[:2])


def average_pooling2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return AveragePooling2D(layer, shape[:2])


def global_average_pooling2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return GlobalAveragePooling2D()


def global_max_pooling2d(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return GlobalMaxPooling2D()


def dropout(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return Dropout(layer.rate)


def batch_normalization(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    if len(shape) == 3:
        return BatchNormalization2d(layer, shape[2])
    return BatchNormalization1d(layer, shape[0])


def layer_normalization(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return LayerNormalization(layer, shape[-1])


def flatten(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return Flatten()


def dense(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return Dense(shape[0], dense_units(layer, classes), layer.activation, layer.use_bias)


def activation(layer, shape: Shape, classes: int, named=None) -> nn.Module:
    return make_activation(layer.activation)


def residual(layer, shape: Shape, classes: int, named: NamedLayer) -> nn.Module:
    outputs = layer_shapes(layer.layers, shape, classes, "")
    inputs = [shape, *outputs[:-1]]
    body = [
        (item.name, make_module(item, size, classes))
        for item, size in zip(named.body, inputs, strict=True)
    ]
    shortcut = []
    if named.shortcut:
        conv, norm = projection(layer, shape, outputs[-1])
        shortcut = [
            (named.shortcut[0], conv2d(conv, shape, classes)),
            (named.shortcut[1], batch_normalization(norm, outputs[-1], classes)),
        ]
    return Residual(body, shortcut, layer.activation, plain=layer.shortcut == "none")


_BUILDERS = {
    builder.__name__: builder
    for builder in (
        conv2d,
        separable_conv2d,
        depthwise_conv2d,
        max_pooling2d,
        average_pooling2d,
        global_average_pooling2d,
        global_max_pooling2d,
        dropout,
        batch_normalization,
        layer_normalization,
        flatten,
        dense,
        activation,
        residual,
    )
}
