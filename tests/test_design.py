"""Grid designs: which combinations each keeps, and what a set of models can estimate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnlab import conclusions, design
from cnnlab.errors import SpecError
from cnnlab.spec import study_from_dict

AXES = [("depth", [3, 5]), ("kernel", [3, 5]), ("bn", [False, True]), ("act", ["relu", "elu"])]


def test_full_keeps_every_combination_in_grid_order():
    assert design.choose(AXES, "full") == list(itertools.product(*(v for _, v in AXES)))


def test_one_at_a_time_is_a_baseline_and_each_factor_changed_alone():
    axes = [("depth", [3, 5, 7]), ("kernel", [3, 5])]
    assert design.choose(axes, "one-at-a-time") == [(3, 3), (5, 3), (7, 3), (3, 5)]


@pytest.mark.parametrize(
    ("k", "runs", "resolution"),
    [(3, 4, "III"), (4, 8, "IV"), (5, 8, "III"), (7, 8, "III"), (8, 16, "IV"), (16, 32, "IV")],
)
def test_fractional_keeps_main_effects_orthogonal_and_states_its_resolution(k, runs, resolution):
    signs = design.fractional_signs(k)
    assert signs.shape == (runs, k)
    assert np.array_equal(signs.T @ signs, runs * np.eye(k))  # balanced, orthogonal columns
    axes = [(f"f{i}", [0, 1]) for i in range(k)]
    combos = design.choose(axes, "fractional")
    note = design.describe([dict(zip([n for n, _ in axes], c, strict=True)) for c in combos])
    assert note.kind == "fractional" and f"resolution {resolution}" in note.text


@pytest.mark.parametrize("k", [4, 8, 16])
def test_fractional_main_effects_are_not_aliased_with_two_factor_interactions_where_runs_allow(k):
    # With k <= runs / 2 two-level factors a resolution IV fraction exists (a foldover): no
    # main-effect column may equal a two-factor interaction's, or that effect is confounded.
    signs = design.fractional_signs(k)
    for i, j in itertools.combinations(range(k), 2):
        interaction = signs[:, i] * signs[:, j]
        assert np.all(signs.T @ interaction == 0), (i, j)


def test_a_non_regular_orthogonal_array_is_not_called_resolution_above_its_factors():
    # Plackett-Burman's 12 runs in 11 factors: balanced, orthogonal main effects, but no
    # defining word; its two-factor interactions are partially aliased with main effects.
    row = [1, 1, -1, 1, 1, 1, -1, -1, -1, 1, -1]
    rows = [row[-i:] + row[:-i] for i in range(11)] + [[-1] * 11]
    combos = [{f"f{j}": int(v > 0) for j, v in enumerate(r)} for r in rows]
    note = design.describe(combos)
    assert "two-factor interactions are estimable" not in note.text
    assert "partially aliased" in note.text


def test_random_k_draws_distinct_combinations_the_same_for_the_same_seed():
    first = design.choose(AXES, "random:5", seed=3)
    assert len(set(first)) == 5 and first == design.choose(AXES, "random:5", seed=3)
    assert first != design.choose(AXES, "random:5", seed=4)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("random:17", r"random:17 must sample between 1 and the grid's 16 combinations"),
        ("random:0", r"random:0 must sample between 1"),
        ("halves", r"design must be one of 'full', 'one-at-a-time', 'fractional', 'random:K'"),
    ],
)
def test_a_bad_design_is_one_clear_error(value, message):
    with pytest.raises(design.DesignProblem, match=message):
        design.choose(AXES, value)


def test_a_fractional_design_needs_two_level_axes():
    with pytest.raises(design.DesignProblem, match="axis 'depth' has 3"):
        design.choose([("depth", [3, 5, 7]), ("kernel", [3, 5])], "fractional")


GRID = {
    "name": "g",
    "seeds": [7],
    "grid": [
        {
            "name": "d{depth}-k{kernel}",
            "axes": {"depth": [1, 2, 3], "kernel": [3, 5]},
            "layers": [
                {"conv": 4, "kernel": "{kernel}", "activation": "relu"},
                "flatten",
                {"dense": "classes", "activation": "softmax"},
            ],
        }
    ],
}


def test_a_study_grid_with_random_k_too_large_names_the_grid_and_key():
    table = {**GRID, "grid": [{**GRID["grid"][0], "design": "random:9"}]}
    with pytest.raises(
        SpecError, match=r"grid 1: design random:9 must sample between 1 and the grid's 6"
    ):
        study_from_dict(table)


def test_a_study_grid_samples_random_k_with_its_first_seed():
    table = {**GRID, "grid": [{**GRID["grid"][0], "design": "random:3"}]}
    names = [m.name for m in study_from_dict(table).models]
    assert len(names) == 3 and names == [m.name for m in study_from_dict(table).models]
    other = {**table, "seeds": [8]}
    assert {tuple(m.name for m in study_from_dict(other).models), tuple(names)} != {tuple(names)}


def test_factor_findings_say_what_one_at_a_time_cannot_estimate():
    def model(name, depth, kernel, acc):
        factors = (("depth", depth), ("kernel", kernel))
        return conclusions.ModelEvidence(name, (acc, acc + 0.001, acc - 0.001), factors=factors)

    models = (
        model("d1-k3", 1, 3, 0.95),
        model("d2-k3", 2, 3, 0.97),
        model("d3-k3", 3, 3, 0.98),
        model("d1-k5", 1, 5, 0.90),
    )
    found = conclusions.write_conclusions(conclusions.Evidence(models, n_images=10_000))
    texts = [f.text for f in found.findings if f.topic == "design"]
    assert len(texts) == 1 and "One factor at a time around the baseline" in texts[0]
    assert "no interaction can be estimated" in texts[0]
    kernel = next(f.text for f in found.findings if f.text.startswith("Factor kernel"))
    assert "3: 95.00 %" in kernel  # only the baseline model at kernel 3, not d2/d3's 97-98 %
