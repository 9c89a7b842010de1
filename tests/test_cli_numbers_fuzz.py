"""Every number a user can give, fuzzed: out of range, huge, negative, NaN, inf or not a number,
the command line and the study file answer with exit 2 and one line, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnnlab import limits, spec
from cnnlab.cli import main
from cnnlab.errors import SpecError

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))

# (command line before the flag, flag, row of cnnlab.limits). Every command names a model,
# study, file or dataset that does not exist, so an accepted number ends in that error: the
# fuzz never trains or downloads anything.
NUMERIC_FLAGS = [
    (["train", "no-such-model"], "--epochs", "epochs"),
    (["train", "no-such-model"], "--seed", "seed"),
    (["train", "no-such-model"], "--batch-size", "batch_size"),
    (["train", "no-such-model"], "--train-limit", "train_limit"),
    (["train", "no-such-model"], "--threads", "threads"),
    (["train", "no-such-model"], "--validation", None),
    (["run", "no-such-study"], "--seeds", "seeds"),
    (["run", "no-such-study"], "--epochs", "epochs"),
    (["run", "no-such-study"], "--train-limit", "train_limit"),
    (["run", "no-such-study"], "--jobs", "jobs"),
    (["run", "no-such-study"], "--threads", "threads"),
    (["summary", "no-such-model"], "--classes", "classes"),
    (["import-keras", "no-such-file.py"], "--index", "index"),
    (["data", "fetch", "no-such-dataset", "--offline"], "--timeout", "timeout"),
]

numbers = (
    st.integers()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 10**9, 10**21, 2**63, float("nan"), float("inf"), float("-inf")])
)
texts = numbers.map(str) | st.sampled_from(["", " ", "1e9", "0x10", "١", "1_000", "--", "nan"])


def in_range(name: str | None, text: str) -> bool:
    """Whether the flag's documented range holds this text's number (then another error)."""
    if name is None:
        try:
            return 0 <= float(text) < 1
        except ValueError:
            return False
    limit = limits.LIMITS[name]
    try:
        value = float(text)  # typer reads "0.0" as the integer 0; "1.5" it refuses, naming it
    except ValueError:
        return False
    return limit.low <= value <= limit.high


@pytest.mark.parametrize(("command", "flag", "name"), NUMERIC_FLAGS, ids=lambda x: str(x))
@FUZZ
@given(text=texts)
@example(text="100000")
@example(text="1000000000")
@example(text="nan")
@example(text="-1")
def test_every_numeric_flag_answers_any_number_with_one_line_and_exit_2(
    command, flag, name, text, capsys
):
    assert main([*command, f"{flag}={text}"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    if not in_range(name, text.strip()):
        assert flag in lines[0] or flag.lstrip("-").replace("-", "_") in lines[0]


STUDY_NUMBERS = ["seeds", "seed list", "epochs", "batch_size", "validation"]


def study_text(field: str, value: str) -> str:
    seeds = f"[{value}]" if field == "seed list" else value if field == "seeds" else "1"
    training = f"{field} = {value}\n" if field in ("epochs", "batch_size", "validation") else ""
    return (
        f'name = "s"\nseeds = {seeds}\n[[model]]\nname = "m"\n'
        'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
        f"[training]\n{training}"
    )


toml_numbers = numbers.map(
    lambda v: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(v), repr(v))
)


@pytest.mark.parametrize("field", STUDY_NUMBERS)
@FUZZ
@given(value=toml_numbers)
@example(value=str(10**21))
@example(value=str(10**12))
@example(value=str(10**20))
def test_a_study_files_numbers_are_in_range_or_one_located_error(field, value, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_text(study_text(field, value))
    try:
        study = spec.load_study(path)
    except SpecError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{path}:")
        return
    assert 1 <= len(study.seeds) <= limits.LIMITS["seeds"].high
    assert all(0 <= seed <= limits.LIMITS["seed"].high for seed in study.seeds)
    assert 1 <= study.training.epochs <= limits.LIMITS["epochs"].high
    assert 1 <= study.training.batch_size <= limits.LIMITS["batch_size"].high


def test_cnnlab_run_refuses_a_huge_seed_in_a_study_file_before_creating_a_store(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(study_text("seed list", str(10**21)))
    assert main(["run", str(path), "--dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:2: each seed must be <= 4,294,967,295, got 1,000,")
    assert not (tmp_path / "study").exists()
