"""The optimisers step as Keras's update rules say (NumPy transcriptions of Keras's source)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.errors import SpecError
from cnnlab.optim import KERAS_DEFAULTS, make_optimizer, resolve_optimizer
from cnnlab.spec import OptimizerSpec

STEPS = 4


def _gradients(scale: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, scale, size=(3, 4)) for _ in range(STEPS)]


def _torch_path(spec: OptimizerSpec, start: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    """Float64, so that the comparison tests the equations rather than float32 rounding."""
    weight = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = make_optimizer(spec, [weight])
    for grad in grads:
        weight.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
    return weight.detach().numpy()


def keras_adadelta(p, grads, lr=1.0, rho=0.95, eps=1e-7):
    """keras/optimizers.py (2.2.4) Adadelta.get_updates."""
    a, d_a = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        a = rho * a + (1 - rho) * g**2
        update = g * np.sqrt(d_a + eps) / np.sqrt(a + eps)
        p = p - lr * update
        d_a = rho * d_a + (1 - rho) * update**2
    return p


def keras_adam(p, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=0.0):
    """keras/optimizers.py (2.2.4) Adam.get_updates; weight decay as Keras 3's AdamW."""
    m, v, v_hat = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p - p * wd * lr
        lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        v_hat = np.maximum(v_hat, v)
        p = p - lr_t * m / (np.sqrt(v_hat if amsgrad else v) + eps)
    return p


def keras_sgd(p, grads, lr=0.01, momentum=0.0, nesterov=False):
    """keras/optimizers.py (2.2.4) SGD.get_updates."""
    m = np.zeros_like(p)
    for g in grads:
        v = momentum * m - lr * g
        m = v
        p = p + momentum * v - lr * g if nesterov else p + v
    return p


def keras_rmsprop(p, grads, lr=1e-3, rho=0.9, eps=1e-7):
    """keras/optimizers.py (2.2.4) RMSprop.get_updates (no momentum)."""
    a = np.zeros_like(p)
    for g in grads:
        a = rho * a + (1 - rho) * g**2
        p = p - lr * g / (np.sqrt(a) + eps)
    return p


CASES = [
    (OptimizerSpec("adadelta"), keras_adadelta, {}),
    (
        OptimizerSpec("adadelta", (("learning_rate", 0.5), ("rho", 0.9))),
        keras_adadelta,
        {"lr": 0.5, "rho": 0.9},
    ),
    (OptimizerSpec("adam"), keras_adam, {}),
    (OptimizerSpec("adam", (("amsgrad", True),)), keras_adam, {"amsgrad": True}),
    (OptimizerSpec("adamw"), keras_adam, {"wd": 0.004}),
    (OptimizerSpec("sgd"), keras_sgd, {}),
    (OptimizerSpec("sgd", (("momentum", 0.9),)), keras_sgd, {"momentum": 0.9}),
    (
        OptimizerSpec("sgd", (("momentum", 0.9), ("nesterov", True))),
        keras_sgd,
        {"momentum": 0.9, "nesterov": True},
    ),
    (OptimizerSpec("rmsprop"), keras_rmsprop, {}),
]


@pytest.mark.parametrize("scale", [1.0, 1e-6])
@pytest.mark.parametrize(("spec", "keras_rule", "kwargs"), CASES)
def test_steps_match_keras_update_rule(spec, keras_rule, kwargs, scale):
    start = np.random.default_rng(1).normal(size=(3, 4))
    grads = _gradients(scale)
    expected_move = keras_rule(start, grads, **kwargs) - start
    got_move = _torch_path(spec, start, grads) - start
    assert np.abs(expected_move).min() > 0
    np.testing.assert_allclose(got_move, expected_move, rtol=1e-6)


def test_adam_epsilon_sits_where_keras_puts_it_not_where_torch_does():
    start = np.zeros((3, 4))
    grads = _gradients(1e-6)
    torch_weight = torch.nn.Parameter(torch.zeros(3, 4))
    plain = torch.optim.Adam([torch_weight], lr=1e-3, eps=1e-7)
    for grad in grads:
        torch_weight.grad = torch.tensor(grad, dtype=torch.float32)
        plain.step()
    ours = _torch_path(OptimizerSpec("adam"), start, grads)
    np.testing.assert_allclose(ours, keras_adam(start, grads), rtol=1e-9)
    assert not np.allclose(torch_weight.detach().numpy(), ours, rtol=0.1, atol=0)


def test_adadelta_defaults_are_standalone_keras_2_not_keras_3():
    assert KERAS_DEFAULTS["adadelta"]["learning_rate"] == 1.0
    assert resolve_optimizer(OptimizerSpec("Adadelta")).kwargs() == {
        "learning_rate": 1.0,
        "rho": 0.95,
        "epsilon": 1e-7,
    }


def test_keras2_lr_spelling_is_accepted():
    resolved = resolve_optimizer(OptimizerSpec("adam", (("lr", 0.01),)))
    assert resolved.kwargs()["learning_rate"] == 0.01


def test_optimizer_state_round_trips_through_state_dict():
    start = np.random.default_rng(2).normal(size=(3, 4))
    grads = _gradients(1.0)
    weight = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    first = make_optimizer(OptimizerSpec("adam"), [weight])
    for grad in grads[:2]:
        weight.grad = torch.tensor(grad, dtype=torch.float64)
        first.step()
    second = make_optimizer(OptimizerSpec("adam"), [weight])
    second.load_state_dict(first.state_dict())
    for grad in grads[2:]:
        weight.grad = torch.tensor(grad, dtype=torch.float64)
        second.step()
    np.testing.assert_allclose(weight.detach().numpy(), keras_adam(start, grads), rtol=1e-9)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (OptimizerSpec("adamm"), r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); valid: "),
        (OptimizerSpec("adam", (("beta1", 0.8),)), r"no parameter 'beta1' \(did you mean 'beta_1'"),
        (OptimizerSpec("sgd", (("rho", 0.8),)), r"'sgd' has no parameter 'rho'.*valid: learning"),
        (OptimizerSpec("adam", (("learning_rate", -1.0),)), r"learning_rate must be in \(0.0, inf"),
        (OptimizerSpec("adam", (("beta_2", 1.0),)), r"beta_2 must be in \[0.0, 1.0\), got 1.0"),
        (OptimizerSpec("adam", (("amsgrad", 1.0),)), r"amsgrad must be true or false, got 1.0"),
        (OptimizerSpec("sgd", (("nesterov", True),)), r"nesterov=true needs momentum > 0"),
    ],
)
def test_bad_optimizer_input_is_a_spec_error_naming_the_fix(spec, message):
    with pytest.raises(SpecError, match=message):
        resolve_optimizer(spec)
