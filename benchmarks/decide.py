"""Runs spent and error rates of fixed 5 seeds against `--until-decided`, by simulation from
real stored multi-seed results.

    .venv/bin/python benchmarks/decide.py STUDY_DIR [STUDY_DIR ...] [--reps 400]
        [--spreads 0.5 1 2] [--max-seeds 10] [--margin 0.1] [--seed 0]

Each STUDY_DIR is a study trained with several seeds (e.g. `cnnlab run seed --seeds 5`). Every
model with 2+ finished seeds gives a true mean accuracy (its seeds' mean) and a true
seed-to-seed spread (their std, at least the test set's binomial SE). The best model is given
a twin with the same mean and spread, so every simulated study holds one truly equal pair.
Each spread factor scales every spread (several spreads from one study). For each simulated
study, seed accuracies are drawn as normal(mean, spread) and both procedures see the same
draws:

- fixed 5: every model 5 seeds, Welch against the best with Holm (`stats.compare_to_best`,
  what the report's conclusions use for a fixed study);
- until decided: `cnnlab.sequential.decide` with 2..max seeds.

Printed per study and spread: runs (mean), the runs until-decided saves against fixed 5 (the
ratio to the baseline measured on the same draws), how often the declared best set misses the
true best, how often the truly equal twin (or the best) is called worse, the mean size of the
best set, and the CPU. Pure simulation: no training, seconds on any CPU.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import sequential, stats
from cnnlab.study import study_runs

FIXED_SEEDS = 5
TWIN = "(twin of the best)"


@dataclass(frozen=True)
class Truth:
    """A simulated study's true model means and spreads, from a real study's seeds."""

    name: str
    models: tuple[str, ...]
    means: np.ndarray
    spreads: np.ndarray
    n_images: int

    @property
    def best(self) -> str:
        return self.models[int(np.argmax(self.means))]


def truth_from_study(directory: Path) -> Truth:
    """Each model's mean and std over its finished seeds; the best model gets a twin."""
    runs = [run for run in study_runs(directory) if run.status == "done" and run.test]
    by_model: dict[str, list[float]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run.test.accuracy)  # type: ignore[union-attr]
    kept = {m: v for m, v in by_model.items() if len(v) >= 2}
    if len(kept) < 2:
        raise SystemExit(f"{directory}: needs 2+ models with 2+ finished seeds each")
    n_images = 10_000  # MNIST's test set; the SE floor below only guards zero spreads
    means = np.array([np.mean(v) for v in kept.values()])
    floor = np.sqrt(np.clip(means * (1 - means), 1e-6, None) / n_images)
    spreads = np.maximum(np.array([np.std(v, ddof=1) for v in kept.values()]), floor)
    best = int(np.argmax(means))
    models = (*kept, TWIN)
    return Truth(
        directory.name,
        models,
        np.append(means, means[best]),
        np.append(spreads, spreads[best]),
        n_images,
    )


@dataclass
class Tally:
    runs: float = 0.0
    missed_best: int = 0
    equal_called_worse: int = 0
    best_set_size: float = 0.0
    reps: int = 0

    def add(self, runs: int, best_set: Sequence[str], worse: Sequence[str], truth: Truth) -> None:
        self.reps += 1
        self.runs += runs
        self.missed_best += truth.best not in best_set
        self.equal_called_worse += bool({truth.best, TWIN} & set(worse))
        self.best_set_size += len(best_set)


def fixed_five(draws: np.ndarray, truth: Truth) -> tuple[int, list[str], list[str]]:
    accuracies = {m: draws[i, :FIXED_SEEDS] for i, m in enumerate(truth.models)}
    found = stats.compare_to_best(accuracies)
    worse = [c.model for c in found.comparisons if c.worse]
    return FIXED_SEEDS * len(truth.models), list(found.not_worse), worse


def until_decided(
    draws: np.ndarray, truth: Truth, settings: sequential.SequentialSettings
) -> tuple[int, list[str], list[str]]:
    results = {m: list(draws[i]) for i, m in enumerate(truth.models)}
    decisions = sequential.decide(results, settings)
    worse = [d.model for d in decisions.models if d.state == "worse"]
    kept = [m for m in truth.models if m not in worse]
    return decisions.runs_spent, kept, worse


def simulate(
    truth: Truth, spread: float, reps: int, settings: sequential.SequentialSettings, seed: int
) -> dict[str, Tally]:
    rng = np.random.default_rng(seed)
    tallies = {"fixed 5": Tally(), "until decided": Tally()}
    seeds = max(settings.max_seeds, FIXED_SEEDS)
    for _ in range(reps):
        draws = rng.normal(
            truth.means[:, None], spread * truth.spreads[:, None], (len(truth.models), seeds)
        )
        tallies["fixed 5"].add(*fixed_five(draws, truth), truth)
        tallies["until decided"].add(*until_decided(draws, truth, settings), truth)
    return tallies


def rate(count: int, reps: int) -> str:
    se = np.sqrt(max(count, 1) * (reps - count) / reps) / reps
    return f"{100 * count / reps:5.1f} % ± {100 * se:.1f}"


def print_table(rows: list[tuple[str, float, dict[str, Tally]]]) -> None:
    head = f"{'study':<12} {'spread':>6} {'procedure':<14} {'runs':>6} {'vs fixed 5':>10}"
    head += f" {'best missed':>14} {'equal->worse':>14} {'best set':>8}"
    print(head)
    for name, spread, tallies in rows:
        base = tallies["fixed 5"].runs
        for label, t in tallies.items():
            saved = f"{100 * (1 - t.runs / base):+.0f} %" if label != "fixed 5" else "baseline"
            print(
                f"{name:<12} {spread:>5g}x {label:<14} {t.runs / t.reps:6.1f} {saved:>10}"
                f" {rate(t.missed_best, t.reps):>14} {rate(t.equal_called_worse, t.reps):>14}"
                f" {t.best_set_size / t.reps:8.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", type=Path)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--min-seeds", type=int, default=sequential.DEFAULT_MIN_SEEDS)
    parser.add_argument("--max-seeds", type=int, default=sequential.DEFAULT_MAX_SEEDS)
    parser.add_argument("--margin", type=float, default=100 * sequential.DEFAULT_MARGIN)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = sequential.SequentialSettings(
        min_seeds=args.min_seeds, max_seeds=args.max_seeds, margin=args.margin / 100
    )
    print(f"cpu: {platform.processor() or platform.machine()} ({cpu_name()})")
    print(
        f"{args.reps} simulated studies per row; until decided: {settings.min_seeds}.."
        f"{settings.max_seeds} seeds, margin {args.margin:g} points, alpha {settings.alpha:g}"
    )
    rows = []
    for directory in args.studies:
        truth = truth_from_study(directory)
        print(
            f"{truth.name}: {len(truth.models)} models (with the twin), true best {truth.best} "
            f"at {100 * truth.means.max():.2f} %, spreads {100 * truth.spreads.min():.2f}.."
            f"{100 * truth.spreads.max():.2f} points"
        )
        for spread in args.spreads:
            rows.append(
                (truth.name, spread, simulate(truth, spread, args.reps, settings, args.seed))
            )
    print_table(rows)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
