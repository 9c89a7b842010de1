"""Schedules and callbacks decide as Keras does: values computed with Keras 3.x (torch backend)
in the benchmark environment (/work/kerasenv, keras.optimizers.schedules and keras.callbacks)
and pinned here. Keras computes in float32, hence the relative tolerance."""

from __future__ import annotations

import pytest

from cnnlab.callbacks import EarlyStopping, ReduceLROnPlateau, learning_rate_at
from cnnlab.spec.recipes import resolve_callback, resolve_schedule

STEPS = [0, 1, 50, 100, 101, 150, 199, 200, 201, 500, 999, 1000, 1001, 1500, 2500]
SCHEDULES = {
    "exp": {
        "name": "ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 100,
        "decay_rate": 0.5,
    },
    "exp_stair": {
        "name": "ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 100,
        "decay_rate": 0.5,
        "staircase": True,
    },
    "piece": {
        "name": "PiecewiseConstantDecay",
        "boundaries": [100, 200],
        "values": [1.0, 0.5, 0.1],
    },
    "cos": {"name": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 1000, "alpha": 0.1},
    "cos_warm": {
        "name": "CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 1000,
        "warmup_target": 0.1,
        "warmup_steps": 200,
    },
    "poly": {
        "name": "PolynomialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 1000,
        "end_learning_rate": 0.001,
        "power": 2.0,
    },
    "poly_cycle": {
        "name": "PolynomialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 1000,
        "end_learning_rate": 0.001,
        "cycle": True,
    },
}
KERAS = {
    "exp": [
        0.10000000149011612,
        0.09930925071239471,
        0.0707106813788414,
        0.05000000074505806,
        0.04965462535619736,
        0.0353553406894207,
        0.025173887610435486,
        0.02500000037252903,
        0.02482731267809868,
        0.0031250000465661287,
        9.833552030613646e-05,
        9.765625145519152e-05,
        9.698167559690773e-05,
        3.051757857974735e-06,
        2.9802322831784522e-09,
    ],
    "exp_stair": [
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
        0.05000000074505806,
        0.05000000074505806,
        0.05000000074505806,
        0.05000000074505806,
        0.02500000037252903,
        0.02500000037252903,
        0.0031250000465661287,
        0.00019531250291038305,
        9.765625145519152e-05,
        9.765625145519152e-05,
        3.051757857974735e-06,
        2.9802322831784522e-09,
    ],
    "piece": [
        1.0,
        1.0,
        1.0,
        1.0,
        0.5,
        0.5,
        0.5,
        0.5,
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
        0.10000000149011612,
    ],
    "cos": [
        0.10000000149011612,
        0.09999977797269821,
        0.09944597631692886,
        0.09779754281044006,
        0.09775364398956299,
        0.09509529173374176,
        0.09148868173360825,
        0.09140576422214508,
        0.09132248908281326,
        0.05499999597668648,
        0.01000022329390049,
        0.010000000707805157,
        0.010000000707805157,
        0.010000000707805157,
        0.010000000707805157,
    ],
    "cos_warm": [
        0.0,
        0.0005000000237487257,
        0.02500000037252903,
        0.05000000074505806,
        0.05050000175833702,
        0.07500000298023224,
        0.09950000047683716,
        0.10000000149011612,
        0.09999974817037582,
        0.07938926666975021,
        0.009641671553254128,
        0.009549150243401527,
        0.009457019157707691,
        0.0,
        0.0,
    ],
    "poly": [
        0.10000000149011612,
        0.09980210661888123,
        0.09034749865531921,
        0.08118999749422073,
        0.08101189881563187,
        0.07252750545740128,
        0.064518503844738,
        0.06436000764369965,
        0.0642017051577568,
        0.025750000029802322,
        0.0010000990005210042,
        0.0010000000474974513,
        0.0010000000474974513,
        0.0010000000474974513,
        0.0010000000474974513,
    ],
    "poly_cycle": [
        0.10000000149011612,
        0.09990100562572479,
        0.09504999965429306,
        0.09009999781847,
        0.09000100195407867,
        0.08515000343322754,
        0.0802990049123764,
        0.08020000159740448,
        0.08010100573301315,
        0.05049999803304672,
        0.0010989988222718239,
        0.0010000000474974513,
        0.05045049637556076,
        0.025750000029802322,
        0.017500001937150955,
    ],
}


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_each_schedule_gives_keras_rates_at_chosen_steps(case):
    schedule = resolve_schedule(SCHEDULES[case], ("learning_rate_schedule",))
    ours = [learning_rate_at(schedule, step) for step in STEPS]
    assert ours == pytest.approx(KERAS[case], rel=2e-6, abs=1e-9)


# CosineDecay's warm-up as Keras 3 defines it (learning_rate_schedule.py, CosineDecay.__call__):
# linear from initial_learning_rate to warmup_target over warmup_steps, then the cosine from
# warmup_target down to alpha * warmup_target over decay_steps, the step capped at
# warmup_steps + decay_steps. Values from Keras 3.15.1 (torch backend) in /work/kerasenv; the
# steps cross the warm-up's end (200), the decay's end (1200) and go past it.
WARMUP_STEPS = [*STEPS[:13], 1199, 1200, 1201, 2500]  # 0 ... 1001, then the decay's end
WARMUPS = {
    "from_a_rate_with_alpha": (
        {"initial_learning_rate": 0.01, "alpha": 0.1, "warmup_target": 0.1, "warmup_steps": 200},
        [
            0.009999999776482582,
            0.010449999943375587,
            0.032499998807907104,
            0.054999999701976776,
            0.05544999986886978,
            0.07750000059604645,
            0.09955000132322311,
            0.10000000149011612,
            0.09999977797269821,
            0.08145033568143845,
            0.018677502870559692,
            0.01859423518180847,
            0.018511315807700157,
            0.01000022329390049,
            0.010000000707805157,
            0.010000000707805157,
            0.010000000707805157,
        ],
    ),
    "down_to_a_lower_target": (
        {"initial_learning_rate": 0.05, "alpha": 0.2, "warmup_target": 0.01, "warmup_steps": 100},
        [
            0.05000000074505806,
            0.04960000142455101,
            0.030000001192092896,
            0.009999999776482582,
            0.00999997928738594,
            0.009950753301382065,
            0.009808090515434742,
            0.009804225526750088,
            0.009800323285162449,
            0.007236067671328783,
            0.002199675887823105,
            0.0021957741118967533,
            0.002191909123212099,
            0.0020000000949949026,
            0.0020000000949949026,
            0.0020000000949949026,
            0.0020000000949949026,
        ],
    ),
    # warmup_target without warm-up steps: the decay starts from warmup_target, not the
    # initial rate.
    "target_without_steps": (
        {"initial_learning_rate": 0.05, "alpha": 0.2, "warmup_target": 0.1},
        [
            0.10000000149011612,
            0.09999980032444,
            0.09950753301382065,
            0.09804226458072662,
            0.09800323843955994,
            0.09564026445150375,
            0.09243438392877579,
            0.09236067533493042,
            0.09228665381669998,
            0.05999999865889549,
            0.020000198855996132,
            0.020000001415610313,
            0.020000001415610313,
            0.020000001415610313,
            0.020000001415610313,
            0.020000001415610313,
            0.020000001415610313,
        ],
    ),
}


@pytest.mark.parametrize("case", list(WARMUPS))
def test_cosine_decay_warms_up_and_decays_from_warmup_target_as_keras_does(case):
    arguments, keras = WARMUPS[case]
    schedule = resolve_schedule(
        {"name": "CosineDecay", "decay_steps": 1000, **arguments}, ("learning_rate_schedule",)
    )
    ours = [learning_rate_at(schedule, step) for step in WARMUP_STEPS]
    assert ours == pytest.approx(keras, rel=2e-6, abs=1e-9)


# (loss, val_loss, accuracy, val_accuracy) per epoch, fed to Keras's EarlyStopping and ours.
HISTORY = [
    (1.0, 0.9, 0.5, 0.6),
    (0.8, 0.7, 0.6, 0.7),
    (0.7, 0.72, 0.65, 0.69),
    (0.6, 0.71, 0.7, 0.72),
    (0.5, 0.69, 0.75, 0.71),
    (0.45, 0.75, 0.8, 0.70),
    (0.4, 0.8, 0.82, 0.69),
    (0.35, 0.85, 0.85, 0.68),
]


def logs(row):
    return dict(zip(("loss", "val_loss", "accuracy", "val_accuracy"), row, strict=True))


def feed_early_stopping(arguments):
    """(stopped_epoch, best_epoch, last epoch run) as Keras reports them (0-based)."""
    callback = EarlyStopping.from_spec(resolve_callback(arguments, "EarlyStopping", ("e",)))
    for epoch, row in enumerate(HISTORY):
        _, stop = callback.on_epoch_end(epoch, logs(row))
        if stop:
            break
    return callback.stopped_epoch, callback.best_epoch, epoch


@pytest.mark.parametrize(
    ("arguments", "keras"),
    [
        ({"patience": 2}, (3, 1, 3)),
        ({"patience": 0}, (2, 1, 2)),
        ({"patience": 2, "min_delta": 0.015}, (3, 1, 3)),
        ({"monitor": "val_accuracy", "patience": 1}, (2, 1, 2)),
        ({"patience": 1, "baseline": 0.65}, (2, 1, 2)),
        ({"patience": 1, "start_from_epoch": 3}, (5, 4, 5)),
        ({"monitor": "loss", "patience": 0}, (0, 7, 7)),
        ({"patience": 2, "restore_best_weights": True}, (3, 1, 3)),
        ({"monitor": "val_accuracy", "mode": "min", "patience": 1}, (1, 0, 1)),
    ],
)
def test_early_stopping_stops_where_keras_stops_for_the_same_history(arguments, keras):
    assert feed_early_stopping(arguments) == keras


@pytest.mark.parametrize(
    ("arguments", "keras"),
    [
        (
            {"patience": 1, "factor": 0.5},
            [
                0.10000000149011612,
                0.10000000149011612,
                0.05000000074505806,
                0.02500000037252903,
                0.02500000037252903,
                0.012500000186264515,
                0.0062500000931322575,
                0.0031250000465661287,
            ],
        ),
        (
            {"patience": 1, "factor": 0.5, "cooldown": 1},
            [
                0.10000000149011612,
                0.10000000149011612,
                0.05000000074505806,
                0.02500000037252903,
                0.02500000037252903,
                0.012500000186264515,
                0.0062500000931322575,
                0.0031250000465661287,
            ],
        ),
        (
            {"patience": 0, "factor": 0.5, "min_lr": 0.03},
            [
                0.10000000149011612,
                0.10000000149011612,
                0.05000000074505806,
                0.029999999329447746,
                0.029999999329447746,
                0.029999999329447746,
                0.029999999329447746,
                0.029999999329447746,
            ],
        ),
        (
            {"monitor": "val_accuracy", "patience": 1, "factor": 0.5, "min_delta": 0.0},
            [
                0.10000000149011612,
                0.10000000149011612,
                0.05000000074505806,
                0.05000000074505806,
                0.02500000037252903,
                0.012500000186264515,
                0.0062500000931322575,
                0.0031250000465661287,
            ],
        ),
    ],
)
def test_reduce_lr_on_plateau_sets_the_rates_keras_sets(arguments, keras):
    callback = ReduceLROnPlateau.from_spec(resolve_callback(arguments, "ReduceLROnPlateau", ("r",)))
    rate, rates = 0.1, []
    for row in HISTORY:
        rate = callback.on_epoch_end(logs(row), rate)
        rates.append(rate)
    assert rates == pytest.approx(keras, rel=1e-6)
