"""Outputs of cnnlab's modules against real Keras, layer by layer, with Keras's own weights.

The fixture models (tests/fixtures/keras/make_fixtures.py) use even 'same' kernels, strided
'same' convolutions, 'same' pooling on odd sizes after linear layers (so -inf vs 0 padding
shows), BatchNormalization with non-trivial statistics, Flatten before Dense, and every
activation string, so a wrong padding side, flatten order or BN constant changes the numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.build import build_model
from fixtures.keras.keras_reference import (
    PARITY_ARRAYS,
    PARITY_MODELS,
    load_keras_weights,
    model_from_keras,
    to_keras_layout,
)

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return dict(np.load(PARITY_ARRAYS))


def _keras_model(name: str, arrays: dict[str, np.ndarray]):
    record = PARITY_MODELS["models"][name]
    classes = record["layers"][-1]["output_shape"][0]
    model = build_model(model_from_keras(name, record), tuple(record["input_shape"]), classes)
    load_keras_weights(model, arrays, name)
    images = torch.from_numpy(arrays[f"{name}/input"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    return model, images


@pytest.mark.parametrize("name", sorted(PARITY_MODELS["models"]))
def test_every_layer_output_matches_keras_in_inference(name, arrays):
    model, h = _keras_model(name, arrays)
    model.eval()
    last = model.keras_layers[-1][0]
    with torch.no_grad():
        for keras_name, _, module in model.keras_layers:
            h = module(h)
            ours = torch.softmax(h, 1) if keras_name == last and model.output_softmax else h
            expected = arrays[f"{name}/output/{keras_name}"]
            np.testing.assert_allclose(
                to_keras_layout(ours), expected, atol=TOLERANCE, err_msg=keras_name
            )


def test_batch_normalization_training_step_matches_keras(arrays):
    """Batch statistics, Keras's momentum and its biased moving variance, after one step."""
    model, images = _keras_model("bn_avg", arrays)
    model.train()
    probabilities = torch.softmax(model(images), 1).detach().numpy()
    np.testing.assert_allclose(probabilities, arrays["bn_avg/train_output"], atol=TOLERANCE)
    for keras_name in ("batch_normalization", "batch_normalization_1"):
        module = getattr(model, keras_name)
        after = f"bn_avg/after_train/{keras_name}"
        np.testing.assert_allclose(module.running_mean, arrays[f"{after}/mean"], atol=TOLERANCE)
        np.testing.assert_allclose(module.running_var, arrays[f"{after}/variance"], atol=TOLERANCE)


def test_channels_last_input_gives_the_same_logits(arrays):
    model, images = _keras_model("even_same", arrays)
    model.eval()
    with torch.no_grad():
        plain = model(images)
        fast = model.to(memory_format=torch.channels_last)(
            images.contiguous(memory_format=torch.channels_last)
        )
    torch.testing.assert_close(fast, plain)
