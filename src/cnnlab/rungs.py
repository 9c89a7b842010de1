"""Successive halving's rungs: which models go on at each rung, from their epoch figures (pure).

`decide_rung(values, number=..., epoch=..., settings=...)` takes each model's validation figure
at the rung's epoch, one per seed that reached it, and returns the models kept and pruned.
`replay(runs, models, settings, epochs)` decides every rung a study's stored runs allow, in
order: the driver (`cnnlab.halving`) and the readers (`cnnlab status`, the report) go through
the same `decide_rung`, so a stopped study resumes to the same decisions.

Successive halving (Jamieson & Talwalkar 2016), as Hyperband's brackets and ASHA run it (Li et
al. 2018, 2020): rungs at r, r*eta, r*eta^2, ... epochs below the last (r = min_epochs, by
default epochs // eta; eta = factor); at each rung the models still in are ranked and the top
max(1, floor(n / eta)) go on, with any model tied with the last of them. cnnlab ranks models,
not runs: a study compares architectures over seeds, so a model's figure at a rung is the mean
over its seeds that reached it, and its seeds go on or stop together. A model none of whose
seeds reached the rung (each failed or diverged before it) is out already: neither kept nor
pruned. No model is protected (a study names no reference model); a rung never prunes the last
one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.grid import did_you_mean
from cnnlab.spec.vocabulary import PRUNE_METRICS
from cnnlab.store.interface import FINAL_STATUSES, RunRecord

DEFAULT_FACTOR = 3  # Hyperband's and ASHA's eta: a third goes on at each rung
# The first rung when none is given: epochs // factor (at least 1), one rung a factor before the
# end. Rung 1 (Hyperband's r for searches over many configurations) lost the best of the seed
# preset's 13 models and its twin in up to 32 % of simulated studies, whose learning curves
# cross (docs/sequential.md); a third of the way in, at most 0.5 %, like a fixed study.
DEFAULT_MIN_EPOCHS = None
DEFAULT_METRIC = "val_accuracy"
SETTINGS_KEY = "prune"  # where the study's stored settings keep halving's
METRIC_WORDS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


@dataclass(frozen=True)
class HalvingSettings:
    """How `--prune halving` prunes: the reduction factor, the first rung, the figure ranked."""

    factor: int = DEFAULT_FACTOR
    min_epochs: int | None = DEFAULT_MIN_EPOCHS  # None: epochs // factor, at least 1
    metric: str = DEFAULT_METRIC  # a History key: val_accuracy (higher is better) or val_loss

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 2:
            raise SpecError(
                "--prune-factor must be a whole number >= 2 (the top 1/factor of the models "
                f"go on at each rung), got {self.factor!r}"
            )
        if self.min_epochs is None:
            pass
        elif isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int):
            raise SpecError(f"--prune-min-epochs must be a whole number, got {self.min_epochs!r}")
        elif self.min_epochs < 1:
            raise SpecError(f"--prune-min-epochs must be at least 1, got {self.min_epochs}")
        if self.metric not in PRUNE_METRICS:
            raise SpecError(
                f"--prune-metric must be one of {', '.join(PRUNE_METRICS)}, got {self.metric!r}"
                + did_you_mean(self.metric, PRUNE_METRICS)
            )

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "val_loss"

    def first_rung(self, epochs: int) -> int:
        """min_epochs, or when not given epochs // factor (at least 1)."""
        return self.min_epochs if self.min_epochs is not None else max(1, epochs // self.factor)

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The rungs' epochs below the last of `epochs`: the first rung, x factor, ...; a
        SpecError when not even one fits."""
        if epochs < 2:
            raise SpecError(
                f"--prune halving needs at least 2 epochs (a rung before the last), got {epochs}"
            )
        if self.first_rung(epochs) >= epochs:
            raise SpecError(
                f"--prune-min-epochs {self.min_epochs} leaves no rung before the last of "
                f"{epochs} epochs; use at most {epochs - 1}, or more epochs"
            )
        found, epoch = [], self.first_rung(epochs)
        while epoch < epochs:
            found.append(epoch)
            epoch *= self.factor
        return tuple(found)

    def describe(self, epochs: int) -> str:
        """'factor 3, by validation accuracy, rungs at epochs 1, 3 of 9'."""
        rungs = ", ".join(str(e) for e in self.rungs(epochs))
        word = "rung at epoch" if len(self.rungs(epochs)) == 1 else "rungs at epochs"
        return f"factor {self.factor}, by {METRIC_WORDS[self.metric]}, {word} {rungs} of {epochs}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "halving",
            "factor": self.factor,
            "min_epochs": self.min_epochs,
            "metric": self.metric,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HalvingSettings:
        least = values.get("min_epochs")
        return cls(
            int(values["factor"]), None if least is None else int(least), str(values["metric"])
        )


@dataclass(frozen=True)
class RankedModel:
    """A model at a rung: its mean figure over the seeds that reached it, and its place."""

    model: str
    value: float
    seeds: int
    rank: int  # 1: the best


@dataclass(frozen=True)
class Rung:
    """One rung's decision: the models ranked, kept and pruned (in rank order)."""

    number: int  # 1, 2, ...
    epoch: int
    factor: int
    metric: str
    ranked: tuple[RankedModel, ...]  # best first
    kept: tuple[str, ...]
    pruned: tuple[str, ...]
    out: tuple[str, ...] = ()  # no seed reached the rung: every one failed or diverged

    def place(self, model: str) -> RankedModel:
        return next(m for m in self.ranked if m.model == model)

    def reason(self, model: str) -> str:
        """Why `model` was pruned here, as the store records it with each of its runs."""
        found = self.place(model)
        seeds = "1 seed" if found.seeds == 1 else f"{found.seeds} seeds"
        return (
            f"ranked {found.rank} of {len(self.ranked)} models at rung {self.number} (epoch "
            f"{self.epoch}) by mean {METRIC_WORDS[self.metric]} ({found.value:.4f} over "
            f"{seeds}); the top {len(self.kept)} went on (successive halving, factor "
            f"{self.factor})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rung": self.number,
            "epoch": self.epoch,
            "metric": self.metric,
            "ranked": [
                {"model": m.model, "value": m.value, "seeds": m.seeds, "rank": m.rank}
                for m in self.ranked
            ],
            "kept": list(self.kept),
            "pruned": list(self.pruned),
            "out": list(self.out),
        }


def decide_rung(
    values: Mapping[str, Sequence[float | None]],
    *,
    number: int,
    epoch: int,
    settings: HalvingSettings,
) -> Rung:
    """Rank the models by their mean figure over the seeds that reached the rung (None or a
    non-finite figure: a seed that did not) and keep the top max(1, floor(n / factor)), and
    every model tied with the last of those (equal figures are no ranking: pruning one of two
    models at 100 % validation accuracy would be a coin toss). The ranking lists ties in the
    models' given order (the study's), so the decision is a function of the figures alone.
    """
    means = {}
    for model, figures in values.items():
        finite = [float(v) for v in figures if v is not None and math.isfinite(v)]
        if finite:
            means[model] = (sum(finite) / len(finite), len(finite))
    sign = -1.0 if settings.higher_is_better else 1.0
    order = sorted(means, key=lambda m: sign * means[m][0])  # stable: ties in given order
    ranked = tuple(
        RankedModel(m, means[m][0], means[m][1], rank) for rank, m in enumerate(order, start=1)
    )
    keep = max(1, len(order) // settings.factor) if order else 0
    while 0 < keep < len(order) and means[order[keep]][0] == means[order[keep - 1]][0]:
        keep += 1  # a model tied with the last one kept is not ranked below it: it goes on
    return Rung(
        number=number,
        epoch=epoch,
        factor=settings.factor,
        metric=settings.metric,
        ranked=ranked,
        kept=tuple(order[:keep]),
        pruned=tuple(order[keep:]),
        out=tuple(m for m in values if m not in means),
    )


def reached(run: RunRecord, epoch: int | None) -> bool:
    """Whether nothing is left to train in the run up to `epoch` (None: its last epoch): it
    ended, or holds that many epochs."""
    return run.status in FINAL_STATUSES or (epoch is not None and len(run.epochs) >= epoch)


def value_at(run: RunRecord, epoch: int, metric: str) -> float | None:
    """The run's figure at the rung's epoch; a run EarlyStopping finished sooner keeps its
    last one (it will not change); None for a run that ended sooner otherwise."""
    held = [e for e in run.epochs if e.epoch <= epoch]
    if not held or (held[-1].epoch < epoch and run.status != "done"):
        return None
    return getattr(held[-1], metric)


def rung_values(
    runs: Sequence[RunRecord], models: Sequence[str], epoch: int, metric: str
) -> dict[str, list[float | None]]:
    """Each model's figure at `epoch`, one per run (in seed order)."""
    ordered = sorted(runs, key=lambda run: run.seed)
    return {m: [value_at(run, epoch, metric) for run in ordered if run.model == m] for m in models}


def next_rung(
    runs: Sequence[RunRecord],
    alive: Sequence[str],
    number: int,
    epoch: int,
    settings: HalvingSettings,
) -> Rung | None:
    """Rung `number`'s decision once every run of the models still in reached its epoch."""
    group = [run for run in runs if run.model in alive]
    if not group or not all(reached(run, epoch) for run in group):
        return None
    values = rung_values(group, alive, epoch, settings.metric)
    return decide_rung(values, number=number, epoch=epoch, settings=settings)


def replay(
    runs: Sequence[RunRecord], models: Sequence[str], settings: HalvingSettings, epochs: int
) -> tuple[Rung, ...]:
    """Every rung the stored runs decide, in order; it stops at the first rung some run has
    not reached, and once one model is left (no rung can prune it)."""
    alive, found = list(models), []
    for number, epoch in enumerate(settings.rungs(epochs), start=1):
        if len(alive) <= 1:
            break
        rung = next_rung(runs, alive, number, epoch, settings)
        if rung is None:
            break
        found.append(rung)
        alive = list(rung.kept)
    return tuple(found)


@dataclass(frozen=True)
class Halving:
    """A study's halving as its store tells it: the settings, the epochs, the rungs decided."""

    settings: HalvingSettings
    epochs: int
    models: tuple[str, ...]
    rungs: tuple[Rung, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "epochs": self.epochs,
            "models": list(self.models),
            "rungs": [rung.to_dict() for rung in self.rungs],
        }


def expected_epochs(halving: Halving, run: RunRecord) -> float:
    """The epochs a run still in can expect to train in all, for a time estimate: to its
    model's next rung surely, and each later stretch with the chance 1 / factor of passing
    each rung on the way (a model whose rung is not decided yet has not passed it)."""
    passed = sum(run.model in rung.kept for rung in halving.rungs)
    ahead = halving.settings.rungs(halving.epochs)[passed:]
    total, chance, at = float(len(run.epochs)), 1.0, len(run.epochs)
    for stop in (*ahead, halving.epochs):
        total += max(stop - at, 0) * chance
        at = max(at, stop)
        chance /= halving.settings.factor
    return total


def halving_of(settings: Mapping[str, Any], runs: Sequence[RunRecord]) -> Halving | None:
    """The halving of a study run with `--prune halving`, from its stored settings and runs;
    None for a study that prunes nothing."""
    stored = settings.get(SETTINGS_KEY)
    if not stored or not runs:
        return None
    models = list(stored.get("models") or dict.fromkeys(run.model for run in runs))
    latest = set(settings.get("keys") or (run.key for run in runs))  # the latest expansion's
    chosen = [run for run in runs if run.model in models and run.key in latest]
    if not chosen:
        return None
    halving = HalvingSettings.from_dict(stored)
    epochs = int(chosen[0].training.get("epochs", 0))
    if epochs < 2 or halving.first_rung(epochs) >= epochs:
        return Halving(halving, epochs, tuple(models), ())
    return Halving(halving, epochs, tuple(models), replay(chosen, models, halving, epochs))
