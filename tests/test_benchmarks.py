"""The benchmarks' own logic that their figures rest on (the timings themselves are not tested)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def study_time():
    sys.path.insert(0, str(BENCHMARKS))  # study_time imports its sibling epoch_time
    try:
        spec = importlib.util.spec_from_file_location("study_time", BENCHMARKS / "study_time.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_notebook_baseline_is_read_from_its_own_keras_log(study_time):
    if not study_time.NOTEBOOK.is_file():
        pytest.fail(f"the seed notebook is not at {study_time.NOTEBOOK}; clone beside ../shared")
    seconds = study_time.notebook_epoch_seconds(study_time.NOTEBOOK)
    # The notebook logged models 2-12, 12 epochs each; the reference and model-1 have no log.
    assert sorted(seconds) == sorted(f"seed/model-{n}" for n in range(2, 13))
    assert all(len(epochs) == 12 for epochs in seconds.values())
    # "60000/60000 [=====] - 11s 184us/step": model-2's first epoch, then 9 s epochs.
    assert seconds["seed/model-2"][:3] == [11, 9, 9]
    assert sum(seconds["seed/model-2"]) == 110
    # The "about 33 minutes for one pass of the 12 models".
    assert sum(map(sum, seconds.values())) == 1925


def test_the_study_command_carries_every_option_the_user_gave(study_time, tmp_path):
    args = study_time.argparse.Namespace(
        study="seed",
        seeds=5,
        precision="bf16",
        epochs=None,
        models="model-2,model-3",
        device="cuda",
        jobs=4,
        train_limit=None,
        stack_seeds=True,
    )
    command = study_time.run_study_command(args, tmp_path / "s")
    assert command[1:5] == ["-m", "cnnlab", "run", "seed"]
    text = " ".join(command[5:])
    for part in ("--seeds 5", "--precision bf16", "--models model-2,model-3", "--device cuda"):
        assert part in text
    assert "--jobs 4" in text and "--stack-seeds" in text and "--epochs" not in text


@pytest.fixture(scope="module")
def epoch_time(study_time):
    return sys.modules["epoch_time"]  # loaded by study_time, its sibling


def test_bf16_is_compared_with_keras_under_its_own_mixed_precision_policy(epoch_time):
    args = epoch_time.parse_args(["--precision", "bf16", "--keras-python", ""])
    assert "tensorflow+mixed_bfloat16" in args.keras_backends
    fp32 = epoch_time.parse_args(["--keras-python", ""])
    assert "tensorflow+mixed_bfloat16" not in fp32.keras_backends
    timing = epoch_time.Timing
    outcome = {
        "peak": {"oneDNN": 1000.0},
        "results": {
            "seed/model-2": {
                "cnnlab": [timing(0.010, 0.008)],
                "keras-tensorflow": [timing(0.040, 0.032)],
                "keras-tensorflow+mixed_bfloat16": [timing(0.020, 0.020), timing(0.030, 0.016)],
            }
        },
    }
    row = epoch_time.report(outcome, args)[0]
    assert (row["ratio_mean"], row["ratio_fastest"]) == (0.25, 0.25)
    # Against the best repeat of each estimate of the mixed-precision peer.
    assert (row["mixed_ratio_mean"], row["mixed_ratio_fastest"]) == (0.5, 0.5)


@pytest.fixture(scope="module")
def decide_benchmark():
    spec = importlib.util.spec_from_file_location("decide", BENCHMARKS / "decide.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["decide"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["decide"]


def test_the_decide_benchmark_counts_runs_misses_and_equal_models_called_worse(decide_benchmark):
    import dataclasses

    import numpy as np

    from cnnlab.rungs import HalvingSettings
    from cnnlab.sequential import SequentialSettings

    bench = decide_benchmark
    flat = np.zeros(3)
    truth = bench.Truth(
        "t",
        ("a", "b", bench.TWIN),
        np.array([0.99, 0.80, 0.99]),
        np.array([0.001, 0.001, 0.001]),
        10_000,
        flat,
        np.full(3, 0.001),
        "flat",
    )
    settings, halving = SequentialSettings(min_seeds=2, max_seeds=6), HalvingSettings()
    tallies = bench.simulate(truth, 1.0, 20, settings, halving, 9, 0)
    fixed, sequential, halved = tallies["fixed 5"], tallies["until decided"], tallies["halving"]
    assert fixed.runs == 20 * 15 and fixed.epochs == 9 * fixed.runs  # 5 seeds x 3 models
    assert sequential.runs < fixed.runs  # b, 19 points worse, stops after 2 seeds
    assert fixed.missed_best <= 3 and sequential.missed_best <= 3  # a or its twin may lead
    assert 1.8 <= sequential.best_set_size / sequential.reps <= 2.0  # a and its twin, not b
    # Halving, factor 3 over 9 epochs, by default one rung at epoch 3 keeping one of three
    # models (a or its twin); the other two stop after epoch 3: 5 seeds x (3 + 3 + 9) epochs.
    assert halved.epochs == 20 * 5 * 15 and halved.no_best_kept == 0
    assert halved.equal_dropped == 20  # one of two equal models is always pruned
    # A slow starter: a and its twin end best but lag 44 points after epoch 1 (c = 0.5), 11
    # after epoch 3. Hyperband's first rung at epoch 1 loses them; the default rung keeps one.
    slow = dataclasses.replace(truth, rise=np.array([0.5, 0.0, 0.5]))
    kept = bench.simulate(slow, 1.0, 20, settings, halving, 9, 0)["halving"]
    assert kept.no_best_kept == 0
    first = HalvingSettings(min_epochs=1)
    missed = bench.simulate(slow, 1.0, 20, settings, first, 9, 0)["halving"]
    assert missed.no_best_kept == 20 and missed.best_set_size == 20  # b alone goes on
