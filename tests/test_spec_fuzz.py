"""Property tests: whatever a user writes, the parser answers with a spec or one clean SpecError."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.presets import preset_text
from cnnlab.spec import (
    ACTIVATIONS,
    CLASSES,
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    StudySpec,
    model_from_dict,
    model_from_toml,
    model_to_toml,
    study_from_dict,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = [
    "conv", "Conv2D", "maxpool", "MaxPooling2D", "avgpool", "dropout", "batchnorm", "flatten",
    "globalavgpool", "dense", "activation", "kernel", "kernel_size", "strides", "padding",
    "use_bias", "momentum", "epsilon", "name", "layers", "optimizer", "learning_rate", "rho",
    "nesterov", "classes", "same", "valid", "relu", "softmax", "{depth}", "depth", "axes",
    "block", "repeat", "head", "stem", "models", "seeds", "training", "epochs", "validation",
    "test", "grid", "model", "reported", "factors", "", "x", "\n", "\x00", "é",
]  # fmt: skip

scalars = (
    st.sampled_from(WORDS)
    | st.text(max_size=8)
    | st.integers(-3, 300)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
layer_like = st.dictionaries(st.sampled_from(WORDS), values, max_size=4) | values
model_like = st.fixed_dictionaries(
    {},
    optional={
        "name": values,
        "description": values,
        "optimizer": st.sampled_from(["adam", "sgd", "adamm"])
        | st.dictionaries(st.sampled_from(WORDS), values, max_size=3),
        "layers": st.lists(layer_like, max_size=6) | values,
        "reported": values,
        "factors": values,
        "junk": values,
    },
)


def answers_cleanly(parse, *args, **kwargs):
    """The parser gives a result of the right type or raises SpecError with one line."""
    try:
        return parse(*args, **kwargs)
    except SpecError as error:
        assert "\n" not in str(error)
        assert str(error).strip()
        return None


@FUZZ
@given(model_like)
@example({"layers": [{"conv": [], "Conv2D": [], "maxpool": [], "\n": None}]})  # found in CI
def test_any_model_dict_gives_a_spec_or_a_spec_error(data):
    result = answers_cleanly(model_from_dict, data, source="fuzz.toml")
    assert result is None or isinstance(result, ModelSpec)


@FUZZ
@given(values)
def test_any_value_at_all_gives_a_spec_or_a_spec_error(data):
    answers_cleanly(model_from_dict, data)
    answers_cleanly(study_from_dict, data)


grid_like = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["g{a}", "g{a}{b:-b}", "{a}", "g", "{zz}", ""]) | values,
        "axes": st.dictionaries(
            st.sampled_from(["a", "b", "1x"]), st.lists(scalars, max_size=3) | scalars, max_size=2
        )
        | values,
    },
    optional={
        "layers": st.lists(layer_like, max_size=4),
        "stem": st.lists(layer_like, max_size=3),
        "block": st.lists(
            st.sampled_from(
                [{"batchnorm": "{b}"}, {"conv": "{a}", "kernel": 3}, {"dropout": "{a}"}]
            )
            | layer_like,
            max_size=3,
        ),
        "repeat": st.sampled_from(["{a}", "{b}", 2, 0, 10**6]) | values,
        "head": st.lists(layer_like, max_size=3),
        "optimizer": values,
    },
)
study_like = st.fixed_dictionaries(
    {},
    optional={
        "name": values,
        "dataset": values,
        "seeds": values,
        "models": st.lists(
            st.sampled_from(["seed/model-1", "seed/nope", "x.toml", "seed/reference"]) | values,
            max_size=3,
        ),
        "training": st.dictionaries(st.sampled_from(WORDS), values, max_size=3) | values,
        "model": st.lists(model_like, max_size=2) | values,
        "grid": st.lists(grid_like, max_size=2) | values,
    },
)


@FUZZ
@given(study_like)
def test_any_study_dict_gives_a_study_or_a_spec_error(tmp_path_factory, data):
    base = tmp_path_factory.getbasetemp()
    result = answers_cleanly(study_from_dict, data, source="fuzz.toml", base_dir=base)
    assert result is None or isinstance(result, StudySpec)


SEED_TEXT = preset_text("seed/model-10")[0]
edits = st.lists(
    st.tuples(
        st.integers(0, len(SEED_TEXT)),
        st.integers(0, 12),
        st.sampled_from(['"', "'", "[", "]", "{", "}", ",", "=", "\n", "#", "0", "-1", ""])
        | st.text(max_size=4),
    ),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(edits)
def test_damaged_preset_text_gives_a_spec_or_a_located_error(changes):
    text = SEED_TEXT
    for start, length, insert in changes:
        text = text[:start] + insert + text[start + length :]
    answers_cleanly(model_from_toml, text, source="damaged.toml")


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("[]{}=,.\"'#\n abc123-_tf")), max_size=60))
def test_random_toml_like_text_gives_a_spec_or_a_spec_error(text):
    answers_cleanly(model_from_toml, text, source="random.toml")


# --- Round trip over generated valid specs ----------------------------------------------------

sizes = st.integers(1, 9)
pairs = st.tuples(sizes, sizes)
activations = st.sampled_from(ACTIVATIONS)
paddings = st.sampled_from(["valid", "same"])
fractions = st.floats(0, 1, exclude_max=True)
layers = st.one_of(
    st.builds(Conv2D, st.integers(1, 512), pairs, pairs, paddings, activations, st.booleans()),
    st.builds(MaxPooling2D, pairs, st.none() | pairs, paddings),
    st.builds(AveragePooling2D, pairs, st.none() | pairs, paddings),
    st.builds(Dropout, fractions),
    st.builds(
        BatchNormalization,
        fractions,
        st.floats(min_value=1e-12, max_value=1.0),
    ),
    st.just(Flatten()),
    st.just(GlobalAveragePooling2D()),
    st.builds(Dense, st.integers(1, 4096) | st.just(CLASSES), activations, st.booleans()),
    st.builds(Activation, activations),
)
optimizers = st.one_of(
    st.builds(OptimizerSpec, st.sampled_from(["adadelta", "adam", "sgd"])),
    st.just(OptimizerSpec("sgd", (("learning_rate", 0.5), ("momentum", 0.9), ("nesterov", True)))),
    st.builds(
        lambda lr: OptimizerSpec("adamw", (("learning_rate", lr),)),
        st.floats(0, 10, exclude_min=True, allow_subnormal=True),  # a rate of 0 is refused
    ),
)
finite = st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(min_size=1, max_size=10)
specs = st.builds(
    ModelSpec,
    name=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and s.isprintable()),
    layers=st.lists(layers, min_size=1, max_size=8).map(tuple),
    optimizer=optimizers,
    description=st.text(max_size=40),
    reported=st.dictionaries(keys, finite, max_size=3).map(lambda d: tuple(d.items())),
    factors=st.dictionaries(keys, st.integers() | st.booleans() | st.text(max_size=5) | finite).map(
        lambda d: tuple(d.items())
    ),
)


@FUZZ
@given(specs)
def test_any_valid_spec_survives_dump_and_load(spec):
    again = model_from_toml(model_to_toml(spec))
    assert again == spec
    for layer in again.layers:
        if isinstance(layer, Dropout):
            assert math.isfinite(layer.rate)
