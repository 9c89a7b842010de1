"""The sequential-seeds procedure: error rates by simulation, stopping reasons, inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from cnnlab import sequential
from cnnlab.errors import SpecError
from cnnlab.sequential import Budget, SequentialSettings, decide, parse_budget


def simulate(means, sds, *, reps, settings, seed=0):
    """Per-model rate of each state over `reps` simulated studies with normal seed accuracies."""
    rng = np.random.default_rng(seed)
    names = [f"m{i}" for i in range(len(means))]
    counts: dict[tuple[str, str], int] = {}
    runs = 0
    for _ in range(reps):
        draws = rng.normal(means, sds, size=(settings.max_seeds, len(means))).T
        decisions = decide({m: list(draws[i]) for i, m in enumerate(names)}, settings)
        assert decisions.finished
        runs += decisions.runs_spent
        for d in decisions.models:
            counts[d.model, d.state] = counts.get((d.model, d.state), 0) + 1
    return {key: n / reps for key, n in counts.items()}, runs / reps


def _rate(rates, state, models):
    return sum(rates.get((m, state), 0.0) for m in models) / len(models)


def _naive_levels(monkeypatch):
    """The broken procedure: every look tested at the full alpha (no spending)."""
    monkeypatch.setattr(SequentialSettings, "level", lambda self, n: self.alpha)


# -- error rates ---------------------------------------------------------------------------------

REPS = 1000
# Three standard errors of a rate at alpha = 0.05 over REPS studies (binomial): the valid
# procedure must stay below alpha + this, the naive one must exceed it.
TOLERANCE = 3 * math.sqrt(0.05 * 0.95 / REPS)


@pytest.mark.slow
def test_equal_models_are_called_worse_at_most_alpha_of_the_time(monkeypatch):
    settings = SequentialSettings(min_seeds=2, max_seeds=10, margin=0.001)
    rates, _ = simulate([0.99, 0.99], [0.002, 0.002], reps=REPS, settings=settings)
    valid = _rate(rates, "worse", ["m0", "m1"])
    assert valid <= settings.alpha + TOLERANCE
    _naive_levels(monkeypatch)  # testing at alpha at every look: the error rate inflates
    rates, _ = simulate([0.99, 0.99], [0.002, 0.002], reps=REPS, settings=settings)
    naive = _rate(rates, "worse", ["m0", "m1"])
    assert naive > settings.alpha + TOLERANCE, (valid, naive)


@pytest.mark.slow
def test_a_true_best_among_unequal_spreads_is_excluded_at_most_alpha_of_the_time():
    # Four models tied for best with different seed-to-seed spreads (Welch's case) and one
    # clearly worse: every tied model is a true best, so each is excluded with rate <= alpha.
    settings = SequentialSettings(min_seeds=2, max_seeds=8, margin=0.0005)
    means = [0.99, 0.99, 0.99, 0.99, 0.95]
    rates, _ = simulate(means, [0.001, 0.004, 0.002, 0.003, 0.01], reps=600, settings=settings)
    for model in ("m0", "m1", "m2", "m3"):
        assert rates.get((model, "worse"), 0.0) <= settings.alpha + 3 * math.sqrt(0.05 * 0.95 / 600)
    assert rates[("m4", "worse")] > 0.95  # while the worse model is found


@pytest.mark.slow
def test_a_model_a_margin_below_the_best_is_called_within_it_at_most_alpha_of_the_time():
    settings = SequentialSettings(min_seeds=2, max_seeds=10, margin=0.002)
    # m1 lies exactly one margin below m0: "within the margin" is false for it.
    rates, _ = simulate([0.99, 0.988], [0.001, 0.001], reps=REPS, settings=settings)
    assert rates.get(("m1", "within margin"), 0.0) <= settings.alpha + TOLERANCE


def test_alpha_spent_over_an_open_ended_sequence_of_looks_adds_up_to_alpha_for_any_maximum():
    settings = SequentialSettings(min_seeds=3, max_seeds=9, alpha=0.05)
    spent = [settings.level(n) for n in range(3, 100_000)]
    assert sum(spent) == pytest.approx(0.05, rel=1e-4)
    assert sum(spent[:7]) < 0.05  # looks 3..9: the rest stays for a raised maximum
    assert spent[0] == pytest.approx(0.05 * 3 / 12)
    assert SequentialSettings(min_seeds=3, max_seeds=50).level(5) == settings.level(5)


def test_studies_stored_before_open_ended_spending_keep_their_linear_levels():
    stored = SequentialSettings(min_seeds=3, max_seeds=9).to_dict()
    del stored["spending"]  # what cnnlab wrote before
    settings = SequentialSettings.from_dict(stored)
    assert settings.spending == "linear"
    spent = [settings.level(n) for n in range(3, 10)]
    assert sum(spent) == pytest.approx(0.05)
    assert spent[0] == pytest.approx(0.05 * 3 / 9)
    assert "linearly" in settings.procedure


def test_welch_upper_matches_scipy_one_sided_welch():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.98, 0.003, 5), rng.normal(0.99, 0.001, 4)
    p, t = sequential.welch_upper(a, b)
    reference = sps.ttest_ind(b, a, equal_var=False, alternative="greater")
    assert float(p) == pytest.approx(reference.pvalue, rel=1e-9)
    assert float(t) == pytest.approx(reference.statistic, rel=1e-9)


# -- stopping reasons ------------------------------------------------------------------------------


def test_a_clearly_worse_model_stops_as_worse_and_the_leader_as_best():
    results = {
        "good": [0.990, 0.991, 0.989, 0.990, 0.9905],
        "bad": [0.50, 0.501, 0.499, 0.5, 0.5005],
    }
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=5))
    states = {d.model: d for d in decisions.models}
    assert states["bad"].state == "worse"
    assert "worse than good by 49" in states["bad"].reason
    assert states["good"].state == "best"
    assert decisions.best == "good"
    assert decisions.finished
    assert decisions.runs_spent == states["good"].seeds + states["bad"].seeds


def test_models_equal_within_a_wide_margin_stop_as_within_margin():
    results = {"a": [0.990, 0.9901, 0.9899, 0.990], "b": [0.9901, 0.990, 0.9902, 0.9899]}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=4, margin=0.01))
    states = {d.model: d.state for d in decisions.models}
    assert sorted(states.values()) == ["best", "within margin"]


def test_close_models_with_a_narrow_margin_reach_max_seeds_or_stop_as_futile():
    rng = np.random.default_rng(1)
    results = {m: list(rng.normal(0.99, 0.002, 4)) for m in ("a", "b", "c")}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=4, margin=0.0001))
    assert {d.state for d in decisions.models} <= {"max seeds", "futile", "best"}
    assert decisions.finished


def test_open_models_ask_for_their_next_seed():
    results = {"a": [0.99, 0.991], "b": [0.99, 0.9905], "c": []}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=6))
    assert decisions.needed == {"c": 2}
    assert {d.model: d.state for d in decisions.models}["a"] == "open"
    assert not decisions.finished


def test_a_failed_run_stops_its_model_without_a_decision():
    results = {"a": [0.99, None, 0.99], "b": [0.98, 0.981, 0.979]}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=3))
    states = {d.model: d for d in decisions.models}
    assert states["a"].state == "failed"
    assert "seed index 1 failed" in states["a"].reason
    assert states["b"].state == "best"


def test_failed_runs_count_as_runs_spent_and_against_a_run_budget():
    # Every model trains seeds 0 and 1 before the first look: c's failed seed 0 and its
    # seed 1 were runs spent, as was a's failed seed 1.
    results = {"a": [0.99, None], "b": [0.99, 0.98], "c": [None, 0.5], "d": [0.96, 0.975]}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=6))
    seeds = {d.model: d.seeds for d in decisions.models}
    assert seeds == {"a": 2, "b": 2, "c": 2, "d": 2} and decisions.runs_spent == 8
    assert decisions.needed == {"b": 3, "d": 3}
    # A budget of 9 runs cannot pay for the next look at 3 seeds of b and d (8 + 2 > 9).
    budget = SequentialSettings(min_seeds=2, max_seeds=6, margin=1e-5, budget=Budget(runs=9))
    stopped = decide(results, budget)
    assert stopped.finished and stopped.runs_spent == 8
    assert {d.model: d.state for d in stopped.models}["b"] == "budget"


def test_a_run_budget_stops_open_models_before_the_look_it_cannot_pay_for():
    rng = np.random.default_rng(1)  # 0.3 points apart at a spread of 0.2: open after 2 seeds
    means = {"a": 0.99, "b": 0.987, "c": 0.984}
    results = {m: list(rng.normal(mu, 0.002, 10)) for m, mu in means.items()}
    settings = SequentialSettings(min_seeds=2, max_seeds=10, margin=1e-5, budget=Budget(runs=8))
    decisions = decide(results, settings)
    assert decisions.finished
    assert decisions.runs_spent <= 8
    assert any(d.state == "budget" and "budget spent" in d.reason for d in decisions.models)


def test_a_time_budget_spent_stops_models_that_need_more_seeds():
    results = {"a": [0.990, 0.992], "b": [0.986, 0.988]}  # 0.4 points apart: still open
    settings = SequentialSettings(max_seeds=6, margin=1e-5, budget=Budget(seconds=60))
    assert not decide(results, settings, seconds_spent=30).finished
    decisions = decide(results, settings, seconds_spent=61)
    assert decisions.finished
    assert {d.state for d in decisions.models} == {"budget"}


def test_seeds_stored_past_a_decision_do_not_change_it():
    results = {"good": [0.99, 0.9901, 0.9899], "bad": [0.2, 0.21, 0.19]}
    settings = SequentialSettings(min_seeds=2, max_seeds=6)
    first = decide(results, settings)
    more = {"good": results["good"] + [0.98] * 3, "bad": results["bad"] + [0.99] * 3}
    assert decide(more, settings) == first


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_seeds": 5, "max_seeds": 3}, r"--min-seeds must not exceed --max-seeds.*5 > max 3"),
        ({"min_seeds": 1}, r"--min-seeds must be at least 2"),
        ({"margin": 0.0}, r"--margin must be above 0.*got 0 points"),
        ({"margin": -0.001}, r"--margin must be above 0.*got -0.1 points"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(SpecError, match=message):
        SequentialSettings(**kwargs)


def test_a_budget_that_cannot_buy_the_minimum_is_refused():
    settings = SequentialSettings(min_seeds=3, budget=Budget(runs=10))
    with pytest.raises(SpecError, match=r"--budget 10 runs cannot buy the minimum: 4 models x 3"):
        settings.check_budget(4)


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("500runs", Budget(runs=500)),
        ("12 runs", Budget(runs=12)),
        ("2h", Budget(seconds=7200)),
        ("90min", Budget(seconds=5400)),
        ("3600s", Budget(seconds=3600)),
        (None, Budget()),
    ],
)
def test_budgets_parse_from_runs_or_time(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize("text", ["lots", "2 days", "0runs", "1.5runs", "-3h"])
def test_a_malformed_budget_is_one_clear_error(text):
    with pytest.raises(SpecError, match="--budget"):
        parse_budget(text)


def test_settings_round_trip_through_their_stored_dict():
    settings = SequentialSettings(3, 7, 0.002, 0.05, Budget(seconds=3600))
    assert SequentialSettings.from_dict(settings.to_dict()) == settings


def test_raising_max_seeds_keeps_every_decision_made_and_reopens_only_undecided_models():
    # docs/sequential.md: no level depends on max_seeds, so the looks up to the old maximum
    # replay to the same claims; only models stopped at max seeds (or futile) go on.
    rng = np.random.default_rng(11)
    changed = reopened = 0
    for _ in range(300):
        means = rng.choice([0.99, 0.989, 0.985], size=3)
        draws = rng.normal(means, 0.002, size=(10, 3)).T
        results = {f"m{i}": list(draws[i]) for i in range(3)}
        under_4 = decide({m: v[:4] for m, v in results.items()}, SequentialSettings(max_seeds=4))
        under_10 = decide(results, SequentialSettings(max_seeds=10))
        for before, after in zip(under_4.models, under_10.models, strict=True):
            if before.state in ("worse", "within margin"):
                changed += (after.state, after.seeds) != (before.state, before.seeds)
            reopened += before.state == "max seeds" and after.seeds > 4
    assert changed == 0
    assert reopened > 0  # extending does go on where the answer was open
