"""Statistics for comparing trained models: intervals, paired and across-seed tests, Holm.

Pure functions over NumPy arrays that return frozen results; nothing here prints, plots or
reads files. Where a method cannot apply (one seed, no discordant images) the result says so
in `note` instead of carrying a silent NaN, so the report can state it in words.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from cnnlab.errors import SpecError

ArrayLike = Sequence[float] | np.ndarray


def _as_values(values: ArrayLike, what: str = "values") -> np.ndarray:
    """A 1-D float64 array with at least one finite entry, or a ValueError that says why not."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{what} is empty; need at least one run")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf ({arr.tolist()}); drop failed runs first")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


@dataclass(frozen=True)
class MeanCI:
    """Mean and sample spread of a few runs, with a Student-t interval for the mean."""

    mean: float
    std: float | None  # ddof=1; None for a single value
    n: int
    confidence: float
    low: float | None  # None when no interval exists (n = 1), see `note`
    high: float | None
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> MeanCI:
    """Mean, std (ddof=1) and the t-interval mean +- t_{(1+c)/2, n-1} * std / sqrt(n).

    Student's t, not the normal quantile, because a study has few seeds (t_{0.975,2} = 4.30,
    not 1.96). One value has no spread, so no interval: the result says so in `note`.
    """
    return _t_interval(values, confidence, lambda n: math.sqrt(1 / n), "no interval")


def prediction_interval(values: ArrayLike, confidence: float = 0.95) -> MeanCI:
    """Where one more run would land: mean +- t_{(1+c)/2, n-1} * std * sqrt(1 + 1/n).

    The interval to hold a single outside run against (e.g. the notebook's one figure): the
    interval of the mean (`mean_ci`) shrinks with more seeds and would call a perfectly typical
    run "outside" ever more often. Needs 2+ values; one value gives no interval (see `note`).
    """
    return _t_interval(
        values, confidence, lambda n: math.sqrt(1 + 1 / n), "no interval for another run"
    )


def _t_interval(
    values: ArrayLike, confidence: float, scale: Callable[[int], float], missing: str
) -> MeanCI:
    """mean +- t_{(1+c)/2, n-1} * std * scale(n); one value has no spread, so no interval."""
    _check_confidence(confidence)
    arr = _as_values(values)
    mean, n = float(arr.mean()), int(arr.size)
    if n == 1:
        note = f"one run: no spread and {missing}; run more seeds"
        return MeanCI(mean, None, 1, confidence, None, None, note)
    std = float(arr.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std * scale(n)
    return MeanCI(mean, std, n, confidence, mean - half, mean + half)


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent images: sqrt(p(1-p)/n).

    The test set's own resolution: at p = 0.99, n = 10,000 it is 0.000995, about 0.1 point.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy}")
    if n < 1:
        raise ValueError(f"n (test images) must be at least 1, got {n}")
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


@dataclass(frozen=True)
class NoiseFloor:
    """One binomial standard error of an accuracy, in fraction and in percentage points."""

    accuracy: float
    n_images: int
    se: float

    @property
    def points(self) -> float:
        return 100.0 * self.se


def noise_floor(accuracy: float, n_images: int) -> NoiseFloor:
    """The smallest accuracy difference the test set can resolve: one binomial SE.

    Differences well inside it (e.g. 99.12 % vs 99.08 % on 10,000 images) are noise.
    """
    return NoiseFloor(accuracy, n_images, binomial_se(accuracy, n_images))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float
    method: str


def accuracy_interval(n_correct: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for one accuracy (Wilson 1927), via scipy's binomtest.

    Wilson, not the normal (Wald) interval: near 100 % the Wald interval runs past 1 and
    undercovers; Wilson stays inside [0, 1] and is less conservative than Clopper-Pearson.
    """
    _check_confidence(confidence)
    if not 0 <= n_correct <= n or n < 1:
        raise ValueError(f"need 0 <= n_correct <= n and n >= 1, got n_correct={n_correct}, n={n}")
    ci = sps.binomtest(n_correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(n_correct / n, float(ci.low), float(ci.high), confidence, "wilson")


@dataclass(frozen=True)
class PairedTest:
    """A paired test of two models on the same test images.

    b counts images where A does better than B, c where B does better; images where they agree
    carry no information about which is better and are left out (McNemar 1947).
    """

    b: int
    c: int
    n_images: int
    p_value: float
    method: str
    note: str = ""

    @property
    def discordant(self) -> int:
        return self.b + self.c


def _as_correctness(correct: np.ndarray, what: str) -> np.ndarray:
    """A (seeds, images) bool array; a 1-D array is one seed."""
    arr = np.asarray(correct)
    if arr.dtype != np.bool_:
        raise ValueError(f"{what} must be a bool array of per-image correctness, got {arr.dtype}")
    arr = arr[np.newaxis] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must have shape (images,) or (seeds, images), got {arr.shape}")
    return arr


def _sign_test(b: int, c: int, n_images: int, method: str) -> PairedTest:
    """Exact two-sided binomial test of b successes in b + c trials at p = 1/2."""
    if b + c == 0:
        note = "no discordant images: the models agree everywhere, nothing to test"
        return PairedTest(0, 0, n_images, 1.0, method, note)
    p = float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return PairedTest(b, c, n_images, p, method)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> PairedTest:
    """McNemar's test on two models' per-image correctness (bool arrays over the same images).

    Always the exact form (scipy.stats.binomtest on b of b + c at p = 1/2), never the
    chi-square approximation: the exact p-value costs microseconds even for b + c in the
    thousands, is valid for any b + c (accurate models leave few discordant images, where
    the chi-square is poor), and so no threshold has to be chosen.
    """
    a = _as_correctness(correct_a, "correct_a")
    bb = _as_correctness(correct_b, "correct_b")
    if a.shape[0] != 1 or bb.shape[0] != 1 or a.shape != bb.shape:
        raise ValueError(
            f"mcnemar needs two 1-D arrays over the same images, got {a.shape} and {bb.shape}"
        )
    b = int(np.sum(a[0] & ~bb[0]))
    c = int(np.sum(~a[0] & bb[0]))
    return _sign_test(b, c, a.shape[1], "exact McNemar")


@dataclass(frozen=True)
class SeedsTest:
    """A comparison of two models across seeds: the difference of mean accuracy (a - b)."""

    mean_diff: float
    n_a: int
    n_b: int
    method: str
    p_value: float | None = None  # None when not applicable, see `note`
    statistic: float | None = None
    low: float | None = None  # interval of the difference (bootstrap only)
    high: float | None = None
    note: str = ""  # set only when the method does not apply, saying why

    @property
    def applicable(self) -> bool:
        return not self.note


def _too_few_seeds(a: np.ndarray, b: np.ndarray, method: str) -> SeedsTest | None:
    """The not-applicable result when either model has fewer than two seeds, else None."""
    if len(a) >= 2 and len(b) >= 2:
        return None
    note = f"needs at least 2 seeds per model, got {len(a)} and {len(b)}: not applicable"
    return SeedsTest(float(a.mean() - b.mean()), len(a), len(b), method, note=note)


def welch(a: ArrayLike, b: ArrayLike) -> SeedsTest:
    """Welch's t-test of two models' seed accuracies (scipy.stats.ttest_ind, equal_var=False).

    Welch, not Student: two architectures need not have the same seed-to-seed spread.
    """
    a, b = _as_values(a, "a"), _as_values(b, "b")
    method = "Welch t-test"
    if (skipped := _too_few_seeds(a, b, method)) is not None:
        return skipped
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        note = "no spread within either model: t is undefined, not applicable"
        return SeedsTest(float(a.mean() - b.mean()), len(a), len(b), method, note=note)
    with warnings.catch_warnings():
        # One model's seeds may agree exactly (e.g. a model stuck at chance): its variance is
        # exactly zero, which is right, but SciPy warns of "catastrophic cancellation" on the
        # user's terminal. The other model's spread keeps t defined.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        res = sps.ttest_ind(a, b, equal_var=False)
    diff = float(a.mean() - b.mean())
    return SeedsTest(diff, len(a), len(b), method, float(res.pvalue), float(res.statistic))


def bootstrap_diff(
    a: ArrayLike,
    b: ArrayLike,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> SeedsTest:
    """Percentile bootstrap interval of mean(a) - mean(b) (Efron & Tibshirani 1993, ch. 13).

    Each model's seeds are resampled with replacement on their own (the seeds of two models
    are independent runs); the same `seed` gives the same interval.
    """
    _check_confidence(confidence)
    a, b = _as_values(a, "a"), _as_values(b, "b")
    method = f"percentile bootstrap, {n_resamples} resamples"
    if (skipped := _too_few_seeds(a, b, method)) is not None:
        return skipped
    rng = np.random.default_rng(seed)
    means_a = rng.choice(a, size=(n_resamples, len(a))).mean(axis=1)
    means_b = rng.choice(b, size=(n_resamples, len(b))).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means_a - means_b, [tail, 1 - tail])
    diff = float(a.mean() - b.mean())
    return SeedsTest(diff, len(a), len(b), method, low=float(low), high=float(high))


@dataclass(frozen=True)
class ModelTest:
    """Model A against model B by the one test their runs allow; diff = mean(A) - mean(B)."""

    diff: float
    method: str
    p_value: float | None = None  # None when no test applies, see `note`
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.p_value is not None


WELCH_ACROSS_SEEDS = "Welch t-test across seeds"
MCNEMAR_ONE_RUN_EACH = "exact McNemar on the test images, one run each"


def compare_two(
    accuracies_a: ArrayLike,
    accuracies_b: ArrayLike,
    correct_a: np.ndarray | None = None,
    correct_b: np.ndarray | None = None,
) -> ModelTest:
    """Test A against B: Welch across seeds with 2+ seeds each, McNemar with one run each.

    The seeds are the sample of training runs, so with several seeds the test must be across
    them (Welch): a per-image test pooled over seeds treats the test images as the sample,
    ignores how much training runs differ, and was biased whenever the seed counts differed (a
    model with 1 seed against one with 3 came out "different" in about 90 % of simulated ties). With
    one run each, exact McNemar on the shared test images (`correct_*`: (seeds, images) or
    (images,) bools) compares those two trained networks. One seed against several has no
    valid test here: the result says so instead of guessing.
    """
    a, b = _as_values(accuracies_a, "accuracies_a"), _as_values(accuracies_b, "accuracies_b")
    diff = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        result = welch(a, b)
        return ModelTest(diff, WELCH_ACROSS_SEEDS, result.p_value, result.note)
    if len(a) == 1 and len(b) == 1:
        if correct_a is None or correct_b is None:
            note = "one run each and no per-image predictions to pair: no test applies"
            return ModelTest(diff, MCNEMAR_ONE_RUN_EACH, note=note)
        paired = mcnemar(
            _as_correctness(correct_a, "correct_a")[0], _as_correctness(correct_b, "correct_b")[0]
        )
        return ModelTest(diff, MCNEMAR_ONE_RUN_EACH, paired.p_value, paired.note)
    note = (
        f"{len(a)} run(s) against {len(b)}: Welch needs 2+ seeds each, McNemar one run each; "
        "finish the same number of seeds"
    )
    return ModelTest(diff, WELCH_ACROSS_SEEDS, note=note)


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    The i-th smallest of m p-values is multiplied by (m - i + 1), then a running maximum keeps
    the adjusted values monotone, capped at 1. It controls the family-wise error rate like
    Bonferroni but rejects at least as often.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * np.arange(len(p), 0, -1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One model against the best: its mean accuracy, the gap, and the Holm-adjusted p-value."""

    model: str
    mean_accuracy: float
    diff_to_best: float  # model - best, <= 0
    method: str
    p_value: float | None  # None when no test applies, see `note`
    p_holm: float | None
    worse: bool  # significantly worse than the best after Holm
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.p_value is not None


@dataclass(frozen=True)
class BestSet:
    """The best model, every other model tested against it, and those not shown worse."""

    best: str
    alpha: float
    method: str
    comparisons: tuple[Comparison, ...]  # the other models, best mean accuracy first
    not_worse: tuple[str, ...]  # the best first, then every tested model not significantly worse

    @property
    def untested(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if not c.tested)


def _holm_where_tested(pvalues: list[float | None]) -> list[float | None]:
    """Holm over the p-values that exist; a None (test not applicable) stays None."""
    tested = [p for p in pvalues if p is not None]
    adjusted = iter(holm(tested).tolist())
    return [None if p is None else next(adjusted) for p in pvalues]


def compare_to_best(
    accuracies: Mapping[str, ArrayLike],
    *,
    correct: Mapping[str, np.ndarray] | None = None,
    alpha: float = 0.05,
) -> BestSet:
    """Find the model with the highest mean accuracy and the set not significantly worse.

    Every other model is tested against the best by `compare_two` (Welch across seeds with 2+
    seeds each; exact McNemar on `correct`, (seeds, images) bools per model, with one run
    each), and the p-values are Holm-adjusted over the tests made (Holm needs no independence
    and allows mixed tests). A model as good as the best is called worse with probability at
    most about alpha; the best is chosen by the same data, so when many models tie, the chance
    that *some* tied model is called worse exceeds alpha (docs/report.md has the figures). A
    model that no test applies to is neither worse nor in `not_worse`: it is listed as untested.
    """
    accs = {name: _as_values(v, f"accuracies[{name!r}]") for name, v in accuracies.items()}
    if not accs:
        raise ValueError("compare_to_best needs at least one model")
    if correct is not None and (missing := sorted(set(accs) - set(correct))):
        raise ValueError(f"per-image correctness missing for models {missing}")
    means = {name: float(v.mean()) for name, v in accs.items()}
    best = max(means, key=means.__getitem__)  # the first of equals, in input order
    others = sorted((m for m in means if m != best), key=lambda m: -means[m])
    paired = correct or {}
    tests = [compare_two(accs[m], accs[best], paired.get(m), paired.get(best)) for m in others]
    adjusted = _holm_where_tested([t.p_value for t in tests])
    comparisons = tuple(
        Comparison(
            m,
            means[m],
            means[m] - means[best],
            t.method,
            t.p_value,
            p_holm,
            p_holm is not None and p_holm < alpha and means[m] < means[best],
            t.note,
        )
        for m, t, p_holm in zip(others, tests, adjusted, strict=True)
    )
    methods = list(dict.fromkeys(c.method for c in comparisons if c.tested))
    method = "; ".join(methods) + ", Holm-adjusted" if methods else "no test applied"
    not_worse = (best,) + tuple(c.model for c in comparisons if c.tested and not c.worse)
    return BestSet(best, alpha, method, comparisons, not_worse)


@dataclass(frozen=True)
class LevelMean:
    """The marginal mean of a metric at one level of a factor, with its interval."""

    level: object
    ci: MeanCI
    n_models: int
    n_runs: int
    unit: str  # "model" (seed-averaged models) or "run" (one model's seeds), see factor_effects


@dataclass(frozen=True)
class FactorEffect:
    factor: str
    metric: str
    levels: tuple[LevelMean, ...]  # sorted by level where levels compare, else as first seen


def _runs_by_model_at_level(
    rows: Sequence[Mapping[str, Any]], factor: str, metric: str, model_key: str
) -> dict[object, dict[object, list[float]]]:
    """{level: {model: [metric per run]}}, in the order levels and models first appear."""
    grouped: dict[object, dict[object, list[float]]] = {}
    for i, row in enumerate(rows):
        if factor not in row:
            raise SpecError(f"factor {factor!r} is not a column of the results; have {sorted(row)}")
        if metric not in row or model_key not in row:
            raise ValueError(f"row {i} lacks {metric!r} or {model_key!r}: {dict(row)}")
        per_model = grouped.setdefault(row[factor], {})
        per_model.setdefault(row[model_key], []).append(float(row[metric]))
    return grouped


def _level_mean(level: object, runs: dict[object, list[float]], confidence: float) -> LevelMean:
    n_runs = sum(len(v) for v in runs.values())
    if len(runs) == 1:  # one model at this level (a one-factor study): its seeds are all we have
        (values,) = runs.values()
        return LevelMean(level, mean_ci(values, confidence), 1, n_runs, "run")
    model_means = [float(np.mean(v)) for v in runs.values()]
    return LevelMean(level, mean_ci(model_means, confidence), len(runs), n_runs, "model")


def factor_effects(
    rows: Sequence[Mapping[str, Any]],
    factor: str,
    *,
    metric: str = "accuracy",
    model_key: str = "model",
    confidence: float = 0.95,
) -> FactorEffect:
    """Marginal mean of `metric` at each level of `factor` over a grid study's runs.

    `rows` holds one mapping per run (e.g. {"model": "d3-k5", "depth": 3, "seed": 0,
    "accuracy": 0.991}). Each model's seeds are averaged first and the t-interval is taken over
    the models at the level: the models are the replicates of a factor level, and counting
    every seed as independent would narrow the interval falsely (pseudo-replication). A level
    held by one model falls back to that model's seeds. In an unbalanced grid the marginal
    means also carry the other factors' imbalance.
    """
    grouped = _runs_by_model_at_level(rows, factor, metric, model_key)
    try:
        levels = sorted(grouped)
    except TypeError:  # mixed kinds of level (e.g. None and int): keep them as first seen
        levels = list(grouped)
    means = tuple(_level_mean(level, grouped[level], confidence) for level in levels)
    return FactorEffect(factor, metric, means)


@dataclass(frozen=True)
class Instability:
    """A model's spread across seeds, set against the test set's binomial noise floor."""

    n: int
    mean: float
    std: float | None  # ddof=1; None for one run
    range: float
    noise_floor: float  # one binomial SE at the mean accuracy
    k: float
    unstable: bool
    rule: str
    note: str = ""


def instability(values: ArrayLike, *, n_images: int, k: float = 3.0) -> Instability:
    """Flag a model whose seeds disagree by more than the test set can explain.

    Rule: unstable when the std of the seed accuracies (ddof=1) exceeds k times one binomial
    SE, sqrt(p(1-p)/n_images) at their mean p. The SE is the test set's own resolution (about
    0.1 point at 99 % on 10,000 images); seeds spreading k = 3 times wider differ by more than
    measurement noise, through training itself (a bad seed, a near-divergence). One run has no
    spread and is never flagged; `note` says so.
    """
    arr = _as_values(values)
    mean = float(arr.mean())
    floor = binomial_se(mean, n_images)
    rule = f"unstable if std across seeds > {k:g} x binomial SE ({100 * floor:.3f} points)"
    spread = float(np.ptp(arr))
    if arr.size == 1:
        note = "one run: no spread to judge; run more seeds"
        return Instability(1, mean, None, spread, floor, k, False, rule, note)
    std = float(arr.std(ddof=1))
    return Instability(arr.size, mean, std, spread, floor, k, std > k * floor, rule)
