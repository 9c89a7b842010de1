"""infer_shapes: Keras's shape arithmetic, and one clear SpecError for layers that cannot fit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import spec as s
from cnnlab.build import build_model
from cnnlab.errors import SpecError
from cnnlab.shapes import infer_shapes, keras_layer_names, same_padding


def test_valid_and_same_output_sizes_follow_keras():
    layers = (
        s.Conv2D(8, (3, 3)),  # valid: 28 - 3 + 1
        s.Conv2D(8, (4, 4), strides=(2, 2), padding="same"),  # same: ceil(26 / 2)
        s.MaxPooling2D((2, 2)),  # strides default to the pool size: floor((13 - 2) / 2) + 1
        s.AveragePooling2D((2, 2), padding="same"),  # ceil(6 / 2)
        s.Conv2D(5, (2, 3), strides=(1, 2)),  # (3 - 2) + 1, floor((3 - 3) / 2) + 1
        s.Flatten(),
        s.Dense(s.CLASSES),
    )
    shapes = infer_shapes(layers, (28, 28, 1), 10)
    assert shapes == [(26, 26, 8), (13, 13, 8), (6, 6, 8), (3, 3, 8), (2, 1, 5), (10,), (10,)]


def test_same_padding_puts_the_odd_pixel_after_like_tensorflow():
    assert same_padding(9, 4, 1) == (1, 2)  # even kernel: the extra row at the bottom
    assert same_padding(10, 3, 2) == (0, 1)  # odd kernel, stride 2 on an even size
    assert same_padding(7, 3, 1) == (1, 1)
    assert same_padding(8, 2, 2) == (0, 0)


def test_layers_are_named_as_keras_names_them():
    layers = (s.Conv2D(1, (1, 1)), s.MaxPooling2D(), s.Conv2D(1, (1, 1)), s.BatchNormalization())
    layers += (s.GlobalAveragePooling2D(), s.Dense(3), s.Activation("relu"), s.Dense(2))
    assert keras_layer_names(layers) == [
        "conv2d",
        "max_pooling2d",
        "conv2d_1",
        "batch_normalization",
        "global_average_pooling2d",
        "dense",
        "activation",
        "dense_1",
    ]


def test_a_valid_convolution_that_shrinks_the_map_below_1x1_names_the_layer():
    layers = (s.MaxPooling2D((2, 2)), s.Conv2D(8, (5, 5)), s.Flatten(), s.Dense(s.CLASSES))
    with pytest.raises(SpecError, match=r"layer 2 \(Conv2D\): a 5x5 window .* 3x3 map .*1x1"):
        infer_shapes(layers, (7, 7, 1), 10)


def test_a_pooling_on_a_1x1_map_names_the_layer():
    layers = (s.MaxPooling2D((4, 4)), s.MaxPooling2D((2, 2)), s.Flatten(), s.Dense(2))
    with pytest.raises(SpecError, match=r"layer 2 \(MaxPooling2D\).* on a 1x1 map"):
        infer_shapes(layers, (4, 4, 1), 2)


def test_dense_on_a_feature_map_asks_for_flatten():
    layers = (s.Conv2D(4, (3, 3)), s.Dense(s.CLASSES))
    with pytest.raises(SpecError, match=r"layer 2 \(Dense\).*\(6, 6, 4\).*put Flatten"):
        infer_shapes(layers, (8, 8, 1), 10)


def test_a_convolution_after_flatten_is_rejected():
    layers = (s.Flatten(), s.Conv2D(4, (3, 3)))
    with pytest.raises(SpecError, match=r"layer 2 \(Conv2D\).*flat vector \(64,\)"):
        infer_shapes(layers, (8, 8, 1), 10)


def test_a_model_must_end_in_one_score_per_class():
    spec = s.ModelSpec("m", (s.Flatten(), s.Dense(7, activation="softmax")))
    with pytest.raises(SpecError, match=r"output shape is \(7,\).* 10 classes must end in \(10,\)"):
        build_model(spec, (4, 4, 1), 10)


def test_an_unknown_activation_suggests_close_names():
    spec = s.ModelSpec("m", (s.Conv2D(2, (3, 3), activation="rleu"), s.Flatten(), s.Dense(3)))
    with pytest.raises(SpecError, match=r"unknown activation 'rleu'.*did you mean relu"):
        build_model(spec, (4, 4, 1), 3)


def test_a_bad_input_shape_is_a_spec_error():
    with pytest.raises(SpecError, match=r"input shape .* got \(28, 28\)"):
        infer_shapes((s.Flatten(),), (28, 28), 10)


windows = st.tuples(st.integers(1, 4), st.integers(1, 4))
strides = st.tuples(st.integers(1, 3), st.integers(1, 3))
paddings = st.sampled_from(["valid", "same"])
map_layers = st.one_of(
    st.builds(s.Conv2D, st.integers(1, 3), windows, strides, paddings),
    st.builds(s.MaxPooling2D, windows, st.none() | strides, paddings),
    st.builds(s.AveragePooling2D, windows, st.none() | strides, paddings),
)


@settings(max_examples=60, deadline=None)
@given(
    layers=st.lists(map_layers, min_size=1, max_size=3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
)
def test_inferred_shapes_are_the_shapes_the_built_model_produces(layers, height, width):
    """Whatever the windows, strides and paddings: inference and the real modules agree."""
    layers = (*layers, s.Flatten(), s.Dense(s.CLASSES))
    try:
        shapes = infer_shapes(layers, (height, width, 2), 3)
    except SpecError:
        return
    model = build_model(s.ModelSpec("p", layers), (height, width, 2), 3)
    h = torch.randn(1, 2, height, width)
    for (_, _, module), expected in zip(model.keras_layers[:-2], shapes, strict=False):
        h = module(h)
        assert (h.shape[2], h.shape[3], h.shape[1]) == expected
