"""Runs and epochs spent and error rates of fixed 5 seeds, `--until-decided` and `--prune
halving`, by simulation from real stored multi-seed results.

    .venv/bin/python benchmarks/decide.py STUDY_DIR [STUDY_DIR ...] [--reps 400]
        [--spreads 0.5 1 2] [--max-seeds 10] [--margin 0.1] [--seed 0]
        [--epochs 9] [--prune-factor 3] [--prune-min-epochs N]

Each STUDY_DIR is a study trained with several seeds (e.g. `cnnlab run seed --seeds 5`). Every
model with 2+ finished seeds gives a true mean accuracy (its seeds' mean) and a true
seed-to-seed spread (their std, at least the test set's binomial SE). The best model is given
a twin with the same mean and spread, so every simulated study holds one truly equal pair.
Each spread factor scales every spread (several spreads from one study). For each simulated
study, seed accuracies are drawn as normal(mean, spread) and both procedures see the same
draws:

- fixed 5: every model 5 seeds, Welch against the best with Holm (`stats.compare_to_best`,
  what the report's conclusions use for a fixed study);
- until decided: `cnnlab.sequential.decide` with 2..max seeds;
- halving: every model 5 seeds, `cnnlab.rungs.decide_rung` at each rung of `--epochs` (rungs
  at min_epochs x factor^k; by default one rung at epochs // factor), the models left
  compared as fixed 5 does; a pruned model is out of the best set.

Halving ranks a validation figure at an early epoch, so each simulated run also needs a
learning curve. The curves come from the source study's stored epoch histories: a model's
validation accuracy rises by c (1/t - 1/E) to its final value (a 1/t approach, c from the
mean rise between its first and last stored epoch), and a run's figure at a rung scatters
around its own curve by tau (the std over seeds of first-epoch validation accuracy minus
final test accuracy: how well an early figure predicts a run's own end). A slow starter is a
model with a large c. A study without 2+ epochs of validation gives flat curves (c = 0) and
tau = the seed spread; the header says which. Rung noise is drawn afresh at each rung, and
the validation-against-test offset of a small validation set is left out.

Printed per study and spread: runs and epochs (means), the epochs each procedure saves
against fixed 5 (measured on the same draws), how often the declared best set misses the true
best, how often it holds neither the best nor its equal twin, how often the twin or the best
is dropped (called worse by a test, or pruned), the mean size of the best set, and the CPU; then
the mean seeds `--until-decided` gave each model (where its runs go).
Pure simulation: no training, seconds on any CPU.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab import rungs, sequential, stats
from cnnlab.store import RunRecord
from cnnlab.study import study_runs

FIXED_SEEDS = 5
TWIN = "(twin of the best)"
DEFAULT_EPOCHS = 9  # with factor 3 from epoch 1: rungs at epochs 1 and 3


@dataclass(frozen=True)
class Truth:
    """A simulated study's true model means and spreads, from a real study's seeds."""

    name: str
    models: tuple[str, ...]
    means: np.ndarray
    spreads: np.ndarray
    n_images: int
    rise: np.ndarray  # c: validation accuracy at epoch t of E is final - c (1/t - 1/E)
    scatter: np.ndarray  # tau: a run's figure at a rung around its own curve
    curves: str  # where the curves come from, in words

    @property
    def best(self) -> str:
        return self.models[int(np.argmax(self.means))]


def truth_from_study(directory: Path) -> Truth:
    """Each model's mean and std over its finished seeds and its learning curve; the best
    model gets a twin."""
    runs = [run for run in study_runs(directory) if run.status == "done" and run.test]
    by_model: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    kept = {m: v for m, v in by_model.items() if len(v) >= 2}
    if len(kept) < 2:
        raise SystemExit(f"{directory}: needs 2+ models with 2+ finished seeds each")
    n_images = 10_000  # MNIST's test set; the SE floor below only guards zero spreads
    finals = [[run.test.accuracy for run in v] for v in kept.values()]  # type: ignore[union-attr]
    means = np.array([np.mean(v) for v in finals])
    floor = np.sqrt(np.clip(means * (1 - means), 1e-6, None) / n_images)
    spreads = np.maximum(np.array([np.std(v, ddof=1) for v in finals]), floor)
    curves = [learning_curve(v) for v in kept.values()]
    if any(curve is None for curve in curves):
        rise, scatter = np.zeros(len(kept)), spreads.copy()
        source = "flat (no 2+ epochs of validation accuracy stored)"
    else:
        rise = np.array([c[0] for c in curves])  # type: ignore[index]
        scatter = np.maximum(np.array([c[1] for c in curves]), floor)  # type: ignore[index]
        epochs = len(next(iter(kept.values()))[0].epochs)
        source = f"from the stored validation accuracy of {epochs} epochs"
    best = int(np.argmax(means))
    return Truth(
        directory.name,
        (*kept, TWIN),
        np.append(means, means[best]),
        np.append(spreads, spreads[best]),
        n_images,
        np.append(rise, rise[best]),
        np.append(scatter, scatter[best]),
        source,
    )


def learning_curve(runs: list[RunRecord]) -> tuple[float, float] | None:
    """A model's (c, tau) from its runs' epochs (see the module's docstring); None without
    validation accuracy at 2+ epochs."""
    first, last, off = [], [], []
    for run in runs:
        figures = [e.val_accuracy for e in run.epochs]
        if len(figures) < 2 or None in figures or run.test is None:
            return None
        first.append(figures[0])
        last.append(figures[-1])
        off.append(figures[0] - run.test.accuracy)
    epochs = len(runs[0].epochs)
    rise = max(float(np.mean(np.subtract(last, first))) / (1 - 1 / epochs), 0.0)
    return rise, float(np.std(off, ddof=1))


@dataclass
class Tally:
    runs: float = 0.0
    epochs: float = 0.0
    missed_best: int = 0  # the best model is not in the declared best set
    no_best_kept: int = 0  # neither the best nor its equal twin is
    equal_dropped: int = 0  # the best or its twin was called worse or pruned
    best_set_size: float = 0.0
    reps: int = 0
    seeds: dict[str, float] = field(default_factory=dict)  # summed seeds per model

    def add(self, spent: Spent, truth: Truth) -> None:
        self.reps += 1
        self.runs += spent.runs
        self.epochs += spent.epochs
        self.missed_best += truth.best not in spent.best_set
        self.no_best_kept += not {truth.best, TWIN} & set(spent.best_set)
        self.equal_dropped += bool({truth.best, TWIN} & set(spent.dropped))
        self.best_set_size += len(spent.best_set)
        for model, count in spent.seeds.items():
            self.seeds[model] = self.seeds.get(model, 0.0) + count


@dataclass(frozen=True)
class Spent:
    """What one procedure spent on one simulated study, and what it declared."""

    runs: int
    epochs: int
    best_set: list[str]
    dropped: list[str]  # called worse, or pruned
    seeds: dict[str, int] = field(default_factory=dict)  # seeds per model, where they vary


def fixed_five(draws: np.ndarray, truth: Truth, epochs: int) -> Spent:
    accuracies = {m: draws[i, :FIXED_SEEDS] for i, m in enumerate(truth.models)}
    found = stats.compare_to_best(accuracies)
    worse = [c.model for c in found.comparisons if c.worse]
    runs = FIXED_SEEDS * len(truth.models)
    return Spent(runs, runs * epochs, list(found.not_worse), worse)


def until_decided(
    draws: np.ndarray, truth: Truth, settings: sequential.SequentialSettings, epochs: int
) -> Spent:
    results = {m: list(draws[i]) for i, m in enumerate(truth.models)}
    decisions = sequential.decide(results, settings)
    worse = [d.model for d in decisions.models if d.state == "worse"]
    kept = [m for m in truth.models if m not in worse]
    seeds = {d.model: d.seeds for d in decisions.models}
    return Spent(decisions.runs_spent, decisions.runs_spent * epochs, kept, worse, seeds)


def halving(
    draws: np.ndarray,
    noise: np.ndarray,
    truth: Truth,
    settings: rungs.HalvingSettings,
    epochs: int,
) -> Spent:
    """5 seeds a model, pruned at the rungs by `rungs.decide_rung` on the simulated
    validation figures; the models left compared as fixed 5 does. noise: (models, seeds,
    rungs) standard normals, scaled by each model's tau."""
    finals = draws[:, :FIXED_SEEDS]
    index = {m: i for i, m in enumerate(truth.models)}
    alive, stopped = list(truth.models), {}
    for number, epoch in enumerate(settings.rungs(epochs), start=1):
        if len(alive) <= 1:
            break
        shortfall = truth.rise * (1 / epoch - 1 / epochs)
        values = {
            m: list(finals[index[m]] - shortfall[index[m]] + noise[index[m], :, number - 1])
            for m in alive
        }
        rung = rungs.decide_rung(values, number=number, epoch=epoch, settings=settings)
        stopped |= dict.fromkeys(rung.pruned, epoch)
        alive = list(rung.kept)
    spent = FIXED_SEEDS * sum(stopped.get(m, epochs) for m in truth.models)
    runs = FIXED_SEEDS * len(truth.models)
    if len(alive) == 1:
        return Spent(runs, spent, alive, list(stopped))
    found = stats.compare_to_best({m: finals[index[m]] for m in alive})
    worse = [c.model for c in found.comparisons if c.worse]
    return Spent(runs, spent, list(found.not_worse), worse + list(stopped))


def simulate(
    truth: Truth,
    spread: float,
    reps: int,
    settings: sequential.SequentialSettings,
    pruning: rungs.HalvingSettings,
    epochs: int,
    seed: int,
) -> dict[str, Tally]:
    rng = np.random.default_rng(seed)
    rung_rng = np.random.default_rng([seed, 1])  # its own: the seed draws stay as they were
    tallies = {"fixed 5": Tally(), "until decided": Tally(), "halving": Tally()}
    seeds = max(settings.max_seeds, FIXED_SEEDS)
    models, rung_count = len(truth.models), len(pruning.rungs(epochs))
    for _ in range(reps):
        draws = rng.normal(truth.means[:, None], spread * truth.spreads[:, None], (models, seeds))
        tallies["fixed 5"].add(fixed_five(draws, truth, epochs), truth)
        tallies["until decided"].add(until_decided(draws, truth, settings, epochs), truth)
        noise = rung_rng.normal(0.0, 1.0, (models, FIXED_SEEDS, rung_count))
        noise *= spread * truth.scatter[:, None, None]
        tallies["halving"].add(halving(draws, noise, truth, pruning, epochs), truth)
    return tallies


def rate(count: int, reps: int) -> str:
    se = np.sqrt(max(count, 1) * (reps - count) / reps) / reps
    return f"{100 * count / reps:5.1f} % ± {100 * se:.1f}"


def print_table(rows: list[tuple[str, float, dict[str, Tally]]]) -> None:
    head = f"{'study':<12} {'spread':>6} {'procedure':<14} {'runs':>6} {'epochs':>7}"
    head += f" {'vs fixed 5':>10} {'best missed':>14} {'no best kept':>14}"
    head += f" {'equal dropped':>14} {'best set':>8}"
    print(head)
    for name, spread, tallies in rows:
        base = tallies["fixed 5"].epochs
        for label, t in tallies.items():
            saved = f"{-100 * (1 - t.epochs / base):+.0f} %" if label != "fixed 5" else "baseline"
            print(
                f"{name:<12} {spread:>5g}x {label:<14} {t.runs / t.reps:6.1f}"
                f" {t.epochs / t.reps:7.1f} {saved:>10} {rate(t.missed_best, t.reps):>14}"
                f" {rate(t.no_best_kept, t.reps):>14} {rate(t.equal_dropped, t.reps):>14}"
                f" {t.best_set_size / t.reps:8.1f}"
            )


def print_seeds(rows: list[tuple[str, float, dict[str, Tally]]]) -> None:
    """Where `--until-decided` spends its runs: each model's mean seeds."""
    print("until decided, mean seeds per model:")
    for name, spread, tallies in rows:
        t = tallies["until decided"]
        each = ", ".join(f"{m} {n / t.reps:.1f}" for m, n in t.seeds.items())
        print(f"  {name} {spread:g}x: {each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", type=Path)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--min-seeds", type=int, default=sequential.DEFAULT_MIN_SEEDS)
    parser.add_argument("--max-seeds", type=int, default=sequential.DEFAULT_MAX_SEEDS)
    parser.add_argument("--margin", type=float, default=100 * sequential.DEFAULT_MARGIN)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--prune-factor", type=int, default=rungs.DEFAULT_FACTOR)
    parser.add_argument("--prune-min-epochs", type=int, default=rungs.DEFAULT_MIN_EPOCHS)
    args = parser.parse_args()
    settings = sequential.SequentialSettings(
        min_seeds=args.min_seeds, max_seeds=args.max_seeds, margin=args.margin / 100
    )
    pruning = rungs.HalvingSettings(factor=args.prune_factor, min_epochs=args.prune_min_epochs)
    print(f"cpu: {platform.processor() or platform.machine()} ({cpu_name()})")
    print(
        f"{args.reps} simulated studies per row; until decided: {settings.min_seeds}.."
        f"{settings.max_seeds} seeds, margin {args.margin:g} points, alpha {settings.alpha:g}; "
        f"halving: {FIXED_SEEDS} seeds, {pruning.describe(args.epochs)}"
    )
    rows = []
    for directory in args.studies:
        truth = truth_from_study(directory)
        print(
            f"{truth.name}: {len(truth.models)} models (with the twin), true best {truth.best} "
            f"at {100 * truth.means.max():.2f} %, spreads {100 * truth.spreads.min():.2f}.."
            f"{100 * truth.spreads.max():.2f} points; curves {truth.curves}: rise c "
            + ", ".join(f"{m} {100 * c:.1f}" for m, c in zip(truth.models, truth.rise, strict=True))
            + " points, scatter tau "
            + ", ".join(f"{100 * t:.1f}" for t in truth.scatter)
        )
        for spread in args.spreads:
            found = simulate(truth, spread, args.reps, settings, pruning, args.epochs, args.seed)
            rows.append((truth.name, spread, found))
    print_table(rows)
    print_seeds(rows)


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
