"""`seeds = { min, max }` in a study file: parsed, located errors, written back."""

from __future__ import annotations

import pytest

from cnnlab.errors import SpecError
from cnnlab.spec import SeedRange, load_study, study_to_toml
from cnnlab.until_decided import resolve_settings

HEAD = 'name = "ranged"\nmodels = ["seed/model-1", "seed/model-2"]\n'


def study(tmp_path, seeds_line):
    path = tmp_path / "ranged.toml"
    path.write_text(HEAD + seeds_line + "\n")
    return path


def test_a_seed_range_trains_its_minimum_and_keeps_the_range(tmp_path):
    spec = load_study(study(tmp_path, 'seeds = { min = 3, max = 8, margin = 0.2, budget = "2h" }'))
    assert spec.seed_range == SeedRange(3, 8, 0.2, "2h")
    assert spec.seeds == (0, 1, 2)
    settings = resolve_settings(spec.seed_range)
    assert (settings.min_seeds, settings.max_seeds) == (3, 8)
    assert settings.margin == pytest.approx(0.002) and settings.budget.seconds == 7200


def test_options_override_the_study_files_range(tmp_path):
    spec = load_study(study(tmp_path, "seeds = { max = 6 }"))
    assert spec.seed_range == SeedRange(2, 6)
    settings = resolve_settings(spec.seed_range, max_seeds=9, margin_points=0.5)
    assert (settings.min_seeds, settings.max_seeds, settings.margin) == (2, 9, 0.005)


def test_a_seed_range_is_written_back_as_a_table(tmp_path):
    spec = load_study(study(tmp_path, 'seeds = { min = 2, max = 5, budget = "40runs" }'))
    again = tmp_path / "again.toml"
    again.write_text(study_to_toml(spec))
    assert load_study(again).seed_range == spec.seed_range


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "seeds = { min = 5, max = 3 }",
            r"ranged.toml:3: seeds.min must not exceed seeds.max.*5 > max 3",
        ),
        ("seeds = { min = 2 }", r"ranged.toml:3: .*needs max"),
        ("seeds = { min = 1, max = 3 }", r"seeds.min must be >= 2, got 1"),
        ("seeds = { max = 4, margin = 0 }", r"seeds.margin must be above 0"),
        ("seeds = { max = 4, margin = -1 }", r"seeds.margin must be above 0.*got -1"),
        ("seeds = { max = 4, most = 3 }", r"most"),
    ],
)
def test_a_bad_seed_range_names_its_line_and_rule(tmp_path, line, message):
    with pytest.raises(SpecError, match=message):
        load_study(study(tmp_path, line))
