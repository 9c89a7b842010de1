"""The statistics against known values: hand-computed intervals, SciPy's tests, Holm by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from cnnlab import stats
from cnnlab.errors import SpecError


def test_mean_ci_matches_hand_computed_t_interval():
    ci = stats.mean_ci([0.98, 0.99, 1.00])
    # std = 0.01; half-width = t_{0.975,2} * 0.01 / sqrt(3) = 4.3027 * 0.005774 = 0.02484
    assert ci.mean == pytest.approx(0.99)
    assert ci.std == pytest.approx(0.01)
    assert ci.n == 3
    assert ci.half_width == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    assert ci.half_width == pytest.approx(0.0248, abs=1e-4)
    assert ci.low == pytest.approx(0.99 - 0.02484, abs=1e-5)
    assert ci.high == pytest.approx(0.99 + 0.02484, abs=1e-5)


def test_mean_ci_widens_with_confidence():
    values = [0.981, 0.985, 0.990, 0.987]
    assert stats.mean_ci(values, 0.99).half_width > stats.mean_ci(values, 0.95).half_width


def test_mean_ci_of_one_run_says_there_is_no_interval():
    ci = stats.mean_ci([0.991])
    assert ci.mean == pytest.approx(0.991)
    assert ci.n == 1
    assert not ci.has_interval
    assert ci.std is None and ci.low is None and ci.half_width is None
    assert "one run" in ci.note


def test_mean_ci_rejects_empty_and_nan_values():
    with pytest.raises(ValueError, match="empty"):
        stats.mean_ci([])
    with pytest.raises(ValueError, match="drop failed runs"):
        stats.mean_ci([0.99, float("nan")])
    with pytest.raises(ValueError, match="confidence must lie in"):
        stats.mean_ci([0.99, 0.98], confidence=95)


def test_noise_floor_at_99_percent_on_10000_images_is_about_a_tenth_of_a_point():
    floor = stats.noise_floor(0.99, 10_000)
    assert floor.se == pytest.approx(math.sqrt(0.99 * 0.01 / 10_000))
    assert floor.points == pytest.approx(0.0995, abs=1e-4)
    assert stats.binomial_se(0.5, 100) == pytest.approx(0.05)


def test_binomial_se_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="accuracy must lie in"):
        stats.binomial_se(99.0, 10_000)
    with pytest.raises(ValueError, match="at least 1"):
        stats.binomial_se(0.9, 0)


def test_accuracy_interval_is_wilson_and_stays_inside_zero_one():
    iv = stats.accuracy_interval(9_900, 10_000)
    # Wilson by hand: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, p = sps.norm.ppf(0.975), 10_000, 0.99
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert (iv.low, iv.high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    perfect = stats.accuracy_interval(100, 100)
    assert perfect.high == pytest.approx(1.0) and 0.95 < perfect.low < 1.0


def _correctness(pattern: list[tuple[bool, bool, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two models' per-image correctness built from (a right, b right, count) cells."""
    a = np.concatenate([np.full(k, ra) for ra, _, k in pattern])
    b = np.concatenate([np.full(k, rb) for _, rb, k in pattern])
    return a, b


def test_mcnemar_on_a_hand_made_table_matches_scipy_exact_binomial():
    # 2x2 table: both right 950, A only 12, B only 3, both wrong 35.
    a, b = _correctness(
        [(True, True, 950), (True, False, 12), (False, True, 3), (False, False, 35)]
    )
    result = stats.mcnemar(a, b)
    assert (result.b, result.c, result.n_images) == (12, 3, 1000)
    assert result.p_value == pytest.approx(sps.binomtest(12, 15, 0.5).pvalue)
    # By hand: 2 * P(X <= 3), X ~ Bin(15, 1/2) = 2 * (1 + 15 + 105 + 455) / 2**15
    assert result.p_value == pytest.approx(2 * 576 / 2**15)
    assert stats.mcnemar(b, a).p_value == pytest.approx(result.p_value)


def test_mcnemar_of_identical_predictions_gives_p_one_and_says_why():
    a = np.array([True, True, False, True])
    result = stats.mcnemar(a, a.copy())
    assert (result.b, result.c, result.p_value) == (0, 0, 1.0)
    assert "no discordant" in result.note


def test_mcnemar_rejects_non_bool_and_mismatched_arrays():
    with pytest.raises(ValueError, match="bool array"):
        stats.mcnemar(np.array([1, 0, 1]), np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar(np.ones(5, bool), np.ones(6, bool))
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar(np.ones((2, 5), bool), np.ones((2, 5), bool))


def test_compare_two_uses_welch_across_seeds_when_both_have_several():
    a, b = [0.991, 0.990, 0.993], [0.985, 0.987, 0.984]
    rng = np.random.default_rng(0)
    correct_a, correct_b = rng.random((3, 100)) < 0.9, rng.random((3, 100)) < 0.9
    result = stats.compare_two(a, b, correct_a, correct_b)  # predictions are not used
    assert result.method == stats.WELCH_ACROSS_SEEDS and result.tested
    assert result.p_value == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert result.diff == pytest.approx(np.mean(a) - np.mean(b))


def test_compare_two_uses_mcnemar_for_one_run_each():
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.9, rng.random(500) < 0.85
    result = stats.compare_two([a.mean()], [b.mean()], a[None], b)
    assert result.method == stats.MCNEMAR_ONE_RUN_EACH
    assert result.p_value == stats.mcnemar(a, b).p_value
    no_predictions = stats.compare_two([a.mean()], [b.mean()])
    assert not no_predictions.tested and "no per-image predictions" in no_predictions.note


def _runs_of_one_architecture(rng, seeds: int, images: np.ndarray) -> np.ndarray:
    """Per-image correctness of `seeds` runs that share each image's chance of being right."""
    return rng.random((seeds, len(images))) < images


def test_compare_two_does_not_test_one_seed_against_several():
    """The pooled per-image test it replaces called two draws of one architecture different
    in about 90 % of trials at 1 seed against 3: no test is the honest answer there."""
    rng = np.random.default_rng(1)
    chance = np.where(rng.random(10_000) < 0.9, 0.999, rng.beta(2, 1, 10_000))
    one = _runs_of_one_architecture(rng, 1, chance)
    three = _runs_of_one_architecture(rng, 3, chance)
    result = stats.compare_two(one.mean(axis=1), three.mean(axis=1), one, three)
    assert not result.tested and "1 run(s) against 3" in result.note


def test_compare_two_keeps_its_false_alarm_rate_for_one_architecture():
    """Two models that are the same architecture (seed-to-seed spread as in real training):
    Welch across seeds rejects at about its nominal 5 %."""
    rng = np.random.default_rng(2)
    trials = 400
    rejected = sum(
        stats.compare_two(rng.normal(0.99, 0.001, 3), rng.normal(0.99, 0.001, 3)).p_value < 0.05
        for _ in range(trials)
    )
    assert rejected / trials < 0.09


def test_prediction_interval_is_wider_than_the_mean_interval_by_sqrt_n_plus_one():
    values = [0.990, 0.992, 0.991, 0.989]
    pi, ci = stats.prediction_interval(values), stats.mean_ci(values)
    assert pi.half_width == pytest.approx(ci.half_width * np.sqrt(len(values) + 1))
    assert stats.prediction_interval([0.99]).low is None


def test_welch_matches_scipy_unequal_variance_t_test():
    a, b = [0.991, 0.989, 0.993, 0.990], [0.985, 0.979, 0.988]
    result = stats.welch(a, b)
    expected = sps.ttest_ind(a, b, equal_var=False)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.mean_diff == pytest.approx(np.mean(a) - np.mean(b))
    assert result.applicable and (result.n_a, result.n_b) == (4, 3)


def test_welch_with_one_seed_is_not_applicable():
    result = stats.welch([0.99], [0.98, 0.97])
    assert not result.applicable and result.p_value is None
    assert "at least 2 seeds" in result.note
    assert result.mean_diff == pytest.approx(0.99 - 0.975)


def test_welch_without_spread_in_either_model_is_not_applicable():
    result = stats.welch([0.99, 0.99], [0.98, 0.98])
    assert not result.applicable and "no spread" in result.note


def test_bootstrap_diff_is_reproducible_with_a_seed_and_brackets_the_difference():
    a, b = [0.991, 0.989, 0.993, 0.990, 0.992], [0.985, 0.979, 0.988, 0.983]
    first = stats.bootstrap_diff(a, b, n_resamples=2000, seed=7)
    again = stats.bootstrap_diff(a, b, n_resamples=2000, seed=7)
    other = stats.bootstrap_diff(a, b, n_resamples=2000, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < first.mean_diff < first.high
    assert first.low > 0  # every seed of a beats every seed of b


def test_bootstrap_diff_with_one_seed_is_not_applicable():
    result = stats.bootstrap_diff([0.99, 0.98], [0.97], n_resamples=100, seed=0)
    assert not result.applicable and result.low is None and "got 2 and 1" in result.note


def test_holm_matches_hand_computed_example_in_original_order():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_a_single_p_value():
    np.testing.assert_allclose(stats.holm([0.5, 0.4, 0.9]), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.03]), [0.03])
    assert stats.holm([]).size == 0
    with pytest.raises(ValueError, match="must lie in"):
        stats.holm([0.2, 1.5])


def _flip(correct: np.ndarray, right_to_wrong: int, wrong_to_right: int) -> np.ndarray:
    """A copy with the first k right images made wrong and the first j wrong ones made right."""
    out = correct.copy()
    out[np.flatnonzero(correct)[:right_to_wrong]] = False
    out[np.flatnonzero(~correct)[:wrong_to_right]] = True
    return out


@pytest.fixture
def three_models() -> dict[str, np.ndarray]:
    """Seed-wise correctness on 10,000 images: a and b tied near 99 %, c clearly worse."""
    base = np.random.default_rng(0).random(10_000) < 0.99
    a = np.stack([base, _flip(base, 4, 6), _flip(base, 5, 5)])
    b = np.stack([_flip(base, 6, 4), _flip(base, 5, 5), _flip(base, 3, 6)])
    c = np.stack([_flip(base, 250, 10), _flip(base, 300, 5), _flip(base, 270, 8)])
    return {"c": c, "b": b, "a": a}


def test_compare_to_best_keeps_tied_models_and_drops_the_clearly_worse_one(three_models):
    accuracies = {name: corr.mean(axis=1) for name, corr in three_models.items()}
    result = stats.compare_to_best(accuracies, correct=three_models)
    assert result.best == "a"
    assert result.not_worse == ("a", "b")
    by_model = {c.model: c for c in result.comparisons}
    assert [c.model for c in result.comparisons] == ["b", "c"]
    assert not by_model["b"].worse and by_model["b"].p_holm > 0.05
    assert by_model["c"].worse and by_model["c"].p_holm < 0.01
    # a gains (0 + 2 + 0) / 3 images on average, c loses (240 + 295 + 262) / 3
    assert by_model["c"].diff_to_best == pytest.approx(-(797 + 2) / 3 / 10_000)
    raw = [by_model[m].p_value for m in ("b", "c")]
    np.testing.assert_allclose([by_model[m].p_holm for m in ("b", "c")], stats.holm(raw))
    assert result.method == "Welch t-test across seeds, Holm-adjusted"


def test_compare_to_best_with_one_seed_each_uses_mcnemar(three_models):
    single = {name: corr[:1] for name, corr in three_models.items()}
    result = stats.compare_to_best({m: c.mean(axis=1) for m, c in single.items()}, correct=single)
    c_vs_best = next(c for c in result.comparisons if c.model == "c")
    assert c_vs_best.p_value == stats.mcnemar(single["c"][0], single[result.best][0]).p_value
    assert "c" not in result.not_worse
    assert "McNemar" in result.method and "Holm" in result.method


def test_compare_to_best_across_seeds_uses_welch_without_correctness():
    accuracies = {
        "tied": [0.9905, 0.9911, 0.9898],
        "best": [0.9910, 0.9902, 0.9912],
        "worse": [0.9700, 0.9710, 0.9690],
    }
    result = stats.compare_to_best(accuracies)
    assert result.best == "best" and set(result.not_worse) == {"best", "tied"}
    worse = result.comparisons[-1]
    assert worse.p_value == pytest.approx(
        sps.ttest_ind(accuracies["worse"], accuracies["best"], equal_var=False).pvalue
    )
    assert "Welch" in result.method


def test_compare_to_best_lists_a_model_it_cannot_test_apart_and_says_why():
    result = stats.compare_to_best({"a": [0.991, 0.990], "one-seed": [0.60]})
    (comparison,) = result.comparisons
    assert comparison.p_value is None and comparison.p_holm is None and not comparison.worse
    assert "Welch needs 2+ seeds each" in comparison.note
    assert result.not_worse == ("a",) and result.untested == (comparison,)
    assert result.method == "no test applied"


def test_compare_to_best_names_models_without_correctness(three_models):
    accuracies = {name: corr.mean(axis=1) for name, corr in three_models.items()}
    with pytest.raises(ValueError, match=r"missing for models \['c'\]"):
        stats.compare_to_best(accuracies, correct={"a": three_models["a"], "b": three_models["b"]})


def _grid_rows() -> list[dict[str, object]]:
    """A 2 x 2 grid (depth x batch norm), two seeds per model."""
    accuracy = {
        (2, False): [0.980, 0.982],
        (2, True): [0.986, 0.984],
        (3, False): [0.988, 0.990],
        (3, True): [0.992, 0.994],
    }
    return [
        {"model": f"d{d}-bn{bn}", "depth": d, "batch_norm": bn, "seed": s, "accuracy": acc}
        for (d, bn), accs in accuracy.items()
        for s, acc in enumerate(accs)
    ]


def test_factor_effects_averages_seeds_then_takes_a_t_interval_over_models():
    effect = stats.factor_effects(_grid_rows(), "depth")
    assert [lv.level for lv in effect.levels] == [2, 3]
    two, three = effect.levels
    # depth 2: model means 0.981 and 0.985 -> mean 0.983, std 0.002*sqrt(2), t_{0.975,1} = 12.706
    assert two.ci.mean == pytest.approx(0.983)
    assert two.ci.half_width == pytest.approx(12.7062 * 0.004 / math.sqrt(2) / math.sqrt(2), 1e-4)
    assert (two.n_models, two.n_runs, two.unit) == (2, 4, "model")
    assert three.ci.mean == pytest.approx(0.991)


def test_factor_effects_orders_boolean_levels_and_uses_seeds_for_a_single_model_level():
    rows = [r for r in _grid_rows() if r["depth"] == 3]
    effect = stats.factor_effects(rows, "batch_norm")
    off, on = effect.levels
    assert (off.level, on.level) == (False, True)
    assert (on.unit, on.n_models, on.n_runs) == ("run", 1, 2)
    assert on.ci == stats.mean_ci([0.992, 0.994])


def test_factor_effects_names_the_available_columns_for_an_unknown_factor():
    with pytest.raises(SpecError, match=r"factor 'kernel' is not a column.*'depth'"):
        stats.factor_effects(_grid_rows(), "kernel")


def test_instability_flags_a_spread_far_above_the_noise_floor():
    steady = stats.instability([0.9910, 0.9905, 0.9915], n_images=10_000)
    assert not steady.unstable
    assert steady.noise_floor == pytest.approx(stats.binomial_se(0.991, 10_000))
    shaky = stats.instability([0.991, 0.975, 0.990], n_images=10_000)
    assert shaky.unstable and shaky.range == pytest.approx(0.016)
    assert shaky.std > 3 * shaky.noise_floor
    assert "3 x binomial SE" in shaky.rule


def test_instability_threshold_follows_k():
    values = [0.9900, 0.9920, 0.9880]  # std 0.002, about 2 SE at 99 % on 10,000 images
    assert stats.instability(values, n_images=10_000, k=1.0).unstable
    assert not stats.instability(values, n_images=10_000, k=3.0).unstable


def test_instability_of_one_run_is_not_flagged_and_says_why():
    result = stats.instability([0.99], n_images=10_000)
    assert not result.unstable and result.std is None and "one run" in result.note


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(pvalues):
    adjusted = stats.holm(pvalues)
    assert np.all(adjusted >= np.asarray(pvalues)) and np.all(adjusted <= 1.0)
    order = np.argsort(pvalues, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted <= np.minimum(np.asarray(pvalues) * len(pvalues), 1.0))  # Bonferroni


def test_welch_with_one_model_without_spread_stays_quiet_and_defined():
    # Two seeds stuck at the same accuracy: scipy warns of precision loss on the terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = stats.welch([0.1028, 0.1028], [0.1010, 0.1011])
    assert result.applicable and result.p_value is not None and 0 < result.p_value < 0.05
