"""The report's plots, each in two steps: a pure function builds a small frozen data object
(tested on its own), then a `draw_*` function turns it into a matplotlib Figure.

Figures are made with the object-oriented API (`matplotlib.figure.Figure`, which renders with
Agg), never through pyplot: no global state, no window, safe in threads and on servers.
`save_figures` draws them (in worker processes if asked) and writes each as PNG and SVG.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import multiprocessing
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox
from scipy.stats import gaussian_kde

from cnnlab import spec as s
from cnnlab.shapes import module_paths
from cnnlab.stats import FactorEffect, MeanCI
from cnnlab.store import RunRecord

P = ParamSpec("P")
log = logging.getLogger("cnnlab.report")
# Failed/diverged runs would drown the band; pruned ones draw up to the rung they stopped at.
CURVE_STATUSES = ("done", "running", "pending", "pruned")
VIOLIN_POINTS = 20_000  # a KDE of 20k draws looks like the full layer's and takes milliseconds
VIOLIN_GRID = 128  # points the density is evaluated at: smooth at the drawn size
VIOLIN_COLUMNS = 6  # violins per row; deep models wrap instead of growing a metre wide
MISCLASSIFIED_SHOWN = 40
DPI = 110
PANEL_COLUMNS = 4
PANEL_WIDTH, PANEL_HEIGHT = 3.0, 2.2  # inches: a 4-column page fits the report's 1200 px
OVERVIEW_BANDS = 4  # more models than this on one chart: means only, bands would overlap
OVERVIEW_NAMED = 10  # models the overview colours and names; more are grey lines
NEAR_CHANCE_FACTOR = 2.0  # accuracy at most twice chance (20 % of 10 classes): not learned
LOSS_CAP_FACTOR = 3.0  # loss axes end at 3 x ln(classes): an exploding epoch stays off-scale
MAX_POINT_LABELS = 30  # cost plots name at most this many points, the front first
CHANCE_STYLE = {"color": "0.35", "linestyle": ":", "linewidth": 1.0}
# EarlyStopping's epochs on the curves: a cross where a run stopped, a star at the weights kept.
STOPPED_STYLE = {"marker": "X", "markersize": 6, "markeredgecolor": "black", "linestyle": ""}
KEPT_STYLE = {"marker": "*", "markersize": 9, "markeredgecolor": "black", "linestyle": ""}
LEGEND_ENTRIES_PER_PANEL = 2  # legend entries a panel's width holds side by side at 7 pt
LEGEND_ROW_HEIGHT = 0.18  # inches each further row of the legend adds above the panels
FEWER_SEEDS_ALPHA = 0.35  # the mean past the epoch where a first run stopped: fewer seeds in it
# Log axes label 2e5 as "2x10^5" by default; "200,000" reads at a glance.
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 10 else f"{value:g}")


# -- learning curves ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A metric per epoch over seeds: the mean, and the seeds' lowest and highest values."""

    epochs: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    seeds: tuple[int, ...]  # how many runs have each epoch


@dataclass(frozen=True)
class RunMark:
    """One run's epoch marked on its model's curve: the epoch EarlyStopping stopped it after,
    or the epoch whose weights it kept and was tested with (restore_best_weights)."""

    seed: int
    epoch: int
    value: float  # the run's own value there, on the curve the marks sit on


@dataclass(frozen=True)
class ModelCurves:
    """One model's training and validation curves of one metric ("loss" or "accuracy"); the
    marks sit on the validation curve, or on the training curve where there is none."""

    model: str
    metric: str
    train: Band
    validation: Band | None  # None when the runs trained without validation
    stopped: tuple[RunMark, ...] = ()
    kept: tuple[RunMark, ...] = ()


def metric_band(per_run: Sequence[Mapping[int, float]]) -> Band:
    """Mean, min and max per epoch over the runs that reached it (non-finite values left out)."""
    epochs = sorted({e for values in per_run for e, v in values.items() if math.isfinite(v)})
    columns = [[v[e] for v in per_run if e in v and math.isfinite(v[e])] for e in epochs]
    return Band(
        epochs=tuple(epochs),
        mean=tuple(float(np.mean(c)) for c in columns),
        low=tuple(float(np.min(c)) for c in columns),
        high=tuple(float(np.max(c)) for c in columns),
        seeds=tuple(len(c) for c in columns),
    )


def model_curves(model: str, runs: Sequence[RunRecord], metric: str = "loss") -> ModelCurves:
    """Train and validation `metric` per epoch of one model's runs (Keras's History keys)."""
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
    used = [run for run in runs if run.model == model and run.status in CURVE_STATUSES]
    train = [{e.epoch: getattr(e, metric) for e in run.epochs} for run in used]
    val = [
        {e.epoch: getattr(e, f"val_{metric}") for e in run.epochs}
        for run in used
        if any(getattr(e, f"val_{metric}") is not None for e in run.epochs)
    ]
    val = [{e: v for e, v in values.items() if v is not None} for values in val]
    key = f"val_{metric}" if val else metric
    return ModelCurves(
        model,
        metric,
        metric_band(train),
        metric_band(val) if val else None,
        stopped=_marks(used, stopped_epoch, key),
        kept=_marks(used, kept_epoch, key),
    )


def stopped_epoch(run: RunRecord) -> int | None:
    """The epoch EarlyStopping stopped a finished run after; None when it ran every epoch
    (a failed or diverged run's stopped_epoch is where it broke, not a stop)."""
    return run.stopped_epoch if run.status == "done" else None


def kept_epoch(run: RunRecord) -> int | None:
    """The epoch whose weights a finished run was tested with under restore_best_weights:
    EarlyStopping's best (Keras's on_train_end restores it). None: tested as it ended."""
    early = run.training.get("early_stopping") or {}
    if run.status != "done" or not early.get("restore_best_weights"):
        return None
    return run.best_epoch


def _marks(
    runs: Sequence[RunRecord], epoch_of: Callable[[RunRecord], int | None], key: str
) -> tuple[RunMark, ...]:
    """Each run's mark at `epoch_of(run)`, at its own `key` value there (none where unknown)."""
    marks = []
    for run in runs:
        wanted = epoch_of(run)
        record = next((e for e in run.epochs if e.epoch == wanted), None)
        value = getattr(record, key) if record is not None else None
        if value is not None and math.isfinite(value):
            marks.append(RunMark(run.seed, record.epoch, float(value)))  # type: ignore[union-attr]
    return tuple(marks)


def curves_by_model(
    runs: Sequence[RunRecord], models: Sequence[str], metric: str
) -> tuple[ModelCurves, ...]:
    return tuple(model_curves(model, runs, metric) for model in models)


# -- learning rates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRates:
    """One model's learning rate as each epoch ended, one line per run (seed): runs of a model
    share a schedule, but ReduceLROnPlateau lowers each seed's rate on its own history."""

    model: str
    seeds: tuple[int, ...]
    epochs: tuple[tuple[int, ...], ...]  # per run
    rates: tuple[tuple[float, ...], ...]  # per run

    @property
    def changes(self) -> bool:
        """Whether the rate moved in some run of this model."""
        return any(len(set(rates)) > 1 for rates in self.rates)


def model_rates(model: str, runs: Sequence[RunRecord]) -> ModelRates:
    """The recorded learning rates of one model's runs (epochs stored before rates were
    recorded have none, and are left out)."""
    used = [run for run in runs if run.model == model and run.status in CURVE_STATUSES]
    lines = []
    for run in used:
        points = [
            (e.epoch, float(e.learning_rate)) for e in run.epochs if e.learning_rate is not None
        ]
        if points:
            lines.append((run.seed, points))
    return ModelRates(
        model,
        tuple(seed for seed, _ in lines),
        tuple(tuple(epoch for epoch, _ in points) for _, points in lines),
        tuple(tuple(rate for _, rate in points) for _, points in lines),
    )


def rates_by_model(runs: Sequence[RunRecord], models: Sequence[str]) -> tuple[ModelRates, ...]:
    return tuple(model_rates(model, runs) for model in models)


def constant_rates(rates: Sequence[ModelRates]) -> dict[float, int]:
    """Where no rate moved: each rate the runs kept, and how many models kept it."""
    kept: dict[float, int] = {}
    for model in rates:
        for rate in sorted({r for line in model.rates for r in line}):
            kept[rate] = kept.get(rate, 0) + 1
    return kept


# -- Pareto front -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParetoPoint:
    model: str
    cost: float
    accuracy: float  # mean over seeds
    low: float | None  # the accuracy's confidence interval, when there is one
    high: float | None
    on_front: bool


@dataclass(frozen=True)
class ParetoData:
    """Accuracy against one cost; the front holds the models no other beats on both."""

    cost: str  # "parameters" or "seconds per epoch"
    points: tuple[ParetoPoint, ...]

    @property
    def front(self) -> tuple[ParetoPoint, ...]:
        """The front's points from cheapest to dearest."""
        return tuple(sorted((p for p in self.points if p.on_front), key=lambda p: p.cost))


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(cost, accuracy) a dominates b: no dearer, no less accurate, and better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(
    cost: str, models: Sequence[tuple[str, float | None, MeanCI | None]]
) -> ParetoData:
    """Mark the models on the accuracy/cost front; models without both figures are left out."""
    known = [(m, float(c), ci) for m, c, ci in models if c is not None and ci is not None]
    pairs = [(c, ci.mean) for _, c, ci in known]
    points = tuple(
        ParetoPoint(
            model,
            c,
            ci.mean,
            ci.low,
            ci.high,
            on_front=not any(dominates(other, (c, ci.mean)) for other in pairs),
        )
        for model, c, ci in known
    )
    return ParetoData(cost, points)


# -- trained weights --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One weighted layer's trained values as a violin: a density over their range, quartiles.

    The values are a conv/dense kernel, or a batch normalization's scale (gamma). The density
    is a Gaussian KDE (Scott's bandwidth, as seaborn's violins) cut at the smallest and largest
    weight, so no violin suggests weights that do not exist.
    """

    layer: str  # the checkpoint's name for it, Keras's layer name: conv2d, dense_1, ...
    kind: str  # "kernel" or "gamma"
    shape: tuple[int, ...]
    grid: np.ndarray  # (VIOLIN_GRID,) values from min to max; one value when all are equal
    density: np.ndarray  # the KDE at `grid`, integrating to about 1 over it
    quartiles: tuple[float, float, float]
    mean: float
    std: float

    @property
    def count(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightViolins:
    model: str
    seed: int
    layers: tuple[LayerWeights, ...]  # in layer order


def weighted_layer_names(layers: Sequence[s.Layer], state: Mapping[str, Any]) -> list[str]:
    """The checkpoint's names of the layers that hold weights, in the model's layer order.

    A safetensors file lists its tensors sorted by name (dense before conv2d_1), so the order
    comes from the spec; the names are those of the checkpoint, `<name>.weight` in it.
    """
    # Layers inside a residual block are named by it: residual_1.conv2d_4.
    named = [name for name in module_paths(list(layers)) if f"{name}.weight" in state]
    others = sorted(
        key.removesuffix(".weight")
        for key in state
        if key.endswith(".weight") and key.removesuffix(".weight") not in named
    )
    return named + others


def layer_weights(name: str, tensor: Any, *, max_points: int = VIOLIN_POINTS) -> LayerWeights:
    """One layer's violin. The KDE is fitted on at most `max_points` values (a fixed random
    subset, so a rebuilt report draws the same violin); quartiles, mean and std use them all."""
    values = np.asarray(tensor, dtype=np.float64)
    flat = values.ravel()
    low, high = float(flat.min()), float(flat.max())
    quartiles = tuple(float(q) for q in np.percentile(flat, [25, 50, 75]))
    if high - low <= 1e-12 * max(1.0, abs(high)):  # all equal (an untrained gamma): no KDE
        grid, density = np.array([low]), np.array([1.0])
    else:
        rng = np.random.default_rng(0)
        sample = flat if flat.size <= max_points else rng.choice(flat, max_points, replace=False)
        grid = np.linspace(low, high, VIOLIN_GRID)
        density = gaussian_kde(sample)(grid)
    kind = "kernel" if values.ndim >= 2 else "gamma"
    return LayerWeights(
        name, kind, values.shape, grid, density, quartiles, float(flat.mean()), float(flat.std())
    )


def weight_violins(
    model: str, seed: int, layers: Sequence[s.Layer], state: Mapping[str, Any]
) -> WeightViolins:
    """A violin for every weighted layer of a trained model (its checkpoint's state dict)."""
    names = weighted_layer_names(layers, state)
    return WeightViolins(
        model, seed, tuple(layer_weights(name, state[f"{name}.weight"]) for name in names)
    )


# -- the best model's errors -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ConfusionData:
    """Counts of (true, predicted) classes, summed over a model's runs."""

    model: str
    counts: np.ndarray  # (classes, classes) int64, rows true, columns predicted
    runs: int
    class_names: tuple[str, ...] | None = None  # the dataset's, as the axes' tick labels

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.counts) / max(1, self.counts.sum()))


def confusion_counts(
    model: str,
    labels: np.ndarray,
    predictions: Sequence[np.ndarray],
    classes: int,
    *,
    class_names: tuple[str, ...] | None = None,
) -> ConfusionData:
    """The confusion matrix of every run's predictions against the same labels, summed."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.zeros((classes, classes), dtype=np.int64)
    for predicted in predictions:
        _check_same_images(labels, predicted)
        np.add.at(counts, (labels, np.asarray(predicted, dtype=np.int64)), 1)
    names = class_names if class_names is not None and len(class_names) == classes else None
    return ConfusionData(model, counts, len(predictions), names)


def _check_same_images(labels: np.ndarray, predicted: np.ndarray) -> None:
    if np.shape(predicted) != labels.shape:
        raise ValueError(
            f"predictions of shape {np.shape(predicted)} do not answer {labels.shape[0]} labels"
        )


@dataclass(frozen=True)
class Misclassified:
    index: int  # position in the test set
    true: int
    predicted: int  # the wrong class the runs chose most often
    wrong_in: int  # how many of the runs got it wrong


@dataclass(frozen=True)
class MisclassifiedGrid:
    model: str
    items: tuple[Misclassified, ...]  # most often wrong first, then in test-set order
    runs: int
    total: int  # test images wrong in at least one run
    class_names: tuple[str, ...] | None = None  # the dataset's, shown instead of indices

    def name(self, index: int) -> str:
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else str(index)


def misclassified_digits(
    model: str,
    labels: np.ndarray,
    predictions: Sequence[np.ndarray],
    *,
    limit: int = MISCLASSIFIED_SHOWN,
    class_names: tuple[str, ...] | None = None,
) -> MisclassifiedGrid:
    """The test images a model gets wrong, those wrong in most of its runs first."""
    labels = np.asarray(labels, dtype=np.int64)
    stacked = (
        np.stack([np.asarray(p, dtype=np.int64) for p in predictions]) if predictions else None
    )
    if stacked is None:
        return MisclassifiedGrid(model, (), 0, 0)
    for predicted in stacked:
        _check_same_images(labels, predicted)
    wrong = stacked != labels
    counts = wrong.sum(axis=0)
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))
    items = tuple(
        Misclassified(int(i), int(labels[i]), _most_common(stacked[wrong[:, i], i]), int(counts[i]))
        for i in order[:limit]
    )
    return MisclassifiedGrid(model, items, len(stacked), len(order), class_names)


def _most_common(values: np.ndarray) -> int:
    """The most frequent value, the smallest among equals (so the choice is repeatable)."""
    tally = Counter(int(v) for v in values)
    return min(tally, key=lambda v: (-tally[v], v))


# -- shared axes and chance ----------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRange:
    """The y-range every panel of a metric shares, and the chance level drawn across it."""

    low: float
    high: float
    chance: float | None  # accuracy 1/classes, loss ln(classes): a model that learned nothing


def chance_level(metric: str, classes: int | None) -> float | None:
    """What a model that learned nothing scores: accuracy 1/classes (a uniform guess, or
    about it when always saying one class), cross-entropy ln(classes) (a uniform output)."""
    if classes is None or classes < 2:
        return None
    return 1.0 / classes if metric == "accuracy" else math.log(classes)


def shared_range(curves: Sequence[ModelCurves], classes: int | None) -> ValueRange | None:
    """One y-range for every model's panel of a metric, so a model stuck at chance looks flat
    next to one that learns (on its own axis, 0.1122 to 0.1135 looks like learning).

    Accuracy spans from the lowest value to 1 (down to chance when a value is near it); loss
    from 0 to the highest value,
    but at most LOSS_CAP_FACTOR x chance, so one exploding epoch does not flatten the rest.
    """
    bands = [b for c in curves for b in (c.train, c.validation) if b is not None and b.epochs]
    if not bands:
        return None
    metric = curves[0].metric
    chance = chance_level(metric, classes)
    lows = [v for b in bands for v in b.low if math.isfinite(v)]
    highs = [v for b in bands for v in b.high if math.isfinite(v)]
    if not lows or not highs:
        return None
    if metric == "accuracy":
        low = min(lows)
        if chance is not None and low <= NEAR_CHANCE_FACTOR * chance:
            low = min(low, chance)  # a model near chance: show where chance is
        pad = 0.04 * (1.0 - low)
        return ValueRange(max(0.0, low - pad), 1.0 + pad / 2, chance)
    high = max(highs)
    if chance is not None:
        high = min(high, LOSS_CAP_FACTOR * chance)
    return ValueRange(0.0, high * 1.05, chance)


def near_chance(accuracy: float, classes: int | None) -> bool:
    """A model no better than NEAR_CHANCE_FACTOR x chance has not learned the task."""
    chance = chance_level("accuracy", classes)
    return chance is not None and accuracy <= NEAR_CHANCE_FACTOR * chance


# -- grid factors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParallelData:
    """A grid's models as lines across its factors' axes and, last, test accuracy."""

    factors: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]  # each factor's levels as shown, in order
    models: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]  # per model: its level's index on each factor
    accuracy: tuple[float, ...]  # per model: mean test accuracy
    chance: tuple[bool, ...]  # per model: near chance (drawn apart, below the scale)


def parallel_coordinates(
    rows: Sequence[tuple[str, Mapping[str, Any], float]], classes: int | None
) -> ParallelData:
    """(model, factors, mean accuracy) rows as parallel coordinates; models without every
    factor of the first grid are left out (two grids in one study: the first one's)."""
    names = tuple(dict.fromkeys(name for _, factors, _ in rows for name in factors))
    kept = [r for r in rows if all(name in r[1] for name in names) and math.isfinite(r[2])]
    levels = tuple(_ordered_levels([r[1][name] for r in kept]) for name in names)
    positions = tuple(
        tuple(levels[i].index(_shown_level(r[1][name])) for i, name in enumerate(names))
        for r in kept
    )
    return ParallelData(
        factors=names,
        levels=levels,
        models=tuple(r[0] for r in kept),
        positions=positions,
        accuracy=tuple(float(r[2]) for r in kept),
        chance=tuple(near_chance(r[2], classes) for r in kept),
    )


def _ordered_levels(values: Sequence[Any]) -> tuple[str, ...]:
    distinct = list(dict.fromkeys(values))
    with contextlib.suppress(TypeError):  # levels of mixed kinds keep their order of appearance
        distinct = sorted(distinct)
    return tuple(dict.fromkeys(_shown_level(v) for v in distinct))


def _shown_level(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# -- drawing ----------------------------------------------------------------------------------


def plain_text(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw with every label taken as plain text: a model named "$\\frac{$" must not reach
    matplotlib's mathtext parser, which would stop the report. Labels read the setting when
    they are made, so the whole drawing runs under it."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn


def _palette(n: int) -> list[Any]:
    """Distinct colours: tab10; up to 20, tab20's ten dark hues then their light twins (husl,
    a colour circle, gave the first and the last of 13 models the same pink)."""
    if n <= 10:
        return sns.color_palette("tab10", n)
    if n <= 20:
        pairs = sns.color_palette("tab20", 20)
        return (pairs[0::2] + pairs[1::2])[:n]
    return sns.color_palette("husl", n)


def _panel_grid(
    n: int, *, width: float = 3.6, height: float = 2.7, columns: int = PANEL_COLUMNS
) -> tuple[Figure, list[Any]]:
    columns = min(columns, max(1, n))
    rows = max(1, math.ceil(n / columns))
    fig = Figure(figsize=(width * columns, height * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _draw_band(
    ax: Any, band: Band, color: Any, label: str, *, style: str = "-", spread: bool = True
) -> None:
    """The mean per epoch, and the seeds' range as a band (as an error bar at a lone epoch).
    Past the last epoch every run reached (others stopped early, or still train) the mean is
    over fewer seeds: drawn faint, so it does not pass for all the runs going on."""
    whole = fewer_seeds_from(band)
    ax.plot(band.epochs[:whole], band.mean[:whole], style, color=color, label=label, marker=".")
    if whole < len(band.epochs):
        rest = slice(max(whole - 1, 0), None)
        ax.plot(
            band.epochs[rest], band.mean[rest], style, color=color, marker=".",
            alpha=FEWER_SEEDS_ALPHA,
        )  # fmt: skip
    if not spread or not any(n > 1 for n in band.seeds):
        return
    if len(band.epochs) == 1:
        error = [[band.mean[0] - band.low[0]], [band.high[0] - band.mean[0]]]
        ax.errorbar(band.epochs, band.mean, yerr=error, color=color, capsize=4, fmt="none")
        return
    for part, alpha in ((slice(0, whole), 0.2), (slice(max(whole - 1, 0), None), 0.08)):
        epochs, low, high = band.epochs[part], band.low[part], band.high[part]
        if len(epochs) > 1:
            ax.fill_between(epochs, low, high, color=color, alpha=alpha, linewidth=0)


def fewer_seeds_from(band: Band) -> int:
    """The index of the band's first epoch with fewer runs than its most (its length if none)."""
    most = max(band.seeds, default=0)
    return next((i for i, n in enumerate(band.seeds) if n < most), len(band.seeds))


def _draw_marks(ax: Any, curves: ModelCurves, color: Any) -> None:
    """Each run's stopped epoch (a cross) and kept epoch (a star), at its own value."""
    for marks, style in ((curves.stopped, STOPPED_STYLE), (curves.kept, KEPT_STYLE)):
        if marks:
            epochs, values = [m.epoch for m in marks], [m.value for m in marks]
            ax.plot(epochs, values, color=color, zorder=3, **style)


def _mark_handles(curves: Sequence[ModelCurves]) -> list[Line2D]:
    """Legend entries for the marks the curves hold (none when no run stopped early)."""
    handles = []
    if any(c.stopped for c in curves):
        handles.append(Line2D([], [], color="0.6", label="stopped early", **STOPPED_STYLE))
    if any(c.kept for c in curves):
        handles.append(Line2D([], [], color="0.6", label="weights kept", **KEPT_STYLE))
    if any(fewer_seeds_from(b) < len(b.epochs) for c in curves for b in _bands(c)):
        handles.append(Line2D([], [], color="0.3", alpha=FEWER_SEEDS_ALPHA, label="fewer seeds"))
    return handles


def _bands(curves: ModelCurves) -> list[Band]:
    return [b for b in (curves.train, curves.validation) if b is not None]


@plain_text
def draw_model_curves(
    curves: Sequence[ModelCurves], value_range: ValueRange | None = None
) -> Figure:
    """One panel per model, all on one y-range with the chance level dotted: train vs
    validation per epoch, the seeds' range as a band (the notebook's `plt_dynamic`, in its
    colours: train red, validation blue). Shared axes keep the tick labels at the edges."""
    columns = min(PANEL_COLUMNS, max(1, len(curves)))
    rows = max(1, math.ceil(len(curves) / columns))
    handles = _curve_handles(curves, value_range)
    legend_columns = min(len(handles), LEGEND_ENTRIES_PER_PANEL * columns)
    extra = LEGEND_ROW_HEIGHT * (math.ceil(len(handles) / legend_columns) - 1)  # inches
    height = PANEL_HEIGHT * rows + 0.5 + extra
    fig = Figure(figsize=(PANEL_WIDTH * columns, height), dpi=DPI)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel().tolist()
    fig.subplots_adjust(
        left=0.75 / (PANEL_WIDTH * columns),
        right=0.99,
        bottom=0.55 / height,
        top=1 - (0.45 + extra) / height,
        wspace=0.06,
        hspace=0.32,
    )
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    epochs = tuple(e for c in curves for e in c.train.epochs)
    for ax, c in zip(axes, curves, strict=False):
        ax.set_title(c.model, fontsize=8, pad=2)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if not c.train.epochs:
            ax.text(
                0.5,
                0.5,
                "no epochs to show:\nnot started, failed or diverged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
                fontsize=7,
            )
            continue
        _draw_band(ax, c.train, "tab:red", "train")
        if c.validation is not None:
            _draw_band(ax, c.validation, "tab:blue", "validation", style="--")
        _draw_marks(ax, c, "tab:blue" if c.validation is not None else "tab:red")
        _chance_line(ax, value_range)
    _epoch_axis(axes[0], epochs)
    if value_range is not None:
        axes[0].set_ylim(value_range.low, value_range.high)
    for ax in axes[: len(curves)]:
        ax.label_outer()
        ax.set_xlabel("")
    metric = curves[0].metric if curves else "loss"
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel(_metric_label(metric), fontsize=8)
    fig.legend(handles=handles, loc="upper right", ncols=legend_columns, fontsize=7, frameon=False)
    return fig


def _curve_handles(curves: Sequence[ModelCurves], value_range: ValueRange | None) -> list[Any]:
    handles = [
        Line2D([], [], color="tab:red", marker=".", label="train"),
        Line2D([], [], color="tab:blue", linestyle="--", marker=".", label="validation"),
    ]
    if _shows_chance(value_range):
        handles.append(Line2D([], [], **CHANCE_STYLE, label="chance"))
    return handles + _mark_handles(curves)


def _chance_line(ax: Any, value_range: ValueRange | None) -> None:
    if _shows_chance(value_range):
        ax.axhline(value_range.chance, **CHANCE_STYLE)  # type: ignore[union-attr]


def _shows_chance(value_range: ValueRange | None) -> bool:
    """Whether the chance level lies on the shared range (a study far above it leaves it out)."""
    if value_range is None or value_range.chance is None:
        return False
    return value_range.low <= value_range.chance <= value_range.high


@plain_text
def draw_validation_overview(
    curves: Sequence[ModelCurves], value_range: ValueRange | None = None
) -> Figure:
    """Every model's validation curve (train where there is no validation) on one chart, the
    chance level dotted. Up to OVERVIEW_NAMED models each get a colour and a legend entry; with
    more, the best OVERVIEW_NAMED do (by last validation value) and the rest are thin grey
    lines. The seeds' bands only for a few models, where they do not hide each other."""
    fig = Figure(figsize=(8, 4.5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    curves = [c for c in curves if c.train.epochs]
    spread = len(curves) <= OVERVIEW_BANDS
    named = _overview_named(curves)
    for c in curves:
        if c.model not in named:
            band = c.validation or c.train
            ax.plot(band.epochs, band.mean, color="0.75", linewidth=0.7, zorder=1)
    colours = dict(zip(named, _palette(len(named)), strict=True))
    for c in curves:
        if c.model in named:
            band = c.validation or c.train
            label = c.model if c.validation else f"{c.model} (train)"
            _draw_band(ax, band, colours[c.model], label, spread=spread)
            _draw_marks(ax, c, colours[c.model])
    _chance_line(ax, value_range)
    metric = curves[0].metric if curves else "loss"
    _epoch_axis(ax, tuple(e for c in curves for e in c.train.epochs))
    if value_range is not None:
        ax.set_ylim(value_range.low, value_range.high)
    ax.set_ylabel(f"validation {_metric_label(metric)}")
    if len(named) < len(curves):
        ax.set_title(
            f"{len(curves)} models; coloured: the {len(named)} best by last validation "
            f"{metric}, grey: the others",
            fontsize=9,
        )
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + _mark_handles(
        [c for c in curves if c.model in named]
    )
    ax.legend(handles=handles, fontsize=7, ncols=2 if len(named) > 8 else 1)
    return fig


@plain_text
def draw_learning_rates(rates: Sequence[ModelRates]) -> Figure:
    """One panel per model: each run's learning rate as its epochs ended, one line per seed
    (seeds that share a schedule draw one line). A log axis where the positive rates span a
    factor of ten or more: schedules decay by factors, so equal steps down look equal."""
    fig, axes = _panel_grid(len(rates), width=PANEL_WIDTH, height=PANEL_HEIGHT)
    values = [r for model in rates for line in model.rates for r in line]
    logarithmic = bool(values) and min(values) > 0 and max(values) >= 10 * min(values)
    for ax, model in zip(axes, rates, strict=True):
        for epochs, line in zip(model.epochs, model.rates, strict=True):
            ax.plot(epochs, line, color="tab:green", alpha=0.7, marker=".", linewidth=1.0)
        ax.set_title(model.model, fontsize=8, pad=2)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        _epoch_axis(ax, [e for epochs in model.epochs for e in epochs])
        ax.set_xlabel("epoch", fontsize=8)
        if logarithmic:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(PLAIN_NUMBER)
            ax.yaxis.set_minor_formatter(NullFormatter())
        if not model.rates:
            ax.text(0.5, 0.5, "no rates recorded", ha="center", va="center",
                    transform=ax.transAxes, color="gray", fontsize=7)  # fmt: skip
    _share_rate_range(axes, values, logarithmic)
    if axes:
        axes[0].set_ylabel("learning rate (end of epoch)", fontsize=8)
    return fig


def _share_rate_range(axes: Sequence[Any], values: Sequence[float], logarithmic: bool) -> None:
    """One y-range for every panel, with 5 % of it (on a log axis, of its span) as room."""
    if not values or min(values) == max(values):
        return
    low, high = min(values), max(values)
    if logarithmic:
        room = (high / low) ** 0.05
        limits = (low / room, high * room)
    else:
        room = 0.05 * (high - low)
        limits = (low - room, high + room)
    for ax in axes:
        ax.set_ylim(*limits)


def _overview_named(curves: Sequence[ModelCurves]) -> list[str]:
    """The models the overview names: all up to OVERVIEW_NAMED, else the best by last value."""
    if len(curves) <= OVERVIEW_NAMED:
        return [c.model for c in curves]

    def last(c: ModelCurves) -> float:
        value = (c.validation or c.train).mean[-1]
        return value if c.metric == "accuracy" else -value

    best = {c.model for c in sorted(curves, key=last, reverse=True)[:OVERVIEW_NAMED]}
    return [c.model for c in curves if c.model in best]


def _epoch_axis(ax: Any, epochs: Sequence[int]) -> None:
    """Whole epochs only, half an epoch of room on each side (one epoch is a lone point), and
    plain y values: an offset like "+2.302" above the axis is easy to miss."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.ticklabel_format(axis="y", useOffset=False)


def _metric_label(metric: str) -> str:
    return "categorical cross-entropy" if metric == "loss" else "accuracy"


@plain_text
def draw_weight_violins(data: WeightViolins) -> Figure:
    """One violin per weighted layer, each on its own scale (kernels differ by orders),
    the quartiles as lines (seaborn's inner="quartile")."""
    fig, axes = _panel_grid(len(data.layers), width=1.9, height=3.0, columns=VIOLIN_COLUMNS)
    for ax, layer, color in zip(axes, data.layers, _palette(len(data.layers)), strict=True):
        _draw_violin(ax, layer, color)
    if axes:
        axes[0].set_ylabel("trained weight")
    fig.suptitle(f"{data.model} (seed {data.seed}): trained weights per layer", fontsize=10)
    return fig


def _draw_violin(ax: Any, layer: LayerWeights, color: Any) -> None:
    half = 0.4 * layer.density / layer.density.max()
    if layer.grid.size > 1:
        ax.fill_betweenx(layer.grid, -half, half, color=color, alpha=0.75, linewidth=0.8)
    else:  # every value equal: a flat line where they all are
        ax.plot([-0.4, 0.4], [layer.grid[0]] * 2, color=color, linewidth=2)
    for q, style in zip(layer.quartiles, (":", "--", ":"), strict=True):
        width = float(np.interp(q, layer.grid, half)) if layer.grid.size > 1 else 0.4
        ax.plot([-width, width], [q, q], style, color="black", linewidth=0.9)
    ax.set_xlim(-0.5, 0.5)
    ax.set_xticks([])
    what = "" if layer.kind == "kernel" else " (gamma)"
    ax.set_xlabel(f"{layer.layer}{what}\n{layer.count:,} weights", fontsize=8)
    ax.tick_params(labelsize=7)


@plain_text
def draw_pareto(fronts: Sequence[ParetoData], classes: int | None = None) -> Figure:
    """Accuracy against each cost, the front joined by a step line. Labels never overlap:
    each is placed where it collides with no other (front first, then by accuracy) or left
    out. Models near chance sit on the bottom edge, outside the scale, so they do not squash
    the axis the others are read on."""
    fig = Figure(figsize=(6.2 * max(1, len(fronts)), 4.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, max(1, len(fronts)), squeeze=False)[0]
    for ax, data in zip(axes, fronts, strict=False):
        _draw_one_pareto(ax, data, classes)
    fig.draw_without_rendering()  # run the layout: labels are placed in final positions
    for ax, data in zip(axes, fronts, strict=False):
        _label_points(fig, ax, data, classes)
    return fig


def _draw_one_pareto(ax: Any, data: ParetoData, classes: int | None) -> None:
    shown = [p for p in data.points if not near_chance(p.accuracy, classes)]
    low_points = [p for p in data.points if near_chance(p.accuracy, classes)]
    for p in shown:
        err = (
            None if p.low is None else [[100 * (p.accuracy - p.low)], [100 * (p.high - p.accuracy)]]
        )
        color = "tab:red" if p.on_front else "tab:gray"
        ax.errorbar(
            p.cost,
            100 * p.accuracy,
            yerr=err,
            fmt="o",
            color=color,
            capsize=3,
            markersize=4 if len(shown) > 40 else 6,
        )
    front = [p for p in data.front if not near_chance(p.accuracy, classes)]
    if front:
        ax.step(
            [p.cost for p in front],
            [100 * p.accuracy for p in front],
            where="post",
            color="tab:red",
            alpha=0.6,
            label="Pareto front",
        )
    if shown:
        low = min(100 * (p.low if p.low is not None else p.accuracy) for p in shown)
        high = max(100 * (p.high if p.high is not None else p.accuracy) for p in shown)
        pad = max(0.05, 0.08 * (high - low))
        ax.set_ylim(low - pad, min(100.0 + pad / 4, high + pad))
    if low_points:
        bottom = ax.get_ylim()[0]
        ax.plot(
            [p.cost for p in low_points],
            [bottom] * len(low_points),
            "v",
            color="0.45",
            clip_on=False,
            label=f"{len(low_points)} near chance (off the scale)",
        )
    if front or low_points:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(PLAIN_NUMBER)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(data.cost + " (log scale)")
    ax.set_ylabel("test accuracy % (mean, 95 % CI)")


LABEL_OFFSETS = ((5, 4), (5, -11), (-5, 4), (-5, -11), (6, 12), (6, -19), (-6, 12), (-6, -19))


def _label_points(fig: Figure, ax: Any, data: ParetoData, classes: int | None) -> None:
    """Name the points (front first, then the most accurate) where a label overlaps no other
    label and stays inside the axes; the rest stay unnamed (the table has them all)."""
    renderer = FigureCanvasAgg(fig).get_renderer()  # what PNG output measures text with
    inside = ax.get_window_extent(renderer)
    placed: list[Any] = []
    points = [p for p in data.points if not near_chance(p.accuracy, classes)]
    points.sort(key=lambda p: (not p.on_front, -p.accuracy))
    marks = [ax.transData.transform((p.cost, 100 * p.accuracy)) for p in points]
    dots = [Bbox.from_bounds(x - 3, y - 3, 6, 6) for x, y in marks]
    for p in points[:MAX_POINT_LABELS]:
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(
                p.model,
                (p.cost, 100 * p.accuracy),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=7,
                ha="left" if dx > 0 else "right",
            )
            text.set_in_layout(False)
            box = text.get_window_extent(renderer)
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            clear = not any(box.overlaps(other) for other in placed + dots)
            if fits and clear:
                placed.append(box)
                break
            text.remove()


@plain_text
def draw_factor_effects(effects: Sequence[FactorEffect]) -> Figure:
    """A grid's main effects: per factor, the mean test accuracy at each level with its 95 %
    interval (from `stats.factor_effects`), on one y-scale, the overall mean dashed."""
    fig, axes = _panel_grid(len(effects), width=3.4, height=3.0)
    means = [lv.ci.mean for e in effects for lv in e.levels]
    overall = 100 * float(np.mean(means)) if means else None
    for ax, effect in zip(axes, effects, strict=True):
        x = np.arange(len(effect.levels))
        y = [100 * lv.ci.mean for lv in effect.levels]
        below = [
            100 * (lv.ci.mean - lv.ci.low) if lv.ci.low is not None else 0 for lv in effect.levels
        ]
        above = [
            100 * (lv.ci.high - lv.ci.mean) if lv.ci.high is not None else 0 for lv in effect.levels
        ]
        ax.errorbar(x, y, yerr=[below, above], fmt="o-", color="tab:blue", capsize=4)
        if overall is not None:
            ax.axhline(overall, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_xticks(x, [_shown_level(lv.level) for lv in effect.levels], fontsize=8)
        ax.set_xlim(-0.5, len(effect.levels) - 0.5)
        ax.set_title(effect.factor, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.ticklabel_format(axis="y", useOffset=False)
    if axes:
        axes[0].set_ylabel("test accuracy % (mean, 95 % CI)")
        low = min(ax.get_ylim()[0] for ax in axes)
        high = max(ax.get_ylim()[1] for ax in axes)
        for ax in axes:
            ax.set_ylim(low, high)
    return fig


@plain_text
def draw_parallel_coordinates(data: ParallelData) -> Figure:
    """One line per model through its level of each factor and on to its test accuracy,
    coloured by accuracy; models near chance dashed grey, below the accuracy scale."""
    fig = Figure(figsize=(2.0 * (len(data.factors) + 1) + 1.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    learned = [a for a, c in zip(data.accuracy, data.chance, strict=True) if not c]
    low, high = (min(learned), max(learned)) if learned else (0.0, 1.0)
    span = max(high - low, 1e-9)
    cmap = matplotlib.colormaps["viridis"]
    xs = np.arange(len(data.factors) + 1)
    order = np.argsort(data.accuracy)  # the best drawn last, on top
    for i in order:
        levels = [pos / max(1, len(data.levels[f]) - 1) for f, pos in enumerate(data.positions[i])]
        if data.chance[i]:
            ys = [*levels, -0.08]
            ax.plot(xs, ys, color="0.6", linestyle="--", linewidth=0.8, alpha=0.7)
        else:
            share = (data.accuracy[i] - low) / span
            ax.plot(xs, [*levels, share], color=cmap(share), linewidth=1.2, alpha=0.8)
    for x in xs:
        ax.axvline(x, color="black", linewidth=0.8)
    for f, levels in enumerate(data.levels):
        for j, level in enumerate(levels):
            y = j / max(1, len(levels) - 1)
            ax.text(
                xs[f] - 0.04,
                y,
                level,
                ha="right",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8},
            )
    for share in np.linspace(0, 1, 5):
        ax.text(
            xs[-1] + 0.04,
            share,
            f"{100 * (low + share * span):.2f} %",
            ha="left",
            va="center",
            fontsize=8,
        )
    if any(data.chance):
        ax.text(
            xs[-1] + 0.04, -0.08, "near chance", ha="left", va="center", fontsize=8, color="0.4"
        )
    ax.set_xticks(xs, [*data.factors, "test accuracy"], fontsize=9)
    ax.set_xlim(-0.45, xs[-1] + 0.45)
    ax.set_ylim(-0.14, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


@plain_text
def draw_confusion(data: ConfusionData) -> Figure:
    fig = Figure(figsize=(6.4, 5.4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    # Colour by log count: the diagonal's thousands would otherwise hide the errors.
    sns.heatmap(
        np.log10(data.counts + 1),
        annot=data.counts,
        fmt="d",
        cbar=False,
        ax=ax,
        cmap="Blues",
        annot_kws={"fontsize": 7},
        square=True,
        xticklabels=data.class_names or "auto",
        yticklabels=data.class_names or "auto",
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    runs = f", summed over {data.runs} runs" if data.runs > 1 else ""
    ax.set_title(f"{data.model}: confusion matrix{runs}", fontsize=10)
    return fig


@plain_text
def draw_misclassified(grid: MisclassifiedGrid, images: np.ndarray) -> Figure:
    """The wrong test digits with true and predicted labels (and how many runs erred)."""
    n = max(1, len(grid.items))
    columns = min(10, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(1.25 * columns, 1.45 * rows + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, item in zip(axes, grid.items, strict=False):
        ax.imshow(_as_2d(images[item.index]), cmap="gray_r", interpolation="nearest")
        runs = f" ({item.wrong_in}/{grid.runs})" if grid.runs > 1 else ""
        true, predicted = grid.name(item.true), grid.name(item.predicted)
        ax.set_title(f"true {true}, pred {predicted}{runs}", fontsize=7)
    wrong = (
        "misclassified" if grid.runs == 1 else f"misclassified in at least one of {grid.runs} runs"
    )
    fig.suptitle(
        f"{grid.model}: {grid.total:,} test images {wrong}; {len(grid.items)} shown, "
        "the most often wrong first",
        fontsize=10,
    )
    return fig


def _as_2d(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) or (H, W) grey, (H, W, 3) colour: what imshow takes."""
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotFile:
    """A drawn plot: where its PNG and SVG are, what it shows, and the PNG itself (the report
    embeds these bytes, not the file, which another process may be rewriting)."""

    stem: str
    title: str
    png: Path
    svg: Path
    png_bytes: bytes = field(repr=False)


@dataclass(frozen=True)
class FigureJob:
    """A plot still to be drawn: `draw(*data)` saved as STEM.png and STEM.svg. Module-level
    draw functions and frozen data pickle, so a worker process can draw it."""

    stem: str
    title: str
    draw: Callable[..., Figure]
    data: tuple[Any, ...]


def save_figures(
    jobs: Sequence[FigureJob], directory: Path, *, processes: int = 1
) -> tuple[PlotFile, ...]:
    """Draw and write every job's figure, in up to `processes` spawned worker processes.

    Drawing is pure Python (matplotlib's layout and text) and one figure cannot use two
    cores, so a report's figures are drawn side by side. Workers are spawned (safe beside
    torch's threads); as with any spawned process, a script that asks for processes > 1 must
    call this under `if __name__ == "__main__":`. The files are written here, in order.
    """
    workers = min(processes, len(jobs))
    drawn = None
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                drawn = list(pool.map(draw_and_render, jobs))
        except BrokenProcessPool:
            log.warning(
                "the report's drawing processes died (a script that asks for processes > 1 "
                "needs `if __name__ == '__main__':`); drawing the plots in this process"
            )
    if drawn is None:
        drawn = [draw_and_render(job) for job in jobs]
    return tuple(
        _write_plot(directory, job.stem, job.title, png, svg)
        for job, (png, svg) in zip(jobs, drawn, strict=True)
    )


def draw_and_render(job: FigureJob) -> tuple[bytes, bytes]:
    """The job's figure as PNG, then SVG with the layout the PNG's render computed: constrained
    layout is most of a render's time, and running it again for the SVG made a 13-model report
    22 % slower."""
    with warnings.catch_warnings():
        # A model named with an emoji draws as a box where the font lacks the glyph; matplotlib
        # would warn with its own source path on the user's terminal, once per figure.
        warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from", UserWarning)
        fig = job.draw(*job.data)
        png = render(fig, "png")
        fig.set_layout_engine("none")
        return png, render(fig, "svg")


def _write_plot(directory: Path, stem: str, title: str, png: bytes, svg: bytes) -> PlotFile:
    """DIR/STEM.png and DIR/STEM.svg, each whole or not at all."""
    png_path = write_atomic(directory / f"{stem}.png", png)
    svg_path = write_atomic(directory / f"{stem}.svg", svg)
    return PlotFile(stem, title, png_path, svg_path, png)


def render(fig: Figure, file_format: str) -> bytes:
    buffer = io.BytesIO()
    # A fixed hash salt and no date make the SVG repeatable, so rebuilt reports diff cleanly.
    with matplotlib.rc_context({"svg.hashsalt": "cnnlab"}):
        metadata = {"Date": None} if file_format == "svg" else None
        fig.savefig(buffer, format=file_format, metadata=metadata)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> Path:
    """Write through a temporary file and a rename, so a reader (or a second `cnnlab report`
    of the same study) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:  # a full disk or Ctrl-C: leave no half-written file behind
        partial.unlink(missing_ok=True)
        raise
    return path
