"""build_model: the seed notebook's models as Keras builds them, Keras's initial weights, names."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cnnlab import spec as s
from cnnlab.build import build_model
from cnnlab.presets import list_presets
from cnnlab.shapes import infer_shapes
from cnnlab.spec import load_model
from fixtures.keras.keras_reference import SEED_MODELS, model_from_keras

INPUT_SHAPE = tuple(SEED_MODELS["input_shape"])  # (28, 28, 1), the notebook's MNIST
CLASSES = SEED_MODELS["classes"]
SEED_PRESETS = [name for name in list_presets() if name.startswith("seed/")]


def _keras_record(preset: str) -> dict:
    return SEED_MODELS["models"][preset.removeprefix("seed/")]


def test_every_seed_preset_has_keras_figures():
    assert sorted(f"seed/{name}" for name in SEED_MODELS["models"]) == sorted(SEED_PRESETS)


def _as_keras_reads_it(layer: s.Layer) -> s.Layer:
    """Spell out what Keras resolves: pooling strides=None, units="classes"."""
    if isinstance(layer, (s.MaxPooling2D, s.AveragePooling2D)) and layer.strides is None:
        return dataclasses.replace(layer, strides=layer.pool_size)
    if isinstance(layer, s.Dense) and layer.units == s.CLASSES:
        return dataclasses.replace(layer, units=CLASSES)
    return layer


@pytest.mark.parametrize("preset", SEED_PRESETS)
def test_seed_preset_has_the_layers_keras_built_from_the_notebook(preset):
    """The presets against make_fixtures.py's independent reading of the notebook."""
    keras_layers = model_from_keras(preset, _keras_record(preset)).layers
    assert tuple(map(_as_keras_reads_it, load_model(preset).layers)) == keras_layers


def _traced_output_shapes(model, images) -> list[tuple[int, ...]]:
    """Each layer's real output shape in Keras's layout (H, W, C) / (units,), batch dropped."""
    shapes, h = [], images
    for _, _, module in model.keras_layers:
        h = module(h)
        shape = tuple(h.shape[1:])
        shapes.append((*shape[1:], shape[0]) if h.dim() == 4 else shape)
    return shapes


def _layer_param_counts(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) as Keras counts them: BN's moving mean/variance non-trainable."""
    trainable = sum(p.numel() for p in module.parameters())
    moving = [b for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))]
    return trainable, sum(b.numel() for b in moving)


@pytest.mark.parametrize("preset", SEED_PRESETS)
def test_seed_preset_matches_keras_layer_by_layer(preset):
    record = _keras_record(preset)
    model = build_model(load_model(preset), INPUT_SHAPE, CLASSES)
    images = torch.rand(4, INPUT_SHAPE[2], *INPUT_SHAPE[:2])
    with torch.no_grad():
        traced = _traced_output_shapes(model.eval(), images)
    inferred = infer_shapes(model.model_spec.layers, INPUT_SHAPE, CLASSES)
    for (keras_name, _, module), row, real, static in zip(
        model.keras_layers, record["layers"], traced, inferred, strict=True
    ):
        assert keras_name == row["name"]
        assert real == static == tuple(row["output_shape"]), keras_name
        counts = (row["trainable_params"], row["non_trainable_params"])
        assert _layer_param_counts(module) == counts, keras_name


@pytest.mark.parametrize("preset", SEED_PRESETS)
def test_seed_preset_trains_a_step_and_counts_like_keras(preset):
    record = _keras_record(preset)
    model = build_model(load_model(preset), INPUT_SHAPE, CLASSES)
    logits = model(torch.rand(8, INPUT_SHAPE[2], *INPUT_SHAPE[:2]))
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(8) % CLASSES)
    loss.backward()
    assert logits.shape == (8, CLASSES)
    assert model.output_softmax
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    trainable, moving = _layer_param_counts(model)
    assert (trainable, trainable + moving) == (record["trainable_params"], record["total_params"])


def test_parameters_are_named_like_keras_layers():
    model = build_model(load_model("seed/model-12"), INPUT_SHAPE, CLASSES)
    keys = set(model.state_dict())
    assert {"conv2d.weight", "conv2d_3.bias", "dense.weight", "dense_1.bias"} <= keys
    assert {"batch_normalization_2.running_var", "batch_normalization.weight"} <= keys
    assert [name for name, _ in model.named_children()][:3] == [
        "conv2d",
        "max_pooling2d",
        "dropout",
    ]


def test_kernels_are_glorot_uniform_with_keras_fans_and_biases_zero():
    layers = (s.Conv2D(64, (5, 5)), s.Flatten(), s.Dense(s.CLASSES))
    model = build_model(s.ModelSpec("m", layers), (12, 12, 3), 10)
    conv_limit = math.sqrt(6 / (5 * 5 * 3 + 5 * 5 * 64))  # fan_in kh*kw*in, fan_out kh*kw*out
    dense_limit = math.sqrt(6 / (8 * 8 * 64 + 10))
    for weight, limit in ((model.conv2d.weight, conv_limit), (model.dense.weight, dense_limit)):
        assert weight.abs().max() <= limit
        assert weight.abs().max() > 0.95 * limit  # uniform over the whole range, not narrower
        # a uniform(-a, a) has standard deviation a / sqrt(3)
        assert weight.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
    assert not model.conv2d.bias.any() and not model.dense.bias.any()


def test_batch_normalization_uses_keras_constants():
    layers = (s.Conv2D(4, (3, 3)), s.BatchNormalization(), s.Flatten(), s.Dense(s.CLASSES))
    bn = build_model(s.ModelSpec("m", layers), (6, 6, 1), 10).batch_normalization
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)
    assert bn.weight.eq(1).all() and not bn.bias.any()
    assert not bn.running_mean.any() and bn.running_var.eq(1).all()


def _small_spec() -> s.ModelSpec:
    layers = (s.Conv2D(6, (3, 3), activation="relu"), s.Flatten(), s.Dense(s.CLASSES))
    return s.ModelSpec("small", layers)


def test_a_generator_makes_builds_repeatable_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    first = build_model(_small_spec(), (8, 8, 1), 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    second = build_model(_small_spec(), (8, 8, 1), 10, generator=torch.Generator().manual_seed(3))
    other = build_model(_small_spec(), (8, 8, 1), 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.conv2d.weight, second.conv2d.weight)
    assert torch.equal(first.dense.weight, second.dense.weight)
    assert not torch.equal(first.conv2d.weight, other.conv2d.weight)


def test_the_global_seed_makes_builds_repeatable():
    torch.manual_seed(11)
    first = build_model(_small_spec(), (8, 8, 1), 10)
    torch.manual_seed(11)
    second = build_model(_small_spec(), (8, 8, 1), 10)
    assert torch.equal(first.dense.weight, second.dense.weight)


def test_a_final_softmax_is_left_out_and_recorded():
    with_softmax = s.ModelSpec("a", (s.Flatten(), s.Dense(s.CLASSES, activation="softmax")))
    as_layer = s.ModelSpec("b", (s.Flatten(), s.Dense(s.CLASSES), s.Activation("softmax")))
    plain = s.ModelSpec("c", (s.Flatten(), s.Dense(s.CLASSES)))
    images = torch.randn(5, 1, 4, 4) * 10
    for spec in (with_softmax, as_layer):
        model = build_model(spec, (4, 4, 1), 3)
        assert model.output_softmax
        assert not torch.allclose(model(images).sum(1), torch.ones(5))  # logits, not probabilities
        assert model.keras_layers[-1][1] == spec.layers[-1]  # the spec as written is kept
    assert not build_model(plain, (4, 4, 1), 3).output_softmax


def test_flatten_orders_features_height_width_channel_like_keras():
    model = build_model(s.ModelSpec("f", (s.Flatten(), s.Dense(s.CLASSES))), (2, 3, 4), 5)
    nhwc = torch.arange(2 * 3 * 4.0).reshape(1, 2, 3, 4)  # Keras's layout: value = flat index
    flat = model.flatten(nhwc.permute(0, 3, 1, 2))
    assert torch.equal(flat, torch.arange(24.0).reshape(1, 24))


def test_dropout_is_inverted_like_keras():
    model = build_model(s.ModelSpec("d", (s.Flatten(), s.Dropout(0.25), s.Dense(2))), (1, 1, 1), 2)
    dropped = model.dropout(torch.ones(10_000))
    kept = dropped[dropped != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    assert 0.2 < 1 - kept.numel() / 10_000 < 0.3


def test_relu_moved_behind_max_pooling_gives_bit_identical_outputs_and_gradients():
    layers = (
        s.Conv2D(4, (3, 3), activation="relu"),
        s.MaxPooling2D((2, 2)),
        s.Flatten(),
        s.Dense(3),
    )
    torch.manual_seed(0)
    model = build_model(s.ModelSpec("p", layers), (9, 9, 2), 3)
    assert isinstance(model.max_pooling2d.activation, torch.nn.ReLU)
    images = torch.randn(16, 2, 9, 9)
    conv, dense = model.conv2d, model.dense
    keras_order = torch.relu(torch.conv2d(images, conv.weight, conv.bias))
    expected = dense(model.flatten(torch.max_pool2d(keras_order, 2)))
    expected_grads = torch.autograd.grad(expected.square().sum(), [conv.weight, conv.bias])
    got = model(images)
    got_grads = torch.autograd.grad(got.square().sum(), [conv.weight, conv.bias])
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, expected_grads, strict=True))


def test_dense_matches_torch_linear_forward_and_backward():
    torch.manual_seed(0)
    model = build_model(s.ModelSpec("d", (s.Flatten(), s.Dense(7))), (6, 5, 4), 7)
    images = torch.randn(9, 4, 6, 5, requires_grad=True)
    dense = model.dense
    expected = torch.nn.functional.linear(model.flatten(images), dense.weight, dense.bias)
    got = model(images)
    wanted = [images, dense.weight, dense.bias]
    expected_grads = torch.autograd.grad(expected.square().sum(), wanted)
    got_grads = torch.autograd.grad(got.square().sum(), wanted)
    torch.testing.assert_close(got, expected)
    for a, b in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b)


def _block_model(shortcut: str, seed: int = 0):
    block = '[{ conv = 4, kernel = 3, padding = "same" }, "batchnorm"]'
    text = (
        'name = "block"\nlayers = [{ conv = 4, kernel = 3, padding = "same" }, '
        f'{{ residual = {block}, shortcut = "{shortcut}", activation = "relu" }}, '
        '"flatten", { dense = "classes", activation = "softmax" }]'
    )
    spec = s.model_from_toml(text, source="block")
    return build_model(spec, (6, 6, 1), 3, generator=torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize(("shortcut", "adds_input"), [("none", False), ("identity", True)])
def test_a_block_adds_its_input_only_with_a_shortcut(shortcut, adds_input):
    block = _block_model(shortcut).residual
    x = torch.rand(2, 4, 6, 6)
    body = block.batch_normalization(block.conv2d_1(x))
    expected = torch.relu(body + x if adds_input else body)
    torch.testing.assert_close(block(x), expected)


def test_stacked_seeds_of_a_plain_block_match_the_separate_models():
    from cnnlab.stacked import StackedSeeds

    models = [_block_model("none", seed) for seed in range(2)]
    generators = [torch.Generator().manual_seed(seed) for seed in range(2)]
    stack = StackedSeeds(models, generators).eval()
    images = torch.rand(3, 6, 6, 1)
    stacked = stack(images.repeat(1, 1, 1, 2).permute(0, 3, 1, 2))
    for seed, model in enumerate(models):
        torch.testing.assert_close(stacked[seed], model(images.permute(0, 3, 1, 2)))
