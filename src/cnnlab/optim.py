"""Optimisers as Keras users mean them: Keras's names, Keras's defaults, Keras's update rules.

The seed notebook ran standalone Keras 2.x, where `Adadelta()` means learning rate 1.0 (Keras 3
and tf.keras changed it to 0.001, which is why copies of the notebook "stop learning"). Each
optimiser below is torch's own (fused or foreach, for speed) wherever its update is the same
equation as Keras's; where it is not (Adam's epsilon), a small subclass makes it so.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from cnnlab.errors import SpecError
from cnnlab.spec import OptimizerSpec

Params = dict[str, float | bool]

# Standalone Keras 2.x defaults (keras/optimizers.py, 2.2.4): `epsilon=None` there means
# K.epsilon() = 1e-7. AdamW is not in Keras 2; its defaults are Keras 3's
# (keras/src/optimizers/adamw.py: weight_decay=0.004).
KERAS_DEFAULTS: dict[str, Params] = {
    "adadelta": {"learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7},
    "adam": {
        "learning_rate": 1e-3,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
    },
    "adamw": {
        "learning_rate": 1e-3,
        "weight_decay": 0.004,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
    },
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "rmsprop": {"learning_rate": 1e-3, "rho": 0.9, "epsilon": 1e-7},
}

# Keras 3's arguments of every optimiser (keras/src/optimizers/base_optimizer.py), beyond each
# one's own: decoupled weight decay and gradient clipping. Spelled out only when given, so the
# run keys of studies that do not use them stay what they were.
EXTRAS: Params = {"weight_decay": 0.0, "clipnorm": 0.0, "clipvalue": 0.0, "global_clipnorm": 0.0}

# Keras 2's own spelling of the learning rate (`Adadelta(lr=1.0)` in code of the notebook's era).
ALIASES = {"lr": "learning_rate"}

# Allowed range of each numeric parameter: (low, high, low inclusive, high inclusive).
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (0.0, math.inf, False, False),
    "rho": (0.0, 1.0, True, False),
    "beta_1": (0.0, 1.0, True, False),
    "beta_2": (0.0, 1.0, True, False),
    "epsilon": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, False),
    "weight_decay": (0.0, math.inf, True, False),
    "clipnorm": (0.0, math.inf, False, False),
    "clipvalue": (0.0, math.inf, False, False),
    "global_clipnorm": (0.0, math.inf, False, False),
}


@dataclass(frozen=True)
class ResolvedOptimizer:
    """An optimiser with every Keras parameter spelled out (defaults merged with overrides)."""

    name: str
    params: tuple[tuple[str, float | bool], ...]

    def kwargs(self) -> Params:
        return dict(self.params)


def resolve_optimizer(spec: OptimizerSpec) -> ResolvedOptimizer:
    """Merge a spec's overrides into Keras's defaults; SpecError names any bad name or value."""
    name = spec.name.lower()
    if name not in KERAS_DEFAULTS:
        raise SpecError(
            f"unknown optimizer {spec.name!r}{_close_match(name, KERAS_DEFAULTS)}; "
            f"valid: {', '.join(KERAS_DEFAULTS)}"
        )
    params = dict(KERAS_DEFAULTS[name])
    for key, value in spec.params:
        key = ALIASES.get(key, key)
        known = {**params, **{k: v for k, v in EXTRAS.items() if k not in params}}
        if key not in known:
            raise SpecError(
                f"optimizer {name!r} has no parameter {key!r}{_close_match(key, known)}; "
                f"valid: {', '.join(known)}"
            )
        params[key] = _checked_value(name, key, value, known[key])
    clipping = [key for key in ("clipnorm", "clipvalue", "global_clipnorm") if key in params]
    if len(clipping) > 1:
        raise SpecError(
            f"optimizer {name!r}: set one of clipnorm, clipvalue and global_clipnorm (Keras "
            f"allows one), got {', '.join(clipping)}"
        )
    if params.get("nesterov") and params["momentum"] == 0:
        raise SpecError(f"optimizer {name!r}: nesterov=true needs momentum > 0, got momentum=0")
    return ResolvedOptimizer(name=name, params=tuple(params.items()))


def make_optimizer(
    spec: OptimizerSpec | ResolvedOptimizer, params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """Build the torch optimiser whose updates equal Keras's for this spec."""
    resolved = spec if isinstance(spec, ResolvedOptimizer) else resolve_optimizer(spec)
    kwargs = resolved.kwargs()
    optimizer = _FACTORIES[resolved.name](list(params), kwargs)
    # AdamW decays in torch's own step; the others as Keras 3 does, before the update.
    extras = {**EXTRAS, **{k: v for k, v in kwargs.items() if k in EXTRAS}}
    if resolved.name == "adamw":
        extras["weight_decay"] = 0.0
    for group in optimizer.param_groups:
        group.update({f"keras_{key}": value for key, value in extras.items()})
    return optimizer


@torch.no_grad()
def before_step(optimizer: torch.optim.Optimizer) -> None:
    """What Keras's `apply` does before an update (base_optimizer.py): clip the gradients, then
    decay the weights, `w -= w * weight_decay * lr` (AdamW's own decay runs in torch's step)."""
    for group in optimizer.param_groups:
        grads = [p.grad for p in group["params"] if p.grad is not None]
        if group.get("keras_clipnorm"):
            for grad in grads:  # each variable on its own (Keras's clip_by_norm)
                norm = torch.linalg.vector_norm(grad)
                grad.mul_(group["keras_clipnorm"] / torch.clamp(norm, min=group["keras_clipnorm"]))
        elif group.get("keras_global_clipnorm"):
            torch.nn.utils.clip_grad_norm_(grads, group["keras_global_clipnorm"], foreach=True)
        elif group.get("keras_clipvalue"):
            limit = group["keras_clipvalue"]
            torch._foreach_clamp_min_(grads, -limit)
            torch._foreach_clamp_max_(grads, limit)
        if group.get("keras_weight_decay"):
            params = [p for p in group["params"] if p.grad is not None]
            torch._foreach_mul_(params, 1.0 - group["keras_weight_decay"] * group["lr"])


def needs_before_step(optimizer: torch.optim.Optimizer) -> bool:
    return any(group.get(f"keras_{key}") for group in optimizer.param_groups for key in EXTRAS)


def clips_per_variable(optimizer: torch.optim.Optimizer) -> bool:
    """Norm clipping needs each seed's own variables: a stacked tensor would mix seeds."""
    return any(
        group.get("keras_clipnorm") or group.get("keras_global_clipnorm")
        for group in optimizer.param_groups
    )


@torch.no_grad()
def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set the rate of the next update, keeping momentum optimisers on Keras's path.

    Keras keeps a velocity v = momentum * v - lr * g; torch keeps b = momentum * b + g and steps
    by -lr * b, so v == -lr * b only while lr stays put. When it changes, b is rescaled by
    old / new, which keeps v (exact except across a rate of exactly 0, which torch cannot carry).
    """
    for group in optimizer.param_groups:
        old = group["lr"]
        if old == rate:
            continue
        group["lr"] = rate
        if rate == 0:
            continue
        buffers = [
            optimizer.state[p]["momentum_buffer"]
            for p in group["params"]
            if optimizer.state.get(p, {}).get("momentum_buffer") is not None
        ]
        if buffers:
            torch._foreach_mul_(buffers, old / rate)


def _checked_value(name: str, key: str, value: object, default: float | bool) -> float | bool:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"optimizer {name!r}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"optimizer {name!r}: {key} must be a number, got {value!r}")
    low, high, low_ok, high_ok = _RANGES[key]
    inside = (value > low or (low_ok and value == low)) and (
        value < high or (high_ok and value == high)
    )
    if not inside or math.isnan(value):
        lo, hi = "[" if low_ok else "(", "]" if high_ok else ")"
        raise SpecError(f"optimizer {name!r}: {key} must be in {lo}{low}, {high}{hi}, got {value}")
    return float(value)


def _close_match(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _KerasEpsilon:
    """Mixin: put Adam's epsilon where Keras puts it.

    Keras (keras/optimizers.py 2.2.4; keras/src/optimizers/adam.py) updates
    p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps): its epsilon is Kingma & Ba's
    "epsilon hat", added before the bias correction. torch adds eps after it:
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). The two agree exactly when
    torch's eps is eps / sqrt(1 - b2^t), so each step sets it so and torch's fused kernel runs.
    """

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        for group in self.param_groups:
            group["keras_step"] = group.get("keras_step", 0) + 1
            correction = 1.0 - group["betas"][1] ** group["keras_step"]
            group["eps"] = group["keras_epsilon"] / math.sqrt(correction)
        return super().step(closure)


class KerasAdam(_KerasEpsilon, torch.optim.Adam):
    """torch's Adam with Keras's epsilon placement (see `_KerasEpsilon`)."""


class KerasAdamW(_KerasEpsilon, torch.optim.AdamW):
    """torch's AdamW with Keras's epsilon placement.

    Keras 3 decays weights before the Adam step, `w -= w * weight_decay * lr`
    (keras/src/optimizers/base_optimizer.py, `_apply_weight_decay`), as torch's AdamW does.
    """


def _adam(params: list, kw: Params, cls: type = KerasAdam, **extra: float) -> torch.optim.Optimizer:
    optimizer = cls(
        params,
        lr=kw["learning_rate"],
        betas=(kw["beta_1"], kw["beta_2"]),
        eps=kw["epsilon"],
        amsgrad=bool(kw["amsgrad"]),
        fused=_fused_ok(params),
        **extra,
    )
    for group in optimizer.param_groups:
        group["keras_epsilon"] = kw["epsilon"]
    return optimizer


def _adamw(params: list, kw: Params) -> torch.optim.Optimizer:
    return _adam(params, kw, KerasAdamW, weight_decay=kw["weight_decay"])


def _adadelta(params: list, kw: Params) -> torch.optim.Optimizer:
    # Same equation as Keras (keras/optimizers.py 2.2.4, Adadelta.get_updates): epsilon inside
    # both square roots, the delta accumulator fed the update before the learning rate.
    return torch.optim.Adadelta(
        params, lr=kw["learning_rate"], rho=kw["rho"], eps=kw["epsilon"], foreach=True
    )


def _sgd(params: list, kw: Params) -> torch.optim.Optimizer:
    # Keras keeps v = momentum * v - lr * g; torch keeps b = momentum * b + g and steps -lr * b.
    # With a constant learning rate v == -lr * b, so the weights follow the same path.
    return torch.optim.SGD(
        params,
        lr=kw["learning_rate"],
        momentum=kw["momentum"],
        nesterov=bool(kw["nesterov"]),
        foreach=True,
    )


def _rmsprop(params: list, kw: Params) -> torch.optim.Optimizer:
    # Keras 2 (keras/optimizers.py, RMSprop without momentum) adds epsilon after the square
    # root, as torch does. Keras 3 adds it inside (keras/src/optimizers/rmsprop.py); we follow
    # Keras 2, the notebook's Keras. The difference only shows while the accumulator is ~eps^2.
    return torch.optim.RMSprop(
        params, lr=kw["learning_rate"], alpha=kw["rho"], eps=kw["epsilon"], foreach=True
    )


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused Adam runs on CPU and CUDA float tensors (not on MPS in older torch)."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


_FACTORIES: dict[str, Callable[[list, Params], torch.optim.Optimizer]] = {
    "adadelta": _adadelta,
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
    "rmsprop": _rmsprop,
}
