"""Seconds per epoch that other processes cannot inflate: a steady estimate, and a flag.

Epochs are timed by the wall clock, so an epoch that shared the CPU with another process
takes longer (the seed study's reference model once took 43 s per epoch against 8.6 s alone).
Sharing only ever adds time, so the estimate comes from the fast end, as
`benchmarks/epoch_time.py` takes the fastest stretch of steps: the median of the fastest half
of a model's epochs, over all its finished runs. Each run's first epoch is left out when the
run has others (it also pays for first touches of data and code). An epoch over
`DISTURBED_RATIO` times the steady estimate counts as disturbed, and the report says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

DISTURBED_RATIO = 1.5  # far beyond run-to-run jitter (a few %), well below a shared core (2x)

__all__ = ["DISTURBED_RATIO", "EpochTiming", "epoch_timing"]


@dataclass(frozen=True)
class EpochTiming:
    """A model's seconds per epoch: the steady estimate, and what disturbed it."""

    steady: float  # median of the fastest half of the timed epochs
    mean: float  # the plain mean of the timed epochs, disturbed ones included
    slowest: float
    epochs: int  # epochs timed (each run's first left out when it has others)
    disturbed: int  # timed epochs over DISTURBED_RATIO x steady

    @property
    def is_disturbed(self) -> bool:
        return self.disturbed > 0

    def describe(self) -> str:
        """'3 of 24 epochs slowed, up to 43.0 s against a steady 8.6 s'."""
        return (
            f"{self.disturbed} of {self.epochs} epochs slowed, up to {self.slowest:.1f} s "
            f"against a steady {self.steady:.1f} s"
        )


def epoch_timing(per_run: Sequence[Sequence[float]]) -> EpochTiming | None:
    """The steady epoch time of a model from each run's epoch seconds (None: none timed)."""
    timed = [
        seconds
        for run in per_run
        for seconds in (run[1:] if len(run) > 1 else run)
        if math.isfinite(seconds) and seconds > 0
    ]
    if not timed:
        return None
    fastest_half = sorted(timed)[: math.ceil(len(timed) / 2)]
    steady = statistics.median(fastest_half)
    return EpochTiming(
        steady=steady,
        mean=statistics.fmean(timed),
        slowest=max(timed),
        epochs=len(timed),
        disturbed=sum(seconds > DISTURBED_RATIO * steady for seconds in timed),
    )
