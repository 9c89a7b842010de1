"""Keras code that cnnlab cannot build, or that attacks it: one clear line, nothing run."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.keras_import import (
    MAX_SOURCE_BYTES,
    import_keras,
    import_keras_file,
    import_keras_source,
    read_keras_file,
)

MODEL = "model = Sequential()\nmodel.add(Conv2D(32, (3, 3), activation='relu'))\n"


def _import(code: str):
    return import_keras_source(code, filename="model.py")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            MODEL + "model.add(LSTM(32))\n",
            r"^model\.py:3: layer 'LSTM' is not supported \(supported: Activation, ",
        ),
        (MODEL + "model.add(Conv2d(8, 3))\n", r"model\.py:3: .*'Conv2d'.*did you mean 'Conv2D'"),
        (
            MODEL + "model.add(Conv2D(8, 3,\n    groups=2))\n",
            r"^model\.py:4: Conv2D argument 'groups' is not supported with value 2; "
            r"only Keras's default 1 is \(supported: filters, kernel_size, strides, padding, ",
        ),
        (
            MODEL + "model.add(Conv2D(8, 3, kernel_regularizer=l2(0.01)))\n",
            r"^model\.py:3: Conv2D argument 'kernel_regularizer' is not supported",
        ),
        (
            MODEL + "model.add(Dense(8, output_dim=3))\n",
            r"^model\.py:3: Dense argument 'output_dim' is not supported \(supported: units, ",
        ),
        (MODEL + "model.add(Conv2D(32, 3, 3))\n", r"model\.py:3: .*ambiguous.*kernel_size="),
        (MODEL + "model.add(Dense())\n", r"model\.py:3: Dense needs its argument 'units'"),
        (MODEL + "model.add(Dense(8, activation='sparsemax'))\n", r"'sparsemax' is not supported"),
        (MODEL + "model.add(Dense(8, activation='Relu'))\n", r"'Relu'.*did you mean 'relu'"),
        (MODEL + "model.add(Conv2D(8, 3, padding='causal'))\n", r"'valid' or 'same'"),
        (MODEL + "model.add(Dropout(1.5))\n", r"Dropout argument 'rate' must be a number in"),
        (MODEL + "model.add(Dense(True))\n", r"Dense argument 'units' must be an integer"),
        (MODEL + "model.add(Conv2D(8, (3, 3, 3)))\n", r"kernel_size' must be an integer or a pair"),
        (MODEL + "model.add(Dense(n))\n", r"model\.py:3: .*'n' is not assigned a value earlier"),
        (
            MODEL + "for n in (8, 4):\n    pass\nmodel.add(Dense(n))\n",
            r"model\.py:5: .*'n' gets its value from code cnnlab does not run \(line 3\)",
        ),
        (
            "n = int('8')\n" + MODEL + "model.add(Dense(n))\n",
            r"model\.py:4: Dense argument 'units' must be .*, got n = int\('8'\) \(line 1\)",
        ),
        (
            MODEL + "for units in (8, 4):\n    model.add(Dense(units))\n",
            r"model\.py:4: model\.add\(\.\.\.\) inside another statement is not supported",
        ),
        (MODEL + "model.pop()\n", r"model\.py:3: model\.pop\(\) is not supported"),
        (MODEL + "model.compile(optimizer='nadam')\n", r"optimizer 'nadam' is not supported"),
        (
            MODEL + "model.compile(optimizer=Adam(clipnorm=1.0))\n",
            r"Adam argument 'clipnorm' is not supported",
        ),
        (
            MODEL + "model.compile(optimizer=Adam(lr=0.1, learning_rate=0.1))\n",
            r"both lr and learning_rate",
        ),
        (MODEL + "model.compile(optimizer='sgd', loss='mse')\n", r"loss 'mse' is not supported"),
        (
            MODEL + "model.add(Dense(10, activation='softmax'))\n"
            "model.compile(loss=CategoricalCrossentropy(from_logits=True))\n",
            r"from_logits=True but the model ends in a softmax",
        ),
        ("model = Sequential()\n", r"model\.py:1: the Sequential model 'model' has no layers"),
        ("x = 1\n", r"^model\.py: no Keras Sequential or functional model found"),
    ],
)
def test_what_cannot_be_built_is_named_with_its_line(code, message):
    with pytest.raises(SpecError, match=message):
        _import(code)


def test_an_argument_at_its_keras_default_is_accepted_but_another_value_is_not():
    assert _import(MODEL + "model.add(Conv2D(8, 3, dilation_rate=(1, 1)))\n")
    with pytest.raises(SpecError, match="groups"):
        _import(MODEL + "model.add(Conv2D(8, 3, groups=True))\n")  # True == 1, but no int


# --- Hostile input ---------------------------------------------------------------------------


def _attacks(marker) -> list[str]:
    run = f"__import__('os').system('touch {marker}')"
    return [
        run + "\n" + MODEL,
        MODEL + f"model.add(Dense({run}))\n",
        MODEL + f"model.add({run})\n",
        MODEL + f"units = {run}\nmodel.add(Dense(units))\n",
        MODEL + f"model.compile(optimizer={run})\n",
        MODEL + f"model.add(Dense(8, activation=lambda x: {run}))\n",
        f"model = Sequential([{run}])\n",
        f"model = Sequential({run})\n",
        MODEL + f"model.add(Dense(8, name=open('{marker}', 'w')))\n",
        MODEL + f"model.add(Dense(8, input_shape=open('{marker}', 'w')))\n",
    ]


def test_code_in_the_file_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    for code in _attacks(marker):
        try:
            _import(code)
        except SpecError as error:
            assert "\n" not in str(error)
        assert not marker.exists(), code


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (MODEL + "model.add(Dense(10**10**10))\n", r"model\.py:3: .*must be a written-out value"),
        (MODEL + "model.add(Dense(999999999999999999999))\n", r"from 1 to 1,000,000, got 9999"),
        (MODEL + "model.add(Dense(" + "9" * 5000 + "))\n", r"model\.py:3: not valid Python"),
        (MODEL + "model.add(Dense(int('9' * 10**9)))\n", r"must be a written-out value"),
        (MODEL + "model.add(Conv2D(8, (3,) * 10**9))\n", r"must be a written-out value"),
        (MODEL + "model.add(Dropout(1e999))\n", r"must be a number in \[0, 1\), got inf"),
    ],
)
def test_huge_literals_are_refused_without_being_computed(code, message):
    with pytest.raises(SpecError, match=message):
        _import(code)


@pytest.mark.parametrize(
    "code",
    [
        "x = " + "(" * 300 + "1" + ")" * 300,  # the parser's nesting limit
        "x = " + "+".join(["1"] * 200_000),  # RecursionError while building the tree
        "x = " + "-" * 200_000 + "1",  # MemoryError in the parser
        "x = a" + ".b" * 200_000,
        MODEL + "model.add(Dense(" + "[" * 90 + "]" * 90 + "))\n",  # parses; too deep to read
    ],
)
def test_deep_nesting_gives_a_clean_error(code):
    with pytest.raises(SpecError, match=r"^model\.py"):
        _import(code)


def test_syntax_errors_name_their_line():
    with pytest.raises(SpecError, match=r"^model\.py:3: not valid Python: "):
        _import(MODEL + "model.add(Dense(8)\n")


def test_ipython_magic_lines_are_read_as_comments():
    code = "%matplotlib inline\n!pip install keras\n" + MODEL
    assert len(_import(code).layers) == 1


def test_files_that_are_not_utf8_text_are_refused(tmp_path):
    path = tmp_path / "model.py"
    path.write_bytes(MODEL.encode() + b"# caf\xe9\n")
    with pytest.raises(SpecError, match=r"model\.py:3: not UTF-8 text \(byte 0xe9\)"):
        import_keras_file(path)
    path.write_bytes(MODEL.encode() + b"\x00")
    with pytest.raises(SpecError, match=r"model\.py: cannot read the code|not valid Python"):
        import_keras_file(path)


def test_oversized_and_missing_files_are_refused(tmp_path):
    big = tmp_path / "big.py"
    big.write_text(MODEL + "#" * MAX_SOURCE_BYTES)
    with pytest.raises(SpecError, match=r"big\.py: larger than 1,000,000 bytes"):
        read_keras_file(big)
    with pytest.raises(SpecError, match=r"nothere\.py: cannot read the file"):
        read_keras_file(tmp_path / "nothere.py")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(MODEL)),
    cut=st.integers(min_value=0, max_value=8),
    insert=st.text(alphabet=string.printable, max_size=6),
)
def test_mangled_code_imports_or_fails_with_a_spec_error(position, cut, insert):
    code = MODEL[:position] + insert + MODEL[position + cut :] + "model.compile(optimizer='adam')\n"
    try:
        _import(code)
    except SpecError as error:
        assert str(error).startswith("model.py")
        assert "\n" not in str(error)


# -- input scaling: Keras code's own `/ 255` is cnnlab's default -----------------------------

SCALED = """model = Sequential([
    Input(shape=(32, 32, 3)),
    Rescaling({scale}),
    Conv2D(8, 3, activation='relu'),
    Flatten(),
    Dense(10, activation='softmax'),
])
"""
UNSCALED = ["Conv2D", "Flatten", "Dense"]


@pytest.mark.parametrize("scale", ["1./255", "1.0 / 255.0", "0.00392156862745098", "scale=1/255"])
def test_a_first_rescaling_by_1_over_255_is_cnnlabs_own_and_left_out(scale):
    imported = import_keras(SCALED.format(scale=scale), filename="model.py")
    assert [type(layer).__name__ for layer in imported.spec.layers] == UNSCALED
    assert any("Rescaling(1/255) is left out" in note for note in imported.notes)


def test_a_functional_models_rescaling_of_its_input_is_left_out_too():
    code = (
        "inputs = Input(shape=(28, 28, 1))\nx = Rescaling(1./255)(inputs)\n"
        "x = Conv2D(8, 3, activation='relu')(x)\nx = Flatten()(x)\n"
        "outputs = Dense(10, activation='softmax')(x)\nmodel = Model(inputs, outputs)\n"
    )
    imported = import_keras(code, filename="model.py")
    assert [type(layer).__name__ for layer in imported.spec.layers] == UNSCALED
    assert any("Rescaling(1/255) is left out" in note for note in imported.notes)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (SCALED.format(scale="1./127.5, offset=-1"), r"^model\.py:3: Rescaling\(1\./127\.5, offse"),
        (SCALED.format(scale="s"), r"^model\.py:3: Rescaling's scale: 's' is not assigned a value"),
        (
            MODEL + "model.add(Rescaling(1./255))\n",  # after a convolution: not the input's
            r"^model\.py:3: Rescaling\(1\./255\) is not supported: cnnlab feeds images as x / 255",
        ),
        (
            "model = Sequential([Normalization(), Conv2D(8, 3)])\n",
            r'^model\.py:1: Normalization is not a layer in cnnlab: write normalize = "per-chan',
        ),
    ],
)
def test_other_input_scalings_are_refused_with_what_cnnlab_does_instead(code, message):
    with pytest.raises(SpecError, match=message):
        _import(code)
