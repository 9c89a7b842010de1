"""The steady epoch time: other processes sharing the CPU must not decide what is cheap."""

from __future__ import annotations

import pytest

from cnnlab.timing import epoch_timing


def test_a_run_slowed_by_another_process_keeps_its_steady_time_and_is_flagged():
    alone = [9.1] + [8.6] * 11
    shared = [9.0, 8.7, 8.6] + [43.0] * 9  # another study started on the same cores
    timing = epoch_timing([alone, shared])
    assert timing.steady == pytest.approx(8.6)
    assert timing.mean > 20  # what a plain mean would have shown
    assert timing.is_disturbed and timing.disturbed == 9 and timing.epochs == 22
    assert timing.describe() == "9 of 22 epochs slowed, up to 43.0 s against a steady 8.6 s"


def test_each_runs_first_epoch_is_left_out_as_warm_up_unless_it_is_the_only_one():
    assert epoch_timing([[30.0, 10.0, 10.0]]).epochs == 2
    assert not epoch_timing([[30.0, 10.0, 10.0]]).is_disturbed
    assert epoch_timing([[12.0], [11.0]]).steady == 11.0


def test_ordinary_jitter_is_not_called_disturbed():
    timing = epoch_timing([[5.0, 5.2, 4.9, 5.3, 5.1, 5.4]])
    assert not timing.is_disturbed and 4.9 <= timing.steady <= 5.2


def test_no_timed_epoch_gives_no_estimate():
    assert epoch_timing([]) is None and epoch_timing([[], [float("nan")]]) is None
