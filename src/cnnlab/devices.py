"""Where training runs: device choice (`--device`), CPU thread count, and a name for the records."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

from cnnlab.errors import SpecError

DEVICE_KINDS = ("cpu", "cuda", "mps")
P = ParamSpec("P")
R = TypeVar("R")


def resolve_device(name: str | None = None) -> torch.device:
    """`None` or "auto": CUDA when present, else Apple's MPS, else the CPU; or the one named.

    "cuda:1" picks a GPU by index. Asking for a device this machine lacks is a SpecError that
    says which ones it has, before any data is loaded onto it.
    """
    if name is None or name == "auto":
        return torch.device(_best_available())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(
            f"unknown device {name!r}; use one of auto, {', '.join(DEVICE_KINDS)} (or cuda:N)"
        ) from None
    if device.type not in DEVICE_KINDS:
        raise SpecError(f"unsupported device {name!r}; use one of auto, {', '.join(DEVICE_KINDS)}")
    if not _available(device):
        have = ", ".join(available_devices())
        raise SpecError(f"device {name!r} is not available on this machine; available: {have}")
    return device


# Training holds each parameter four times in float32: the weight, its gradient and two
# optimizer buffers (Adam's m and v, Adadelta's two accumulators).
TRAINING_BYTES_PER_PARAM = 4 * 4


def check_fits_in_memory(name: str, params: int) -> None:
    """Refuse a model whose weights alone outgrow this machine's memory, in one line, before
    torch fails deep inside its allocator (a typo such as dense = 100000000000)."""
    needed = params * TRAINING_BYTES_PER_PARAM
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform: let torch decide
        return
    if needed > total:
        raise SpecError(
            f"model {name!r} has {params:,} parameters: training them needs about "
            f"{needed / 1e9:,.1f} GB (weights, gradients, optimizer state), more than this "
            f"machine's {total / 1e9:,.1f} GB of memory"
        )


def available_devices() -> list[str]:
    """The device names this machine can train on, best first."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return [*names, "cpu"]


def keeps_callers_threads(function: Callable[P, R]) -> Callable[P, R]:
    """Give the caller its own torch thread count back after a run that set one (`threads=`):
    a notebook's later work must not run on the one core a training asked for."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        before = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads (default: the cores this process may use); returns it.

    Torch's own default counts physical cores of the whole machine, which oversubscribes when
    several training processes share it (a study's `--jobs`) or a container limits the CPUs.
    """
    if threads is None:
        threads = usable_cores()
    if threads < 1:
        raise SpecError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# glibc's mallopt parameters (malloc.h). 32 MiB is the largest mmap threshold glibc accepts on
# 64-bit (HEAP_MAX_SIZE / 2); batch-128 activations of MNIST-sized models stay below it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Make glibc keep freed activation memory for reuse instead of returning it to the OS.

    A training step frees and reallocates the same multi-megabyte tensors every time; with
    glibc's defaults each round trip goes back to the kernel and page-faults the memory in
    again (measured: seed/reference 52 -> 40 ms per step on a 2-core CPU). Applies to this
    process, once; False where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return mmap_ok and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1


def describe_device(device: torch.device) -> str:
    """A name for the records: "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu (x86_64, 2 threads)"."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (avx512_bf16 or AMX; it honours
    ONEDNN_MAX_CPU_ISA). Without them torch emulates bf16 in fp32 arithmetic."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: a torch without it says nothing
        return True


def bf16_note(device: torch.device, precision: str) -> str | None:
    """Why bf16 on this CPU is no fast mode, or None where it is (or fp32 was asked for).

    Measured (seed/model-2, one thread, oneDNN held to AVX2 with ONEDNN_MAX_CPU_ISA=AVX2 on an
    Intel Xeon with AMX): 137 img/s in bf16 against 1,411 in fp32, 10x slower; with AMX 2,974.
    """
    if precision != "bf16" or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return (
        "bf16 runs emulated on this CPU (no avx512_bf16 or AMX): about 10x slower than fp32, "
        "with bf16's rounding; use --precision fp32 here"
    )


def _best_available() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        count = torch.cuda.device_count()
        return count > 0 and (device.index is None or device.index < count)
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return True
