"""Written conclusions, generated from the statistics: only what the tests support, in words.

`write_conclusions(evidence)` is pure: per-model accuracies (and per-image correctness where
the predictions can be paired) in, a frozen `Conclusions` out. Every sentence names its test
and its figures, so a reader can check it; where a test cannot apply (one seed, one model) the
sentence says so instead of guessing. For the seed study the notebook's own six conclusions are
set against ours, point by point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cnnlab import design, markdown, rungs, sequential, stats
from cnnlab.timing import DISTURBED_RATIO

ALPHA = 0.05
# The cost pick's practical margin: a model counts as a cheaper equal of the best only within
# half a point of its accuracy (five binomial SEs at 99 % on 10,000 images).
COST_MARGIN = 0.005
UNSTABLE_K = 3.0  # stats.instability's default: 3 binomial SEs of seed-to-seed spread


@dataclass(frozen=True, eq=False)
class ModelEvidence:
    """What the statistics need of one model: its finished runs' figures and its cost."""

    name: str
    accuracies: tuple[float, ...]  # test accuracy of each finished run
    correct: np.ndarray | None = None  # (runs, images) bool, same runs; None when not pairable
    params: int | None = None
    seconds_per_epoch: float | None = None
    factors: tuple[tuple[str, Any], ...] = ()  # a grid model's axis values
    failed: int = 0
    diverged: int = 0
    unfinished: int = 0
    pruned: int = 0  # runs stopped at a rung by --prune halving: no test figures
    reported_accuracy: float | None = None  # the notebook's figure, where there is one
    disturbed_timing: str = ""  # how other processes slowed its epochs (cnnlab.timing), if so

    @property
    def runs(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))


@dataclass(frozen=True, eq=False)
class Evidence:
    """A study's results as the statistics take them, with the settings that qualify them."""

    models: tuple[ModelEvidence, ...]
    n_images: int | None  # test images each accuracy is measured on (None: unknown)
    # The stored training settings: epochs, batch_size, validation (a fraction or "test"),
    # train_limit (None: every training image).
    training: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = ""  # the dataset's name ("mnist"), without its content hash
    alpha: float = ALPHA
    notes: tuple[str, ...] = ()  # caveats found while gathering the evidence
    decisions: sequential.Decisions | None = None  # a study run with --until-decided
    halving: rungs.Halving | None = None  # a study run with --prune halving

    def by_name(self) -> dict[str, ModelEvidence]:
        return {m.name: m for m in self.models}


@dataclass(frozen=True)
class Finding:
    # best, halving, best set, across seeds, noise floor, design, factor, stability, cost
    topic: str
    text: str


Verdict = Literal["agrees", "differs", "partly", "cannot tell", "not in this study"]


@dataclass(frozen=True)
class NotebookPoint:
    number: int
    quote: str  # the notebook's sentence, as far as the page shows it
    verdict: Verdict
    text: str


@dataclass(frozen=True)
class Conclusions:
    findings: tuple[Finding, ...]
    caveats: tuple[str, ...]
    notebook: tuple[NotebookPoint, ...] = ()
    best: stats.BestSet | None = field(default=None, compare=False)


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def points(value: float) -> str:
    return f"{100 * value:+.2f} points"


def p_text(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


# -- the tests, chosen by what the evidence allows ----------------------------------------------


def pairable(models: Sequence[ModelEvidence]) -> bool:
    """Whether every model's runs have per-image correctness on one test set."""
    shapes = {None if m.correct is None else m.correct.shape[1] for m in models}
    return None not in shapes and len(shapes) == 1


def best_set(models: Sequence[ModelEvidence], alpha: float) -> stats.BestSet:
    """Each model against the best: Welch across seeds, McNemar where single runs pair up."""
    accuracies = {m.name: np.asarray(m.accuracies) for m in models}
    correct = {m.name: m.correct for m in models} if pairable(models) else None
    return stats.compare_to_best(accuracies, correct=correct, alpha=alpha)


def compare_pair(a: ModelEvidence, b: ModelEvidence) -> stats.ModelTest:
    """One model against another: Welch across seeds, or exact McNemar with one run each."""
    pair = pairable([a, b])
    return stats.compare_two(
        a.accuracies, b.accuracies, a.correct if pair else None, b.correct if pair else None
    )


def accuracy_interval_of(m: ModelEvidence, n_images: int | None) -> tuple[float, float, str] | None:
    """A 95 % interval of a model's accuracy: over seeds (t) with 2+ runs, else the Wilson
    interval of its one run on the test set; None when neither can be had."""
    if m.runs >= 2:
        ci = stats.mean_ci(m.accuracies)
        if ci.low is not None and ci.high is not None:  # cut to [0, 1], where accuracy lies
            return max(ci.low, 0.0), min(ci.high, 1.0), f"t-interval over {m.runs} seeds"
    if not n_images:
        return None
    correct = min(max(round(m.accuracies[0] * n_images), 0), n_images)
    wilson = stats.accuracy_interval(correct, n_images)
    return wilson.low, wilson.high, f"Wilson interval of one run on {n_images:,} images"


# -- findings --------------------------------------------------------------------------------


def write_conclusions(evidence: Evidence) -> Conclusions:
    """The findings the statistics support, the caveats, and (seed study) the notebook's points."""
    measured = [m for m in evidence.models if m.runs]
    caveats = tuple(caveats_of(evidence))
    if not measured:
        nothing = Finding("best", "No model has a finished run yet: there is nothing to conclude.")
        return Conclusions((nothing,), caveats)
    best = best_set(measured, evidence.alpha)
    by_name = {m.name: m for m in measured}
    if evidence.decisions is not None:  # the sequential claims replace the fixed-seed tests
        best = sequential_best_set(best, evidence.decisions)
    pruned = [m.name for m in evidence.models if m.pruned and not m.runs]
    findings = [
        best_finding(by_name[best.best], evidence.n_images),
        *(halving_findings(evidence.halving, evidence.models) if evidence.halving else ()),
        *(
            sequential_findings(evidence.decisions)
            if evidence.decisions is not None
            else best_set_findings(best, pruned=bool(pruned))
        ),
        noise_floor_finding(by_name[best.best], evidence.n_images),
        *factor_findings(measured),
        *stability_findings(evidence.models, evidence.n_images),
        *cost_findings(best, by_name),
    ]
    notebook = notebook_points(evidence, best)
    return Conclusions(tuple(f for f in findings if f is not None), caveats, notebook, best)


def best_finding(best: ModelEvidence, n_images: int | None) -> Finding:
    interval = accuracy_interval_of(best, n_images)
    runs = "1 run" if best.runs == 1 else f"{best.runs} runs"
    where = (
        "no interval"
        if interval is None
        else (f"95 % interval {pct(interval[0])} to {pct(interval[1])}, {interval[2]}")
    )
    return Finding(
        "best",
        f"{best.name} has the highest mean test accuracy: {pct(best.mean)} over {runs} ({where}).",
    )


def best_set_findings(best: stats.BestSet, *, pruned: bool = False) -> list[Finding]:
    if not best.comparisons:
        text = (
            "It is the only model trained to the end (the others were pruned): nothing to compare."
            if pruned
            else "It is the only model with results: nothing to compare."
        )
        return [Finding("best set", text)]
    level = f"{best.method}, alpha = {best.alpha:g}"
    others = [name for name in best.not_worse if name != best.best]
    worse = [c for c in best.comparisons if c.worse]
    found = []
    if others:
        found.append(
            Finding(
                "best set",
                f"Not significantly worse than {best.best} ({level}): {', '.join(others)}. "
                "These cannot be told apart from the best with this data"
                + (
                    "; a test across a few seeds has little power, so more seeds may separate them."
                    if stats.WELCH_ACROSS_SEEDS in best.method
                    else "."
                ),
            )
        )
    if worse:
        listed = "; ".join(
            f"{c.model} ({points(c.diff_to_best)}, {p_text(c.p_holm)})" for c in worse
        )
        every = "" if others or best.untested else "every other model: "
        text = f"Significantly worse than {best.best} ({level}): {every}{listed}."
        found.append(Finding("best set", text))
    if best.untested:
        listed = "; ".join(f"{c.model} ({points(c.diff_to_best)}): {c.note}" for c in best.untested)
        text = f"Not tested against the best, so in neither list: {listed}."
        found.append(Finding("best set", text))
    return found


def sequential_best_set(best: stats.BestSet, decisions: sequential.Decisions) -> stats.BestSet:
    """The best set as the sequential procedure left it: every model not shown worse.

    A fixed-sample test on the seeds a sequential study happened to stop at would be the
    naive repeated test the procedure exists to avoid, so its "worse" claims are not used.
    """
    states = {d.model: d.state for d in decisions.models}
    kept = [name for name in best.not_worse[1:] if states.get(name) != "worse"]
    kept += [
        c.model for c in best.comparisons if c.model not in kept and states.get(c.model) != "worse"
    ]
    comparisons = tuple(
        dataclasses.replace(c, worse=states.get(c.model) == "worse") for c in best.comparisons
    )
    return dataclasses.replace(
        best,
        method=decisions.settings.procedure,
        comparisons=comparisons,
        not_worse=(best.best, *kept),
    )


def sequential_findings(decisions: sequential.Decisions) -> list[Finding]:
    """What `--until-decided` decided, per model with its seeds and why, and what it spent."""
    settings = decisions.settings
    budget = settings.budget
    head = (
        f"Seeds were added only while a model's place was open ({settings.procedure}; "
        f"alpha = {settings.alpha:g}, margin {100 * settings.margin:g} points, "
        f"{settings.min_seeds} to {settings.max_seeds} seeds"
        + (f", budget {budget}" if budget.runs or budget.seconds else "")
        + ")."
    )
    found = [Finding("best set", head)]
    groups = (
        (("worse",), "Shown worse than another model"),
        # one-sided, and only against the models open at that look (docs/sequential.md)
        (
            ("within margin",),
            f"Shown at most {100 * settings.margin:g} points below every model still open "
            "when it stopped",
        ),
        (("futile", "max seeds", "budget", "failed"), "Stopped without a decision"),
        (("open",), "Still open (the study is not finished)"),
    )
    for states, title in groups:
        chosen = decisions.by_state(*states)
        if chosen:
            listed = "; ".join(f"{d.model}: {d.reason}" for d in chosen)
            found.append(Finding("best set", f"{title}: {listed}."))
    seeds = ", ".join(f"{d.model} {d.seeds}" for d in decisions.models)
    spent = f"{decisions.runs_spent} runs in all" + (
        f" of a budget of {budget}" if budget.runs or budget.seconds else ""
    )
    found.append(Finding("best set", f"Seeds per model: {seeds}; {spent}."))
    return found


def halving_findings(found: rungs.Halving, models: Sequence[ModelEvidence]) -> list[Finding]:
    """What `--prune halving` pruned at each rung, and what that means for the statistics."""
    runs = {m.name: m.pruned for m in models}
    finished = {m.name for m in models if m.accuracies}
    parts, compared = [], []
    for rung in found.rungs:
        head = (
            f"rung {rung.number} at epoch {rung.epoch} kept {len(rung.kept)} of "
            f"{len(rung.ranked)} models"
        )
        if rung.pruned:
            count = sum(runs.get(name, 0) for name in rung.pruned)
            head += (
                f" and pruned {len(rung.pruned)} ({count} run{'' if count == 1 else 's'}: "
                f"{', '.join(rung.pruned)})"
            )
        parts.append(head)
        compared += [name for name in rung.pruned if name in finished]
    done = "; ".join(parts) if parts else "no rung decided yet"
    text = (
        f"Successive halving stopped the models that ranked low early "
        f"({found.settings.describe(found.epochs)}): {done}. Pruned runs have no final "
        "statistics and are in none of the comparisons here; a rung ranks an early epoch, so "
        "a model that starts slowly can be pruned although it would have caught up."
    )
    if compared:  # a rung's losers do not stop runs that already ended
        text += (
            f" Runs of {', '.join(compared)} had ended before their rung (EarlyStopping, or "
            "trained to the end before halving): those are compared as finished, over fewer "
            "seeds where others were pruned."
        )
    return [Finding("halving", text)]


def noise_floor_finding(best: ModelEvidence, n_images: int | None) -> Finding | None:
    if not n_images:
        return None
    floor = stats.noise_floor(min(max(best.mean, 0.0), 1.0), n_images)
    return Finding(
        "noise floor",
        f"Noise floor: at {pct(best.mean)} accuracy on {n_images:,} test images one binomial "
        f"standard error is {floor.points:.2f} points; the difference of two runs' accuracies "
        f"has one of up to {math.sqrt(2) * floor.points:.2f} points (less where both err on the "
        f"same images), so differences under about {2 * math.sqrt(2) * floor.points:.1f} points "
        "between single runs are within measurement noise.",
    )


def factor_findings(measured: Sequence[ModelEvidence]) -> list[Finding]:
    """Each grid's design (what it can estimate), then each factor's marginal means; a clear
    effect only where 95 % intervals separate. One factor at a time: a factor's levels are
    compared with the other factors at their baseline only."""
    findings = []
    for names, note, members, effects in _grid_effects(measured):
        if members > 1:
            findings.append(
                Finding("design", f"Design of the grid over {', '.join(names)}: " + note.text)
            )
        findings += [_factor_finding(effect) for effect in effects]
    return findings


def factor_effects_of(measured: Sequence[ModelEvidence]) -> list[stats.FactorEffect]:
    """Each grid factor's marginal means over the same runs as `factor_findings` (the report
    plots them)."""
    grids = _grid_effects([m for m in measured if m.runs])
    return [effect for _, _, _, effects in grids for effect in effects]


def _grid_effects(
    measured: Sequence[ModelEvidence],
) -> list[tuple[tuple[str, ...], Any, int, list[stats.FactorEffect]]]:
    """Per grid (two grids: two designs, each with its own factors): its factor names, its
    design, how many models it has, and each factor's effect with the others at baseline."""
    grids = dict.fromkeys(tuple(name for name, _ in m.factors) for m in measured if m.factors)
    found = []
    for names in grids:
        members = [m for m in measured if tuple(n for n, _ in m.factors) == names]
        note = design.describe([dict(m.factors) for m in members])
        effects = [
            stats.factor_effects(
                [
                    {"model": m.name, "accuracy": acc, **dict(m.factors)}
                    for m in members
                    if _at_baseline(dict(m.factors), name, note.baseline)
                    for acc in m.accuracies
                ],
                name,
            )
            for name in names
        ]
        found.append((names, note, len(members), effects))
    return found


def _at_baseline(factors: dict[str, Any], name: str, baseline: Mapping[str, Any] | None) -> bool:
    """Whether a model's other factors sit at the baseline (always, without one)."""
    if baseline is None:
        return True
    return all(factors.get(other) == value for other, value in baseline.items() if other != name)


def _factor_finding(effect: stats.FactorEffect) -> Finding:
    parts = [f"{level.level}: {pct(level.ci.mean)}{_ci_text(level.ci)}" for level in effect.levels]
    text = f"Factor {effect.factor}: " + "; ".join(parts) + ". " + _effect_verdict(effect)
    return Finding("factor", text)


def _ci_text(ci: stats.MeanCI) -> str:
    if ci.low is None or ci.high is None:
        return f" ({ci.n} value, no interval)"
    return f" [{pct(max(ci.low, 0.0))}, {pct(min(ci.high, 1.0))}]"  # accuracy lies in [0, 1]


def _effect_verdict(effect: stats.FactorEffect) -> str:
    levels = effect.levels
    if len(levels) < 2:
        return "One level only: no effect to estimate."
    if any(level.ci.low is None for level in levels):
        return "Too few models or runs per level for an interval: no claim."
    top = max(levels, key=lambda level: level.ci.mean)
    bottom = min(levels, key=lambda level: level.ci.mean)
    if top.ci.low > bottom.ci.high:  # type: ignore[operator]
        return (
            f"The 95 % intervals of {top.level} and {bottom.level} do not overlap: "
            f"{top.level} is better by {points(top.ci.mean - bottom.ci.mean)} "
            "(averaged over the grid's other factors)."
        )
    return "The intervals overlap: no clear effect at this sample size."


def stability_findings(models: Sequence[ModelEvidence], n_images: int | None) -> list[Finding]:
    """Runs that diverged or failed, by model, then the models whose seeds disagree."""
    found = []
    for m in models:
        total = m.runs + m.failed + m.diverged
        if m.diverged:
            found.append(
                Finding("stability", f"{m.name} diverged in {m.diverged} of {total} runs.")
            )
        if m.failed:
            text = f"{m.name} failed in {m.failed} of {total} runs (see the failed runs)."
            found.append(Finding("stability", text))
    multi = [m for m in models if m.runs >= 2]
    if multi and n_images:
        found.append(seed_spread_finding(multi, n_images))
    return found


def seed_spread_finding(models: Sequence[ModelEvidence], n_images: int) -> Finding:
    """The models whose seeds spread wider than UNSTABLE_K binomial SEs (stats.instability)."""
    flags = [(m, stats.instability(m.accuracies, n_images=n_images, k=UNSTABLE_K)) for m in models]
    unstable = [
        f"{m.name} (std {100 * (flag.std or 0.0):.2f} points, range {100 * flag.range:.2f})"
        for m, flag in flags
        if flag.unstable
    ]
    rule = f"{UNSTABLE_K:g} x the test set's binomial SE"
    if unstable:
        return Finding(
            "stability", f"Unstable across seeds (std above {rule}): " + "; ".join(unstable) + "."
        )
    return Finding("stability", f"No model's seeds spread more than {rule}.")


def cost_findings(best: stats.BestSet, by_name: dict[str, ModelEvidence]) -> list[Finding]:
    """The cheapest model (parameters, then time) among those not worse than the best and
    within COST_MARGIN of its accuracy: "not shown worse" alone, with a few seeds, let a
    model 48 points below the best be called the cheap equal of it."""
    top = by_name[best.best]
    candidates = [
        by_name[name] for name in best.not_worse if top.mean - by_name[name].mean <= COST_MARGIN
    ]
    found = []
    for attribute, unit in (("params", "parameters"), ("seconds_per_epoch", "seconds per epoch")):
        priced = [m for m in candidates if getattr(m, attribute) is not None]
        if len(priced) < 2 or getattr(top, attribute) is None:
            continue
        cheapest = min(priced, key=lambda m: getattr(m, attribute))
        found.append(Finding("cost", _cost_text(cheapest, top, attribute, unit)))
    return found


def _cost_text(cheapest: ModelEvidence, top: ModelEvidence, attribute: str, unit: str) -> str:
    value, top_value = getattr(cheapest, attribute), getattr(top, attribute)
    shown = f"{value:,}" if attribute == "params" else f"{value:.2f} s"
    if cheapest.name == top.name:
        return f"By {unit}, the best model {top.name} is also the cheapest of its set ({shown})."
    share = 100 * value / top_value if top_value else math.nan
    return (
        f"Cheapest by {unit} among the models not worse than the best and within "
        f"{points(COST_MARGIN).lstrip('+')} of it: {cheapest.name} with {shown} ({share:.0f} % "
        f"of {top.name}'s), at {pct(cheapest.mean)} accuracy."
    )


def caveats_of(evidence: Evidence) -> list[str]:
    found = []
    if evidence.training.get("validation") == "test":
        found.append(
            "Validation used the test set (the seed notebook's validation_data=(x_test, y_test)): "
            "the validation curves are test curves, and any choice made by watching them "
            "(epochs, the model) makes the test figures optimistic."
        )
    if evidence.training.get("train_limit"):
        limit = evidence.training["train_limit"]
        found.append(f"Trained on the first {limit:,} training images only.")
        held_out = evidence.training.get("validation")
        if isinstance(held_out, float) and held_out > 0 and round(held_out * limit) < 1000:
            images = max(round(held_out * limit), 1)
            found.append(
                f"The validation curves come from {images:,} held-out images: validation "
                f"accuracy moves in steps of {100 / images:.2g} points."
            )
    measured = [m for m in evidence.models if m.runs]
    if measured and max(m.runs for m in measured) == 1:
        found.append(
            "One run per model: the spread across seeds is unknown, and the paired tests "
            "compare these trained networks, not the architectures in general."
        )
    disturbed = [f"{m.name} ({m.disturbed_timing})" for m in evidence.models if m.disturbed_timing]
    if disturbed:
        found.append(
            f"Timings disturbed (epochs over {DISTURBED_RATIO:g}x their model's steady time: "
            "another process shared the CPU): " + "; ".join(disturbed) + ". Seconds per epoch "
            "are steady estimates (the median of each model's fastest half of epochs), so the "
            "cheapest-by-time pick rests on undisturbed epochs; a run slowed from start to end "
            "cannot be told from a slow model: time again alone to be sure."
        )
    pruned = sum(m.pruned for m in evidence.models)
    if pruned and evidence.halving is None:
        found.append(f"{pruned} runs were pruned early: they have no final statistics.")
    missing = sum(m.unfinished for m in evidence.models)
    if missing:
        runs = "1 run has" if missing == 1 else f"{missing} runs have"
        found.append(f"{runs} not finished: these conclusions are provisional.")
    return found + list(evidence.notes)


# -- the seed notebook's six conclusions --------------------------------------------------------

# The notebook's "Conclusion" cell (/work/shared/seed/000_b181433f1d032d6e.txt), each line as the
# page shows it: cut at the page edge, the figures after "max accuracy" lost.
NOTEBOOK_CONCLUSIONS = (
    "As you can see from the above table , i ran the first 3 of 3 layers with different kernels "
    "and got a max accuracy",
    "For the next three models i have given 5 layers of Convolution with again various kernels "
    "and got max accuracy",
    "For the next three models i have given 7 layers of Convolution with again various kernels "
    "and got max accuracy",
    "Now for the 10th model i used Batch normalization , but didn't improved much",
    "For 11th model i've used batch normalization along with sigmoid activations units in every "
    "hidden layers and than other models",
    "And for the final model i've given 4 layers of Convolutions with Sigmoid activations and "
    "along with that i also 0.989",
)
SEED_PREFIX = "seed/model-"
# The notebook's recipe (its `batch_size = 128`, `epochs = 12`, the full MNIST training set):
# only a study trained the same way can reproduce its figures.
NOTEBOOK_RECIPE = {"epochs": 12, "batch_size": 128, "train_limit": None}
SMALL_EFFECT = 0.002  # "didn't improve much": a gain under 0.2 points, two binomial SEs at 99 %


def is_seed_study(evidence: Evidence) -> bool:
    return any(m.name.startswith(SEED_PREFIX) for m in evidence.models)


def recipe_differences(evidence: Evidence) -> list[str]:
    """How the study's training differs from the notebook's ("1 epoch instead of 12", ...)."""
    training = evidence.training
    found = [
        f"{key.replace('_', ' ')} {_setting(training.get(key))} instead of {_setting(value)}"
        for key, value in NOTEBOOK_RECIPE.items()
        if key in training and training[key] != value
    ]
    if evidence.dataset and evidence.dataset != "mnist":
        found.append(f"dataset {evidence.dataset} instead of mnist")
    return found


def _setting(value: Any) -> str:
    return "all images" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def notebook_points(evidence: Evidence, best: stats.BestSet) -> tuple[NotebookPoint, ...]:
    """Our results against each of the notebook's conclusions; empty for other studies.

    Under another recipe than the notebook's (fewer epochs, fewer images) the comparisons are
    still computed and shown, but no verdict is given: they test a different experiment.
    """
    if not is_seed_study(evidence):
        return ()
    models = {m.name: m for m in evidence.models if m.runs}
    n = evidence.n_images
    verdicts = [
        group_point(models, (1, 2, 3), 3, n),
        group_point(models, (4, 5, 6), 5, n),
        group_point(models, (7, 8, 9), 7, n),
        batch_norm_point(models),
        sigmoid_point(models, best),
        reproduction_point(models, 12, n),
    ]
    differences = recipe_differences(evidence)
    if differences:
        why = f" (No verdict: this study differs from the notebook: {'; '.join(differences)}.)"
        verdicts = [("cannot tell", text + why) for _, text in verdicts]
    return tuple(
        NotebookPoint(i + 1, f"{quote} …", verdict, text)
        for i, (quote, (verdict, text)) in enumerate(
            zip(NOTEBOOK_CONCLUSIONS, verdicts, strict=True)
        )
    )


def _seed(models: dict[str, ModelEvidence], number: int) -> ModelEvidence | None:
    return models.get(f"{SEED_PREFIX}{number}")


def _missing(numbers: Sequence[int]) -> tuple[Verdict, str]:
    names = ", ".join(f"{SEED_PREFIX}{k}" for k in numbers)
    return "not in this study", f"Needs finished runs of {names}."


def group_point(
    models: dict[str, ModelEvidence], numbers: Sequence[int], depth: int, n_images: int | None
) -> tuple[Verdict, str]:
    """Three kernel sizes at one depth: is the notebook's best of them among our best of them,
    and does its figure lie in our interval of that model?"""
    group = [_seed(models, k) for k in numbers]
    if any(m is None for m in group):
        return _missing(numbers)
    ours = best_set(group, ALPHA)  # type: ignore[arg-type]
    worse = [c.model for c in ours.comparisons if c.worse]
    ranking = f"Our best of {', '.join(m.name for m in group)} ({depth} conv layers in the "  # type: ignore[union-attr]
    ranking += f"notebook's titles) is {ours.best} at {pct(models[ours.best].mean)}; " + (
        f"significantly worse ({ours.method}): {', '.join(worse)}."
        if worse
        else "the others are not significantly worse: kernel size made no clear difference."
    )
    reported = {m.name: m.reported_accuracy for m in group if m and m.reported_accuracy}
    if not reported:
        return "cannot tell", f"{ranking} The notebook's figures are unknown."
    theirs = max(reported, key=reported.__getitem__)
    inside, repro = _reproduced(models[theirs], reported[theirs], n_images)
    if any(c.model == theirs for c in ours.untested):
        text = f"{ranking} The notebook's best, {theirs}, could not be tested against ours. {repro}"
        return "cannot tell", text
    same_best = theirs in ours.not_worse
    verdict: Verdict = (
        "agrees" if same_best and inside else "partly" if same_best or inside else "differs"
    )
    picked = "is" if same_best else "is not"
    text = f"{ranking} The notebook's best, {theirs}, {picked} among our best of the group. {repro}"
    return verdict, text


def one_run_interval(m: ModelEvidence, n_images: int | None) -> tuple[float, float, str] | None:
    """A 95 % interval for where one more run of the model lands on this test set, to hold the
    notebook's single run against: the prediction interval over our seeds. With one run, or
    seeds that all agree (no spread to predict from), the Wilson interval of one run on the
    test set instead. None when neither can be had."""
    if m.runs >= 2 and np.ptp(m.accuracies) > 0:
        pi = stats.prediction_interval(m.accuracies)
        low, high = max(pi.low, 0.0), min(pi.high, 1.0)  # type: ignore[type-var]
        return low, high, f"prediction interval of one run from {m.runs} seeds"
    if not n_images:
        return None
    correct = min(max(round(m.mean * n_images), 0), n_images)
    wilson = stats.accuracy_interval(correct, n_images)
    return wilson.low, wilson.high, f"Wilson interval of one run on {n_images:,} images"


def _reproduced(m: ModelEvidence, figure: float, n_images: int | None) -> tuple[bool, str]:
    """Whether the notebook's one figure lies where one run of ours would, and the sentence."""
    interval = one_run_interval(m, n_images)
    head = f"The notebook's {pct(figure)} for {m.name}"
    if interval is None:
        return False, f"{head} cannot be checked: we have no interval."
    low, high, how = interval
    inside = low <= figure <= high
    where = "inside" if inside else "outside"
    return inside, f"{head} lies {where} our 95 % interval [{pct(low)}, {pct(high)}] ({how})."


def batch_norm_point(models: dict[str, ModelEvidence]) -> tuple[Verdict, str]:
    """Model-10 is Model-9 with batch normalization (and one pooling and two dropout layers
    fewer): did it improve accuracy, and by how much?"""
    with_bn, without = _seed(models, 10), _seed(models, 9)
    if with_bn is None or without is None:
        return _missing((9, 10))
    result = compare_pair(with_bn, without)
    head = (
        f"{with_bn.name} (batch normalization; also one pooling and two dropout layers fewer) "
        f"minus {without.name}: {points(result.diff)}"
    )
    if result.p_value is None:
        return "cannot tell", f"{head}; no test applies ({result.note})."
    tested = f"{head}, {p_text(result.p_value)} ({result.method})"
    if result.p_value >= ALPHA and result.diff < SMALL_EFFECT:
        return "agrees", f"{tested}: no significant improvement from batch normalization."
    if result.p_value >= ALPHA:
        return "cannot tell", (
            f"{tested}: a gain over {points(SMALL_EFFECT)} that this data cannot tell from "
            "noise; more seeds would."
        )
    if result.diff <= 0:
        return "partly", f"{tested}: no improvement indeed, but it is significantly worse."
    if result.diff < SMALL_EFFECT:
        return "agrees", f"{tested}: a significant but small gain (under {points(SMALL_EFFECT)})."
    return "differs", f"{tested}: batch normalization improved accuracy significantly."


def sigmoid_point(models: dict[str, ModelEvidence], best: stats.BestSet) -> tuple[Verdict, str]:
    """Model-11 is Model-10 with sigmoid instead of ReLU: is it worse than Model-10 (the one
    change) and than the best model (the notebook's "than other models")?"""
    m, relu = _seed(models, 11), _seed(models, 10)
    if m is None or relu is None:
        return _missing((10, 11))
    result = compare_pair(m, relu)
    pair = f"{m.name} (sigmoid) minus {relu.name} (ReLU): {points(result.diff)}, " + (
        f"{p_text(result.p_value)} ({result.method})"
        if result.p_value is not None
        else f"no test applies ({result.note})"
    )
    worse_than_relu = result.p_value is not None and result.p_value < ALPHA and result.diff < 0
    if m.name == best.best:
        return "differs", f"{pair}; {m.name} is the best model of this study."
    comparison = next(c for c in best.comparisons if c.model == m.name)
    against_best = (
        f"against the best {best.best}: {points(comparison.diff_to_best)}, "
        f"{p_text(comparison.p_holm)} (Holm)"
    )
    if not comparison.tested:
        against_best = f"against the best {best.best}: not tested ({comparison.note})"
    if worse_than_relu and comparison.worse:
        return "agrees", f"{pair}; {against_best}: sigmoid units cost accuracy here."
    if not comparison.tested or result.p_value is None:
        return "cannot tell", f"{pair}; {against_best}."
    if worse_than_relu or comparison.worse:
        return "partly", f"{pair}; {against_best}."
    return "differs", f"{pair}; {against_best}: not shown worse."


def reproduction_point(
    models: dict[str, ModelEvidence], number: int, n_images: int | None
) -> tuple[Verdict, str]:
    m = _seed(models, number)
    if m is None:
        return _missing((number,))
    if m.reported_accuracy is None:
        return "cannot tell", f"{m.name} reaches {pct(m.mean)}; the notebook's figure is unknown."
    inside, repro = _reproduced(m, m.reported_accuracy, n_images)
    return ("agrees" if inside else "differs"), f"{m.name} reaches {pct(m.mean)}. {repro}"


def to_markdown(conclusions: Conclusions) -> str:
    """The conclusions as Markdown (written beside the report's other exports)."""
    esc = markdown.escape  # the texts carry model names, which may hold markup
    lines = ["## Conclusions", ""] + [f"- {esc(f.text)}" for f in conclusions.findings]
    if conclusions.caveats:
        lines += ["", "### Caveats", ""] + [f"- {esc(c)}" for c in conclusions.caveats]
    if conclusions.notebook:
        lines += ["", "### Against the notebook's conclusions", ""]
        lines += [
            f"{p.number}. > {esc(p.quote)}\n\n   **{p.verdict}**: {esc(p.text)}"
            for p in conclusions.notebook
        ]
    return "\n".join(lines) + "\n"
