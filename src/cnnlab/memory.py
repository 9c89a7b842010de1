"""The memory one training step needs, estimated from the spec before anything is allocated.

A 1x1 convolution with 16,384 filters has 180 k parameters, so the parameter check passes it,
yet at batch 256 on 28x28 images its output alone is 13 GB: torch then fails deep in its
allocator, or the machine swaps. The estimate counts what a step keeps alive at its peak:

- parameters four times in float32: weights, gradients, two optimizer buffers;
- every layer's output for the whole batch, kept for the backward pass (a Flatten is a view);
- the gradients of the two largest outputs, alive together during the backward pass.

Elements of activations take 4 bytes in fp32 and 2 in bf16 (autocast's convolutions and
matmuls; normalisation stays in float32, so bf16 figures are a floor). Scratch buffers and the
dataset come on top: the figure is the least a step needs, so a refusal is never a false alarm.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass

from cnnlab.errors import SpecError
from cnnlab.summary import Summary

PARAM_BYTES = 4 * 4  # float32 weight, gradient and two optimizer buffers (Adam's m and v)
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2}
VIEWS = ("Flatten",)  # layers whose output shares its input's memory


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step keeps alive at its peak, by kind."""

    params: int
    activations: int
    gradients: int

    @property
    def total(self) -> int:
        return self.params + self.activations + self.gradients


def estimate_step_memory(
    summary: Summary, batch_size: int, precision: str, *, seeds: int = 1
) -> StepMemory:
    """The floor of a training step's peak memory for this model, batch and precision.

    seeds: how many seeds one step trains (`--stack-seeds`): the stacked network holds every
    seed's weights and optimizer state, and each layer's output for every seed's batch.
    """
    width = ACTIVATION_BYTES.get(precision, 4)
    sizes = [math.prod(summary.input_shape)] + [
        math.prod(row.output_shape) for row in summary.rows if row.layer_type not in VIEWS
    ]
    largest = sorted(sizes, reverse=True)[:2]
    return StepMemory(
        params=seeds * summary.total_params * PARAM_BYTES,
        activations=seeds * batch_size * sum(sizes) * width,
        gradients=seeds * batch_size * sum(largest) * width,
    )


def available_bytes(device_type: str = "cpu", index: int | None = None) -> int | None:
    """Memory a training step may still take: free GPU memory, or on the CPU the smaller of the
    kernel's MemAvailable and what this process's address-space limit leaves. None: unknown."""
    if device_type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(index)[0])
    if device_type != "cpu":
        return None
    found = [n for n in (_meminfo_available(), _address_space_left()) if n is not None]
    return min(found) if found else None


def check_step_fits(
    name: str, summary: Summary, batch_size: int, precision: str, device_type: str = "cpu",
    index: int | None = None,
) -> StepMemory:  # fmt: skip
    """Refuse, in one line with both figures, a step of one seed that cannot fit in the memory
    left (stacked seeds that do not fit train one after another: `stacking_refused`)."""
    need = estimate_step_memory(summary, batch_size, precision)
    have = available_bytes(device_type, index)
    if have is not None and need.total > have:
        raise SpecError(
            f"model {name!r} at batch size {batch_size} ({precision}) needs at least "
            f"{_gb(need.total)} per training step ({_gb(need.activations + need.gradients)} of "
            f"activations and their gradients, {_gb(need.params)} of weights and optimizer "
            f"state), more than the {_gb(have)} of {device_type} memory available; use a "
            "smaller batch size or model"
        )
    return need


def stacking_refused(
    summary: Summary, batch_size: int, precision: str, seeds: int, device_type: str = "cpu",
    index: int | None = None,
) -> str | None:  # fmt: skip
    """Why `seeds` seeds stacked into one step cannot fit in the memory left, as a note (None:
    they fit). One seed at a time may still fit: the caller trains them so instead."""
    need = estimate_step_memory(summary, batch_size, precision, seeds=seeds)
    have = available_bytes(device_type, index)
    if have is None or need.total <= have:
        return None
    return (
        f"--stack-seeds: the {seeds} seeds stacked need at least {_gb(need.total)} per training "
        f"step, more than the {_gb(have)} of {device_type} memory available; trained one after "
        "another instead"
    )


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.0f} MB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """RLIMIT_AS minus the address space this process already maps (Linux); None: no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft
