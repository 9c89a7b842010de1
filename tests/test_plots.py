"""Each plot's data from a pure function, checked by hand; then drawn and saved as PNG and SVG."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.integrate import trapezoid

from cnnlab import plots, slugs
from cnnlab.build import build_model
from cnnlab.spec import load_model
from cnnlab.stats import mean_ci
from test_table import epoch, record

# -- learning curves ---------------------------------------------------------------------------


def test_a_band_is_the_mean_and_range_over_the_runs_that_reached_each_epoch():
    band = plots.metric_band([{1: 0.5, 2: 0.3}, {1: 0.7, 2: 0.1, 3: 0.05}, {1: math.nan}])
    assert band.epochs == (1, 2, 3)
    assert band.mean == pytest.approx((0.6, 0.2, 0.05))
    assert band.low == pytest.approx((0.5, 0.1, 0.05))
    assert band.high == pytest.approx((0.7, 0.3, 0.05))
    assert band.seeds == (2, 2, 1)  # the NaN of a diverging run is left out


def test_model_curves_use_finished_and_running_runs_not_failed_ones():
    runs = [
        record("m", 0, spec="seed/model-1", epochs=(epoch(1, loss=0.4), epoch(2, loss=0.2))),
        record("m", 1, spec="seed/model-1", status="running", epochs=(epoch(1, loss=0.6),)),
        record("m", 2, spec="seed/model-1", status="diverged", epochs=(epoch(1, loss=9.0),)),
        record("other", 0, spec="seed/model-1", epochs=(epoch(1, loss=5.0),)),
    ]
    curves = plots.model_curves("m", runs, "loss")
    assert curves.train.epochs == (1, 2)
    assert curves.train.mean == pytest.approx((0.5, 0.2))
    assert curves.validation is not None and curves.validation.mean == pytest.approx((0.08, 0.08))


def test_runs_without_validation_have_no_validation_curve():
    runs = [
        record("m", 0, spec="seed/model-1", epochs=(epoch(1, val_loss=None, val_accuracy=None),))
    ]
    assert plots.model_curves("m", runs, "accuracy").validation is None
    with pytest.raises(ValueError, match="metric must be"):
        plots.model_curves("m", runs, "f1")


def early_stopped(seed: int, val_losses: list[float], *, stopped=None, best=None, restore=True):
    """A finished run of seed/model-1 under EarlyStopping, with these validation losses."""
    epochs = tuple(
        epoch(i + 1, loss=1.0 / (i + 1), val_loss=v, learning_rate=0.1 / 2**i)
        for i, v in enumerate(val_losses)
    )
    run = record("m", seed, spec="seed/model-1", epochs=epochs, stopped_epoch=stopped)
    early = {"name": "EarlyStopping", "monitor": "val_loss", "restore_best_weights": restore}
    training = {**run.training, "early_stopping": early}
    return dataclasses.replace(run, best_epoch=best, training=training)


def test_curves_mark_each_runs_stopped_epoch_and_kept_epoch_at_its_own_value():
    runs = [
        early_stopped(0, [0.5, 0.3, 0.4], stopped=3, best=2),
        early_stopped(1, [0.6, 0.35, 0.3, 0.32], best=3),  # ran every epoch, kept its best
        early_stopped(2, [0.5, 0.4], stopped=2, best=1, restore=False),  # tested as it ended
    ]
    curves = plots.model_curves("m", runs, "loss")
    assert curves.stopped == (plots.RunMark(0, 3, 0.4), plots.RunMark(2, 2, 0.4))
    assert curves.kept == (plots.RunMark(0, 2, 0.3), plots.RunMark(1, 3, 0.3))
    train_marks = plots.model_curves("m", runs, "accuracy").kept
    assert [m.value for m in train_marks] == [0.98, 0.98]  # the validation accuracy there
    failed = dataclasses.replace(runs[0], status="failed")  # its stopped_epoch: where it broke
    assert plots.stopped_epoch(failed) is None and plots.kept_epoch(failed) is None


def test_a_band_past_a_runs_stop_is_over_fewer_seeds_and_drawn_faint():
    runs = [early_stopped(0, [0.5, 0.3], stopped=2, best=2), early_stopped(1, [0.6, 0.4, 0.2])]
    curves = plots.model_curves("m", runs, "loss")
    assert curves.validation.seeds == (2, 2, 1)  # the stopped run does not go on
    assert curves.validation.mean == pytest.approx((0.55, 0.35, 0.2))
    assert plots.fewer_seeds_from(curves.validation) == 2
    (panel,) = [ax for ax in plots.draw_model_curves([curves]).axes if ax.get_visible()]
    solid = [line for line in panel.lines if line.get_label() == "validation"]
    faint = [line for line in panel.lines if line.get_alpha() == plots.FEWER_SEEDS_ALPHA]
    assert list(solid[0].get_xdata()) == [1, 2]  # every seed's epochs only
    assert [list(line.get_xdata()) for line in faint] == [[2, 3], [2, 3]]  # train, validation


def test_the_marks_are_drawn_with_legend_entries_only_when_some_run_has_them():
    runs = [early_stopped(0, [0.5, 0.3, 0.4], stopped=3, best=2), early_stopped(1, [0.6, 0.4])]
    curves = plots.curves_by_model(runs, ["m"], "loss")
    fig = plots.draw_model_curves(curves)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["train", "validation", "stopped early", "weights kept", "fewer seeds"]
    (panel,) = [ax for ax in fig.axes if ax.get_visible()]
    crosses = [line for line in panel.lines if line.get_marker() == "X"]
    stars = [line for line in panel.lines if line.get_marker() == "*"]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in crosses] == [([3], [0.4])]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in stars] == [([2], [0.3])]
    overview = plots.draw_validation_overview(curves).axes[0]
    assert [t.get_text() for t in overview.get_legend().get_texts()] == [
        "m",
        "stopped early",
        "weights kept",
        "fewer seeds",
    ]
    assert any(line.get_marker() == "X" for line in overview.lines)
    plain = plots.curves_by_model([record("m", 0, spec="seed/model-1")], ["m"], "loss")
    assert [t.get_text() for t in plots.draw_model_curves(plain).legends[0].get_texts()] == [
        "train",
        "validation",
    ]


# -- learning rates ------------------------------------------------------------------------------


def test_learning_rates_are_one_line_per_seed_and_change_only_where_some_rate_moved():
    runs = [early_stopped(0, [0.5, 0.3, 0.4], stopped=3), early_stopped(1, [0.6, 0.4])]
    (rates,) = plots.rates_by_model(runs, ["m"])
    assert rates.seeds == (0, 1) and rates.epochs == ((1, 2, 3), (1, 2))
    assert rates.rates == ((0.1, 0.05, 0.025), (0.1, 0.05)) and rates.changes
    rate_one = (epoch(1, learning_rate=1.0), epoch(2, learning_rate=1.0))
    steady = [record("a", 0, spec="seed/model-1", epochs=rate_one)]
    steady.append(record("b", 0, spec="seed/model-1", epochs=(epoch(1, learning_rate=0.001),)))
    constant = plots.rates_by_model(steady, ["a", "b"])
    assert not any(r.changes for r in constant)
    assert plots.constant_rates(constant) == {1.0: 1, 0.001: 1}
    # Epochs stored before rates were recorded have none.
    unrecorded = plots.rates_by_model([record("a", 0, spec="seed/model-1")], ["a"])
    assert unrecorded[0].rates == ()


def test_learning_rates_use_a_log_axis_only_for_positive_rates_spanning_a_decade():
    decaying = plots.ModelRates("m", (0,), ((1, 2, 3),), ((0.1, 0.01, 0.001),))
    (ax,) = plots.draw_learning_rates([decaying]).axes
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] < 0.001 < 0.1 < ax.get_ylim()[1]
    halving = plots.ModelRates("m", (0,), ((1, 2),), ((0.1, 0.05),))
    assert plots.draw_learning_rates([halving]).axes[0].get_yscale() == "linear"
    to_zero = plots.ModelRates("m", (0,), ((1, 2),), ((0.1, 0.0),))  # CosineDecay's end
    assert plots.draw_learning_rates([to_zero]).axes[0].get_yscale() == "linear"


# -- Pareto front --------------------------------------------------------------------------------


def test_the_pareto_front_holds_the_models_no_other_beats_on_cost_and_accuracy():
    models = [
        ("small", 1_000, mean_ci([0.95])),
        ("mid", 10_000, mean_ci([0.99])),
        ("big-worse", 50_000, mean_ci([0.98])),  # dearer than mid and less accurate
        ("big-best", 100_000, mean_ci([0.995])),
        ("same-as-mid", 10_000, mean_ci([0.99])),  # a tie dominates neither
        ("unknown cost", None, mean_ci([0.999])),
    ]
    data = plots.pareto_front("parameters", models)
    assert [p.model for p in data.front] == ["small", "mid", "same-as-mid", "big-best"]
    assert {p.model for p in data.points} == {m for m, c, _ in models if c is not None}


# -- trained weights -----------------------------------------------------------------------------


def test_weighted_layers_are_named_as_in_the_checkpoint_in_layer_order():
    spec = load_model("seed/model-10")  # convolutions with batch normalization between them
    state = build_model(spec, (28, 28, 1), 10).state_dict()
    sorted_state = dict(sorted(state.items()))  # safetensors files list tensors by name
    names = plots.weighted_layer_names(spec.layers, sorted_state)
    assert names[:4] == ["conv2d", "conv2d_1", "batch_normalization", "conv2d_2"]
    assert names[-2:] == ["dense", "dense_1"]
    assert len(names) == 7 + 5 + 2  # 7 Conv2D, 5 BatchNormalization, 2 Dense


def test_a_violin_is_a_density_over_the_weights_range_with_their_quartiles():
    values = np.random.default_rng(1).normal(0.0, 0.05, size=(64, 32, 3, 3))
    layer = plots.layer_weights("conv2d_1", values)
    assert (layer.kind, layer.shape, layer.count) == ("kernel", (64, 32, 3, 3), 18_432)
    assert layer.grid[0] == values.min() and layer.grid[-1] == values.max()
    assert trapezoid(layer.density, layer.grid) == pytest.approx(1.0, abs=0.02)
    assert layer.quartiles == pytest.approx(tuple(np.percentile(values, [25, 50, 75])))
    assert layer.std == pytest.approx(values.std())


def test_a_layer_of_equal_weights_is_a_single_value_not_a_failed_kde():
    layer = plots.layer_weights("batch_normalization", np.ones(42))
    assert layer.kind == "gamma"
    assert layer.grid.tolist() == [1.0] and layer.quartiles == (1.0, 1.0, 1.0)


def test_violins_of_a_real_model_cover_every_weighted_layer():
    spec = load_model("seed/model-1")
    state = {k: v.numpy() for k, v in build_model(spec, (28, 28, 1), 10).state_dict().items()}
    violins = plots.weight_violins(spec.name, 0, spec.layers, state)
    assert [layer.layer for layer in violins.layers] == [
        "conv2d",
        "conv2d_1",
        "conv2d_2",
        "dense",
        "dense_1",
    ]
    assert sum(layer.count for layer in violins.layers) == 79_454 - (32 + 64 + 84 + 128 + 10)
    fig = plots.draw_weight_violins(violins)
    labels = [ax.get_xlabel().split("\n")[0] for ax in fig.axes if ax.get_visible()]
    assert labels == ["conv2d", "conv2d_1", "conv2d_2", "dense", "dense_1"]


# -- the best model's errors ------------------------------------------------------------------


def test_confusion_counts_sum_every_runs_true_predicted_pairs():
    labels = np.array([0, 1, 2, 2])
    data = plots.confusion_counts("m", labels, [np.array([0, 1, 2, 1]), np.array([0, 2, 2, 2])], 3)
    assert data.counts.tolist() == [[2, 0, 0], [0, 1, 1], [0, 1, 3]]
    assert data.accuracy == pytest.approx(6 / 8) and data.runs == 2
    with pytest.raises(ValueError, match="do not answer 4 labels"):
        plots.confusion_counts("m", labels, [np.array([0, 1])], 3)


def test_misclassified_digits_come_most_often_wrong_first_with_the_commonest_wrong_class():
    labels = np.array([3, 5, 7, 1, 0])
    runs = [np.array([3, 6, 1, 1, 9]), np.array([3, 6, 7, 1, 8]), np.array([3, 8, 7, 1, 8])]
    grid = plots.misclassified_digits("m", labels, runs, limit=2)
    assert [(i.index, i.true, i.predicted, i.wrong_in) for i in grid.items] == [
        (1, 5, 6, 3),
        (4, 0, 8, 3),
    ]
    assert (grid.total, grid.runs) == (3, 3)  # image 2 is wrong once, cut by the limit


# -- drawing and saving -------------------------------------------------------------------------


def test_every_plot_draws_and_saves_as_png_and_svg(tmp_path):
    runs = [
        record(f"seed/model-{k}", s, accuracy=0.9 + k / 100 + s / 1000)
        for k in (1, 2)
        for s in (0, 1)
    ]
    curves = plots.curves_by_model(runs, ["seed/model-1", "seed/model-2"], "loss")
    pareto = plots.pareto_front(
        "parameters", [("a", 10, mean_ci([0.9, 0.91])), ("b", 20, mean_ci([0.95]))]
    )
    labels = np.arange(20) % 10
    confusion = plots.confusion_counts("a", labels, [np.roll(labels, 1)], 10)
    digits = plots.misclassified_digits("a", labels, [np.roll(labels, 1)])
    images = np.zeros((20, 28, 28, 1), dtype=np.uint8)
    jobs = [
        plots.FigureJob("curves", "c", plots.draw_model_curves, (curves,)),
        plots.FigureJob("overview", "o", plots.draw_validation_overview, (curves,)),
        plots.FigureJob("pareto", "p", plots.draw_pareto, ([pareto], 10)),
        plots.FigureJob("confusion", "m", plots.draw_confusion, (confusion,)),
        plots.FigureJob("digits", "d", plots.draw_misclassified, (digits, images)),
    ]
    saved = plots.save_figures(jobs, tmp_path / "plots")
    assert [s.stem for s in saved] == [job.stem for job in jobs]
    for plot in saved:
        assert plot.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot.png.read_bytes() == plot.png_bytes
        assert b"<svg" in plot.svg.read_bytes()[:1000]


def test_plot_file_names_are_safe_for_any_model_name():
    assert slugs.slug("seed/model-1") == "seed-model-1"
    assert slugs.slug("<script>alert(1)</script>") == "script-alert-1-script"
    assert slugs.slug("///") == "model"


def test_model_names_are_drawn_as_plain_text_never_as_tex(tmp_path):
    name = r"$\frac{$ 50% & <b>"  # would stop matplotlib's mathtext parser
    curves = plots.curves_by_model([record(name, 0, spec="seed/model-1")], [name], "loss")
    job = plots.FigureJob("tex", "tex", plots.draw_model_curves, (curves,))
    (saved,) = plots.save_figures([job], tmp_path)
    assert saved.png.stat().st_size > 0


def test_a_model_without_epochs_gets_a_panel_that_says_so_and_no_overview_line():
    waiting = dataclasses.replace(
        record("waits", 0, spec="seed/model-1", status="pending"), epochs=()
    )
    runs = [record("ran", 0, spec="seed/model-1"), waiting]
    curves = plots.curves_by_model(runs, ["ran", "waits"], "loss")
    panels = plots.draw_model_curves(curves).axes
    assert [t.get_text() for t in panels[1].texts] == [
        "no epochs to show:\nnot started, failed or diverged"
    ]
    overview = plots.draw_validation_overview(curves).axes[0]
    assert [t.get_text() for t in overview.get_legend().get_texts()] == ["ran"]


# -- scale: shared axes, chance, labels, grids ------------------------------------------------


def stuck_and_learning_curves(metric: str) -> tuple[plots.ModelCurves, ...]:
    """A model stuck at the most common digit (11.22 % to 11.35 %) beside one that learns."""
    stuck = plots.metric_band([{1: 0.1122, 2: 0.1130, 3: 0.1135}])
    learns = plots.metric_band([{1: 0.90, 2: 0.97, 3: 0.985}])
    if metric == "loss":
        stuck = plots.metric_band([{1: 2.3015, 2: 2.3012, 3: 2.3011}])
        learns = plots.metric_band([{1: 0.35, 2: 0.10, 3: 0.05}])
    return (
        plots.ModelCurves("stuck", metric, stuck, None),
        plots.ModelCurves("learns", metric, learns, None),
    )


def test_every_panel_shares_one_y_range_that_shows_a_stuck_model_at_chance():
    curves = stuck_and_learning_curves("accuracy")
    shared = plots.shared_range(curves, 10)
    assert shared.chance == pytest.approx(0.1) and shared.low < 0.1 and shared.high >= 1.0
    panels = plots.draw_model_curves(curves, shared).axes
    assert panels[0].get_ylim() == panels[1].get_ylim() == (shared.low, shared.high)
    chance_lines = [line for line in panels[0].lines if list(line.get_ydata()) == [0.1, 0.1]]
    assert len(chance_lines) == 1
    loss = plots.shared_range(stuck_and_learning_curves("loss"), 10)
    assert loss.low == 0 and loss.chance == pytest.approx(math.log(10))
    assert loss.chance < loss.high


def test_a_study_far_above_chance_keeps_its_resolution_and_draws_no_chance_line():
    learns = plots.metric_band([{1: 0.97, 2: 0.985}])
    shared = plots.shared_range([plots.ModelCurves("a", "accuracy", learns, None)], 10)
    assert shared.low > 0.9
    panel = plots.draw_model_curves([plots.ModelCurves("a", "accuracy", learns, None)], shared)
    assert not [line for line in panel.axes[0].lines if list(line.get_ydata()) == [0.1, 0.1]]


def many_models(n: int, *, stuck: int = 0) -> plots.ParetoData:
    rng = np.random.default_rng(0)
    models = [
        (f"model-{i:03d}", float(rng.uniform(1e4, 1e6)), mean_ci(rng.normal(0.985, 0.004, 2)))
        for i in range(n)
    ]
    models += [(f"stuck-{i}", 5e4 * (i + 1), mean_ci([0.1135, 0.1135])) for i in range(stuck)]
    return plots.pareto_front("parameters", models)


def test_cost_plot_labels_never_overlap_even_for_200_models():
    fig = plots.draw_pareto([many_models(200)])
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert 5 <= len(boxes) <= plots.MAX_POINT_LABELS
    inside = ax.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])


def test_models_at_chance_do_not_squash_the_cost_axis():
    fig = plots.draw_pareto([many_models(12, stuck=2)], 10)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert low > 90 and high <= 100.5  # the learning models' range, in percent
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2 near chance (off the scale)" in legend
    assert not any(t.get_text().startswith("stuck") for t in ax.texts)


def test_parallel_coordinates_place_each_model_at_its_levels_in_order():
    rows = [
        ("d3-k5", {"depth": 3, "kernel": 5, "bn": True}, 0.99),
        ("d1-k3", {"depth": 1, "kernel": 3, "bn": False}, 0.97),
        ("d10-k3", {"depth": 10, "kernel": 3, "bn": False}, 0.1135),
        ("no-factors", {}, 0.98),
    ]
    data = plots.parallel_coordinates(rows, 10)
    assert data.factors == ("depth", "kernel", "bn")
    assert data.levels == (("1", "3", "10"), ("3", "5"), ("false", "true"))  # sorted as numbers
    assert data.models == ("d3-k5", "d1-k3", "d10-k3")
    assert data.positions == ((1, 1, 1), (0, 0, 0), (2, 0, 0))
    assert data.chance == (False, False, True)
    fig = plots.draw_parallel_coordinates(data)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["depth", "kernel", "bn", "test accuracy"]


def test_file_names_are_unique_per_model_even_where_slugs_clash():
    names = ["a/b", "a-b", "a?b", "A-B", "seed/model-7", "x y"]
    stems = slugs.unique_slugs(names)
    assert len({stem.lower() for stem in stems.values()}) == len(names)
    assert stems["seed/model-7"] == "seed-model-7" and stems["x y"] == "x-y"
    assert stems == slugs.unique_slugs(list(reversed(names)))  # a model keeps its file name
