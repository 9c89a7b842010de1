"""Sequential seeds: add a seed only to the models whose place is still open.

`decide(results, settings)` is pure: each model's test accuracies in seed order in, a frozen
`Decisions` out, saying for every model whether it is shown worse than the best, shown within
the margin of every model still running, the best, or why it stopped undecided; and which
models need their next seed. The study driver (`cnnlab.study.run_until_decided`) alternates:
decide, train the seeds asked for, decide again. A stopped study replays the same looks from
the same stored accuracies, so it resumes to the same decisions.

The procedure, valid under repeated looks (docs/sequential.md has the proof and references):
- Looks at n = min_seeds, ..., max_seeds seeds; every model still open has n seeds at look n.
- Alpha is spent over an open-ended sequence of looks: alpha_n = alpha * min_seeds /
  (n (n + 1)), which adds up to alpha over n = min_seeds, min_seeds + 1, ... without end. By
  the union bound (Bonferroni over looks) the levels spent add up to at most alpha whatever
  the correlation between looks and wherever the study stops, so raising max_seeds after
  seeing the results stays valid and changes no decision already made. (Studies stored
  before this spending was adopted keep theirs, "linear": alpha * (n - n_prev) / max_seeds,
  Lan & DeMets 1983, with n_prev = 0 before the first look.)
- Worse: model k is shown worse when (K - 1) * min_l p(k vs l) <= alpha_n, l over the other
  models still open, p the one-sided Welch t-test of "k is at least as good as l" at n seeds
  each (Gupta's subset selection with Bonferroni over the K - 1 rivals; Holm's first step,
  which is all an "any rival beats k" claim uses). A truly best model is excluded with
  probability at most alpha.
- Within the margin: k is shown within `margin` of every model still open when each
  one-sided Welch test of "l beats k by margin or more" rejects at alpha_n (an
  intersection-union test, Berger 1982, needs no multiplicity correction).
- Futility: a model whose observed gap and spread would decide neither way even at max_seeds
  stops early. Stopping without a claim never adds an error, so this costs power, not validity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import special

from cnnlab.errors import SpecError
from cnnlab.store.interface import FINAL_STATUSES, RunRecord

DEFAULT_MIN_SEEDS = 2  # the fewest that give a spread, so a t-test
DEFAULT_MAX_SEEDS = 10
DEFAULT_MARGIN = 0.001  # 0.1 accuracy points: one binomial SE at 99 % on 10,000 images
DEFAULT_ALPHA = 0.05
SPENDINGS = ("open-ended", "linear")
PROCEDURES = {
    spending: (
        f"sequential Welch t-tests at equal seed counts, alpha spent {how} "
        "(Bonferroni over looks), Bonferroni over the K - 1 rivals for 'worse' (subset "
        "selection), intersection-union tests for 'within the margin'"
    )
    for spending, how in (
        ("open-ended", "over an open-ended sequence of looks, alpha min / (n (n + 1)) at n seeds"),
        ("linear", "linearly over the looks up to the maximum"),
    )
}
PROCEDURE = PROCEDURES["open-ended"]

State = Literal["open", "best", "worse", "within margin", "max seeds", "futile", "budget", "failed"]
DECIDED: tuple[State, ...] = ("best", "worse", "within margin")


@dataclass(frozen=True)
class Budget:
    """A limit on what a study may spend: runs, or seconds of training (summed over runs)."""

    runs: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        if self.runs is not None:
            return f"{self.runs} runs"
        return "no budget" if self.seconds is None else _duration_text(self.seconds)


def _duration_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


_BUDGET = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(runs?|h|hours?|m|min|minutes?|s|sec|seconds?)\s*")
_SECONDS = {"h": 3600, "hour": 3600, "hours": 3600, "m": 60, "min": 60, "minute": 60}
_SECONDS.update({"minutes": 60, "s": 1, "sec": 1, "second": 1, "seconds": 1})


def parse_budget(text: str | None) -> Budget:
    """'500runs', '2h', '90min', '3600s' as a Budget; None or '' is no budget."""
    if text is None or not str(text).strip():
        return Budget()
    match = _BUDGET.fullmatch(str(text).lower())
    if match is None:
        raise SpecError(
            f"--budget must be a number of runs or a time, e.g. 500runs, 2h, 90min or 3600s; "
            f"got {text!r}"
        )
    amount, unit = float(match.group(1)), match.group(2)
    if amount <= 0:
        raise SpecError(f"--budget must be above 0, got {text!r}")
    if unit.startswith("run"):
        if amount != int(amount):
            raise SpecError(f"--budget in runs must be a whole number, got {text!r}")
        return Budget(runs=int(amount))
    return Budget(seconds=amount * _SECONDS[unit])


@dataclass(frozen=True)
class SequentialSettings:
    """How `--until-decided` looks: the seed range, the margin, the level and the budget."""

    min_seeds: int = DEFAULT_MIN_SEEDS
    max_seeds: int = DEFAULT_MAX_SEEDS
    margin: float = DEFAULT_MARGIN  # in accuracy (0.001 = 0.1 points)
    alpha: float = DEFAULT_ALPHA
    budget: Budget = field(default_factory=Budget)
    spending: str = "open-ended"  # "linear": how studies stored before open-ended spent it

    def __post_init__(self) -> None:
        if self.min_seeds < 2:
            raise SpecError(
                f"--min-seeds must be at least 2 (a t-test needs a spread), got {self.min_seeds}"
            )
        if self.min_seeds > self.max_seeds:
            raise SpecError(
                f"--min-seeds must not exceed --max-seeds, got min {self.min_seeds} > "
                f"max {self.max_seeds}"
            )
        if self.max_seeds > 10_000:
            raise SpecError(f"--max-seeds must be at most 10000, got {self.max_seeds}")
        if not (math.isfinite(self.margin) and 0 < self.margin < 1):
            raise SpecError(
                f"--margin must be above 0 and below 100 accuracy points, got "
                f"{100 * self.margin:g} points"
            )
        if not 0 < self.alpha < 1:
            raise SpecError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.spending not in SPENDINGS:
            known = ", ".join(SPENDINGS)
            raise SpecError(f"spending must be one of {known}, got {self.spending!r}")

    def level(self, n: int) -> float:
        """The alpha spent at the look with n seeds: alpha min / (n (n + 1)), so the looks'
        levels add up to alpha however many follow and none depends on max_seeds; "linear"
        (older studies): alpha (n - n_prev) / max_seeds, linear in information (Lan-DeMets)."""
        if self.spending == "linear":
            previous = 0 if n == self.min_seeds else n - 1
            return self.alpha * (n - previous) / self.max_seeds
        return self.alpha * self.min_seeds / (n * (n + 1))

    @property
    def procedure(self) -> str:
        """The procedure in words, for the conclusions and `--json`."""
        return PROCEDURES[self.spending]

    def check_budget(self, models: int) -> None:
        """A run budget that cannot buy every model its minimum seeds is refused up front."""
        needed = models * self.min_seeds
        if self.budget.runs is not None and self.budget.runs < needed:
            raise SpecError(
                f"--budget {self.budget.runs} runs cannot buy the minimum: {models} models x "
                f"{self.min_seeds} seeds need {needed} runs"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "min_seeds": self.min_seeds,
            "max_seeds": self.max_seeds,
            "margin": self.margin,
            "alpha": self.alpha,
            "budget_runs": self.budget.runs,
            "budget_seconds": self.budget.seconds,
            "spending": self.spending,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> SequentialSettings:
        budget = Budget(values.get("budget_runs"), values.get("budget_seconds"))  # type: ignore[arg-type]
        return cls(
            int(values["min_seeds"]),  # type: ignore[arg-type]
            int(values["max_seeds"]),  # type: ignore[arg-type]
            float(values["margin"]),  # type: ignore[arg-type]
            float(values["alpha"]),  # type: ignore[arg-type]
            budget,
            str(values.get("spending", "linear")),  # stored before open-ended spending: linear
        )


@dataclass(frozen=True)
class ModelDecision:
    """Where one model stands: its state, the seeds it got, and why, in words."""

    model: str
    state: State
    seeds: int  # seeds the decision used (a failed model: its runs trained, failed ones too)
    reason: str
    p_value: float | None = None  # the adjusted p-value behind a "worse" or margin claim

    @property
    def decided(self) -> bool:
        return self.state in DECIDED

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "state": self.state,
            "seeds": self.seeds,
            "reason": self.reason,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class Decisions:
    """Every model's decision, the seeds still to train, and what was spent."""

    models: tuple[ModelDecision, ...]
    needed: Mapping[str, int]  # model -> the seed count it must reach before the next look
    settings: SequentialSettings
    runs_spent: int  # finished runs the decisions used
    best: str | None

    @property
    def finished(self) -> bool:
        return not self.needed

    def by_state(self, *states: State) -> list[ModelDecision]:
        return [m for m in self.models if m.state in states]

    def to_dict(self) -> dict[str, object]:
        return {
            "procedure": self.settings.procedure,
            "settings": self.settings.to_dict(),
            "best": self.best,
            "runs_spent": self.runs_spent,
            "finished": self.finished,
            "needed": dict(self.needed),
            "models": [m.to_dict() for m in self.models],
        }


# -- the tests at one look ----------------------------------------------------------------------


def welch_upper(
    worse: np.ndarray, better: np.ndarray, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Welch p-values of "mean(better) - mean(worse) <= shift" along the last axis.

    Arrays (..., n). Returns (p, t). Zero spread in both gives no test: p = 1 (never a claim).
    """
    n_w, n_b = worse.shape[-1], better.shape[-1]
    v_w = worse.var(axis=-1, ddof=1) / n_w
    v_b = better.var(axis=-1, ddof=1) / n_b
    se2 = v_w + v_b
    gap = better.mean(axis=-1) - worse.mean(axis=-1) - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        t = gap / np.sqrt(se2)
        df = se2**2 / (v_w**2 / (n_w - 1) + v_b**2 / (n_b - 1))  # Welch-Satterthwaite
    p = special.stdtr(np.where(np.isfinite(df), df, 1.0), -t)  # P(T_df > t)
    p = np.where(se2 > 0, p, 1.0)
    return p, np.where(se2 > 0, t, 0.0)


def _futile(gap: float, spread2: float, rivals: int, settings: SequentialSettings) -> bool:
    """Whether the observed gap to the leader and spread would decide neither way even at
    max_seeds: the projected z of 'worse' and of 'within the margin' at n = max both fall
    short of the last look's critical value (the observed effect taken as the true one; the
    normal quantile, below the t's, stops fewer models than the t would)."""
    if spread2 <= 0:
        return False
    se = math.sqrt(spread2 / settings.max_seeds)
    last = settings.level(settings.max_seeds)
    worse_crit = float(special.ndtri(1 - last / rivals))
    margin_crit = float(special.ndtri(1 - last))
    return gap / se < worse_crit and (settings.margin - gap) / se < margin_crit


def _look(
    values: Mapping[str, np.ndarray], n: int, rivals: int, settings: SequentialSettings
) -> dict[str, tuple[State, str, float | None]]:
    """Decisions at the look with n seeds among the open models (values: their first n)."""
    names = list(values)
    level = settings.level(n)
    data = np.stack([values[m] for m in names])  # (open models, n)
    means = data.mean(axis=1)
    leader = int(np.argmax(means))
    # [k, l]: one-sided p of "k is at least as good as l", and of "l beats k by the margin".
    p_worse, _ = welch_upper(data[:, None, :], data[None, :, :])
    p_margin, _ = welch_upper(data[None, :, :], data[:, None, :], shift=-settings.margin)
    np.fill_diagonal(p_worse, np.inf)
    np.fill_diagonal(p_margin, 0.0)
    out: dict[str, tuple[State, str, float | None]] = {}
    for i, name in enumerate(names):
        adjusted = min(1.0, rivals * float(p_worse[i].min()))
        if adjusted <= level:
            rival = int(np.argmin(p_worse[i]))
            gap = 100 * (means[rival] - means[i])
            text = (
                f"worse than {names[rival]} by {gap:.2f} points at {n} seeds "
                f"(p = {adjusted:.2g} <= {level:.2g})"
            )
            out[name] = ("worse", text, adjusted)
        elif i != leader and float(p_margin[i].max()) <= level:
            text = (
                f"within {100 * settings.margin:g} points of every model still open at {n} "
                f"seeds (largest p = {float(p_margin[i].max()):.2g} <= {level:.2g})"
            )
            out[name] = ("within margin", text, float(p_margin[i].max()))
        elif i != leader and _futile(
            max(float(means[leader] - means[i]), 0.0),
            float(data[i].var(ddof=1) + data[leader].var(ddof=1)),
            rivals,
            settings,
        ):
            gap = 100 * float(means[leader] - means[i])
            text = (
                f"undecided at {n} seeds: a gap of {gap:.2f} points at this spread would "
                f"decide neither way within {settings.max_seeds} seeds"
            )
            out[name] = ("futile", text, None)
    return out


# -- the whole procedure, replayed from the stored results --------------------------------------


def decide(
    results: Mapping[str, Sequence[float | None]],
    settings: SequentialSettings,
    *,
    seconds_spent: float = 0.0,
) -> Decisions:
    """Replay the looks on each model's accuracies in seed order (None: a failed run).

    results holds every model of the study (an empty list for a model not yet trained).
    Stored seeds beyond where a model stopped are ignored. seconds_spent: the training time
    the study has used, for a time budget.
    """
    if not results:
        raise ValueError("decide needs at least one model")
    rivals = len(results) - 1
    values = {m: list(v) for m, v in results.items()}
    stopped: dict[str, ModelDecision] = {}
    open_models = list(values)
    n = settings.min_seeds
    while True:
        failed = [m for m in open_models if None in values[m][:n]]
        for m in failed:
            seed = values[m][:n].index(None)
            text = f"seed index {seed} failed or diverged: stopped without a decision"
            # its runs up to this look were trained (and paid for), the failed ones too
            stopped[m] = ModelDecision(m, "failed", min(len(values[m]), n), text)
        open_models = [m for m in open_models if m not in failed]
        if any(len(values[m]) < n for m in open_models):
            return _pending(values, open_models, stopped, n, settings, seconds_spent)
        if len(open_models) <= 1:
            break
        looked = _look(
            {m: np.asarray(values[m][:n], float) for m in open_models}, n, rivals, settings
        )
        for m, (state, text, p) in looked.items():
            stopped[m] = ModelDecision(m, state, n, text, p)
        open_models = [m for m in open_models if m not in looked]
        if len(open_models) <= 1 or n == settings.max_seeds:
            break
        spent = _spent(values, stopped, open_models, n)
        if settings.budget.runs is not None and spent + len(open_models) > settings.budget.runs:
            return _out_of_budget(values, open_models, stopped, n, settings, spent)
        n += 1
    return _final(values, open_models, stopped, n, settings)


def _spent(values: Mapping, stopped: Mapping[str, ModelDecision], open_models: list, n: int) -> int:
    return sum(d.seeds for d in stopped.values()) + n * len(open_models)


def _pending(
    values: Mapping[str, list],
    open_models: list[str],
    stopped: dict[str, ModelDecision],
    n: int,
    settings: SequentialSettings,
    seconds_spent: float,
) -> Decisions:
    """Some open model lacks its n-th seed: train it, unless a time budget is spent."""
    have = {m: min(len(values[m]), n) for m in open_models}
    missing = {m: n for m in open_models if have[m] < n}
    if settings.budget.seconds is not None and seconds_spent >= settings.budget.seconds:
        text = f"budget spent ({_duration_text(seconds_spent)} of {settings.budget})"
        for m in open_models:
            stopped[m] = ModelDecision(m, "budget", have[m], text)
        return _assemble(values, stopped, {}, settings)
    for m in open_models:
        text = f"open: looks again at {n} seeds (at most {settings.max_seeds})"
        stopped[m] = ModelDecision(m, "open", have[m], text)
    return _assemble(values, stopped, missing, settings)


def _out_of_budget(
    values: Mapping[str, list],
    open_models: list[str],
    stopped: dict[str, ModelDecision],
    n: int,
    settings: SequentialSettings,
    spent: int,
) -> Decisions:
    text = (
        f"budget spent: {spent} of {settings.budget} used, {len(open_models)} more needed for "
        f"the next look at {n + 1} seeds"
    )
    for m in open_models:
        stopped[m] = ModelDecision(m, "budget", n, text)
    return _assemble(values, stopped, {}, settings)


def _final(
    values: Mapping[str, list],
    open_models: list[str],
    stopped: dict[str, ModelDecision],
    n: int,
    settings: SequentialSettings,
) -> Decisions:
    """The last look: a lone open model is the best; several left at max seeds stay undecided."""
    if len(open_models) == 1:
        (m,) = open_models
        others = [d for d in stopped.values() if d.state != "failed"]
        text = (
            f"the best: every other model was decided or stopped by {n} seeds"
            if others
            else "the only model with results"
        )
        stopped[m] = ModelDecision(m, "best", n, text)
    for m in open_models if len(open_models) > 1 else []:
        text = f"undecided at the maximum of {settings.max_seeds} seeds"
        stopped[m] = ModelDecision(m, "max seeds", n, text)
    return _assemble(values, stopped, {}, settings)


def _assemble(
    values: Mapping[str, list],
    stopped: dict[str, ModelDecision],
    needed: Mapping[str, int],
    settings: SequentialSettings,
) -> Decisions:
    models = tuple(stopped[m] for m in values)
    used = {m.model: values[m.model][: m.seeds] for m in models}
    means = {m: float(np.mean(v)) for m, v in used.items() if v and None not in v}
    best = next((m.model for m in models if m.state == "best"), None)
    if best is None and means:
        best = max(means, key=means.__getitem__)
    runs = sum(m.seeds for m in models)
    return Decisions(models, dict(needed), settings, runs, best)


# -- from a study's stored runs -------------------------------------------------------------------

SETTINGS_KEY = "until_decided"  # where the study's stored settings keep the procedure's


def accuracies_by_seed(runs: Sequence[RunRecord], model: str) -> list[float | None]:
    """A model's test accuracies for seeds 0, 1, 2, ... up to the first seed not yet ended;
    None for a failed or diverged run (or one without a finite accuracy)."""
    ended = {run.seed: run for run in runs if run.model == model and run.status in FINAL_STATUSES}
    values: list[float | None] = []
    while len(values) in ended:
        run = ended[len(values)]
        ok = run.status == "done" and run.test is not None and math.isfinite(run.test.accuracy)
        values.append(run.test.accuracy if ok else None)  # type: ignore[union-attr]
    return values


def decisions_of(settings: Mapping[str, Any], runs: Sequence[RunRecord]) -> Decisions | None:
    """The decisions of a study run with `--until-decided`, from its stored settings and runs;
    None for a study with a fixed number of seeds."""
    stored = settings.get(SETTINGS_KEY)
    if not stored:
        return None
    models = list(stored.get("models") or dict.fromkeys(run.model for run in runs))
    latest = set(settings.get("keys") or (run.key for run in runs))  # the latest expansion's
    chosen = [run for run in runs if run.model in models and run.key in latest]
    seconds = sum(run.seconds or 0.0 for run in chosen if run.status in FINAL_STATUSES)
    results = {m: accuracies_by_seed(chosen, m) for m in models}
    return decide(results, SequentialSettings.from_dict(stored), seconds_spent=seconds)
