"""The memory of a training step, estimated from the spec before anything is allocated."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from cnnlab import memory, spec, summary
from cnnlab.errors import SpecError

# 180 k parameters pass the parameter check; at batch 256 its output alone is 13 GB.
WIDE = spec.model_from_dict(
    {
        "name": "wide",
        "layers": [
            {"conv": 16384, "kernel": 1, "activation": "relu"},
            "globalavgpool",
            {"dense": "classes", "activation": "softmax"},
        ],
    }
)


def test_a_steps_estimate_counts_every_output_for_the_batch_and_the_parameters():
    wide = summary.summarize(WIDE, (28, 28, 1), 10)
    step = memory.estimate_step_memory(wide, 256, "fp32")
    conv_output = 256 * 28 * 28 * 16384 * 4
    assert conv_output < step.activations < 1.01 * conv_output
    assert step.params == wide.total_params * 16
    assert memory.estimate_step_memory(wide, 256, "bf16").activations == step.activations // 2
    assert memory.estimate_step_memory(wide, 128, "fp32").activations == step.activations // 2


def test_a_step_beyond_the_memory_available_is_refused_with_both_figures(monkeypatch):
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 8 * 10**9)  # any machine: 8 GB
    wide = summary.summarize(WIDE, (28, 28, 1), 10)
    need = r"'wide' at batch size 256 \(fp32\) needs at least 26\.\d GB per training step"
    with pytest.raises(SpecError, match=need + r".* more than the 8\.0 GB of cpu memory"):
        memory.check_step_fits("wide", wide, 256, "fp32")
    small = memory.check_step_fits("wide", wide, 1, "fp32")
    assert small.total < 200e6


def test_stacked_seeds_need_each_seeds_share_of_a_step():
    wide = summary.summarize(WIDE, (28, 28, 1), 10)
    one = memory.estimate_step_memory(wide, 64, "fp32")
    five = memory.estimate_step_memory(wide, 64, "fp32", seeds=5)
    assert (five.params, five.activations, five.gradients) == (
        5 * one.params,
        5 * one.activations,
        5 * one.gradients,
    )


def test_stacked_seeds_beyond_the_memory_left_are_refused_with_both_figures(monkeypatch):
    wide = summary.summarize(WIDE, (28, 28, 1), 10)
    one = memory.estimate_step_memory(wide, 64, "fp32").total
    monkeypatch.setattr(memory, "_meminfo_available", lambda: int(2.5 * one))
    assert memory.stacking_refused(wide, 64, "fp32", 2) is None
    note = memory.stacking_refused(wide, 64, "fp32", 3)
    assert note == (
        f"--stack-seeds: the 3 seeds stacked need at least {3 * one / 1e9:,.1f} GB per training "
        f"step, more than the {2.5 * one / 1e9:,.1f} GB of cpu memory available; trained one "
        "after another instead"
    )


@pytest.mark.slow
def test_stacked_seeds_that_do_not_fit_train_one_after_another_and_say_so(monkeypatch, mnist_dir):
    from cnnlab.data import load_dataset
    from cnnlab.multiseed import train_seeds

    tiny = spec.model_from_dict(
        {"name": "tiny", "layers": ["flatten", {"dense": "classes", "activation": "softmax"}]}
    )
    one = memory.estimate_step_memory(summary.summarize(tiny, (28, 28, 1), 10), 64, "fp32")
    monkeypatch.setattr(memory, "_meminfo_available", lambda: int(1.5 * one.total))
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    options = {"epochs": 1, "train_limit": 256, "batch_size": 64, "progress": "quiet"}
    results = train_seeds(tiny, mnist, seeds=[0, 1], **options, device="cpu")
    assert [r.status for r in results] == ["done", "done"]
    for result in results:
        assert any("trained one after another instead" in note for note in result.notes)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: int(3 * one.total))
    stacked = train_seeds(tiny, mnist, seeds=[0, 1], **options, device="cpu")
    assert all(not result.notes for result in stacked)


# Under a 4 GiB address-space limit, before the fix torch tried the 13 GB and failed inside its
# allocator (a 'failed' run, exit 1); now nothing close to that is allocated.
TRAIN_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.RLIM_INFINITY))
from cnnlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_cnnlab_train_refuses_a_model_whose_activations_outgrow_memory(tmp_path, mnist_dir):
    path = tmp_path / "wide.toml"
    path.write_text(spec.model_to_toml(WIDE))
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_UNDER_LIMIT, "train", str(path), "--batch-size", "256",
         "--train-limit", "512", "--epochs", "1", "--data-dir", str(mnist_dir), "--device", "cpu",
         "--threads", "1", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs at least" in lines[0] and "cpu memory available" in lines[0]
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY  # ours untouched
