"""TrainingSpec: the one type for how runs train, its defaults, checks and identity."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.errors import SpecError
from cnnlab.spec import TrainingSpec, load_study
from cnnlab.spec.training import FieldError
from cnnlab.store import run_key


def test_defaults_are_the_notebooks_recipe():
    training = TrainingSpec()
    assert (training.epochs, training.batch_size, training.validation) == (12, 128, 0.1)
    assert training.train_limit is None and training.precision == "fp32"


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"epochs": 0}, ("epochs",), "epochs must be >= 1, got 0"),
        ({"epochs": 1.0}, ("epochs",), "epochs must be an integer, got 1.0"),
        ({"batch_size": True}, ("batch_size",), "batch_size must be an integer, got true"),
        ({"train_limit": 0}, ("train_limit",), "train_limit must be >= 1, got 0"),
        ({"validation": 1.0}, ("validation",), r'in \[0, 1\) or "test", got 1.0'),
        ({"validation": "val"}, ("validation",), "or \"test\", got 'val'"),
        ({"precision": "fp16"}, ("precision",), "precision must be one of fp32, bf16"),
    ],
)
def test_a_bad_field_is_refused_naming_the_field_rule_and_value(fields, path, message):
    with pytest.raises(FieldError, match=message) as caught:
        TrainingSpec(**fields)
    assert caught.value.path == path
    assert isinstance(caught.value, SpecError)


def test_numpy_integers_are_whole_numbers_and_stored_as_ints():
    training = TrainingSpec(epochs=np.int64(3), train_limit=np.int32(500))
    assert training == TrainingSpec(epochs=3, train_limit=500)
    assert type(training.epochs) is int and type(training.train_limit) is int


def test_replace_checks_names_and_values():
    training = TrainingSpec()
    assert training.replace(epochs=2) == TrainingSpec(epochs=2)
    assert training.replace() is training
    with pytest.raises(SpecError, match=r"no field 'epoch'.*did you mean 'epochs'"):
        training.replace(epoch=2)
    with pytest.raises(SpecError, match="batch_size must be >= 1, got 0"):
        training.replace(batch_size=0)


def test_run_keys_of_existing_studies_do_not_change():
    """The key hashes what TrainingSettings held before TrainingSpec replaced it."""
    before = {
        "epochs": 12,
        "batch_size": 128,
        "validation": 0.1,
        "train_limit": None,
        "precision": "fp32",
    }
    spec = {"name": "m", "layers": []}
    assert TrainingSpec().identity() == before
    assert run_key(spec, seed=0, dataset="d", training=TrainingSpec().identity()) == run_key(
        spec, seed=0, dataset="d", training=before
    )


def test_a_study_files_training_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nmodels = ["seed/model-1"]\n\n[training]\nepochs = 2\ntrain_limit = -5\n'
    )
    with pytest.raises(SpecError, match=r"s\.toml:6: train_limit must be >= 1, got -5"):
        load_study(path)


def test_a_study_file_may_set_train_limit(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nmodels = ["seed/model-1"]\n\n[training]\ntrain_limit = 500\n')
    assert load_study(path).training == TrainingSpec(train_limit=500)
