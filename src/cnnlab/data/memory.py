"""How much memory an array may take: checked before allocating, so a file that claims too much
is refused in one line instead of filling the machine (or raising NumPy's allocation error)."""

from __future__ import annotations

import os
import resource

from cnnlab.errors import DataError


def available_bytes() -> int:
    """Memory a new allocation can use: the free RAM, or the address-space limit's headroom."""
    limits = [_mem_available()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _address_space_used()))
    return min(limits)


# A dataset may take at most this share of the memory available when it loads: training needs
# the rest (the model, its gradients, float batches), and on a shared machine so do others.
SHARE = 0.5


def check_allocation(nbytes: int, what: str, where: str) -> None:
    """Refuse an allocation of `nbytes` beyond SHARE of the memory available, in one line."""
    free = available_bytes()
    if nbytes > SHARE * free:
        raise DataError(
            f"{where}: {what} would take {_gib(nbytes)} of memory and {_gib(free)} is available "
            f"(a dataset may take half); refusing to read it (a damaged or hostile header, or a "
            "dataset too large for this machine: use a smaller subset)"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.2f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:,.1f} MiB"


def _mem_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:  # not Linux: physical memory, the most there can be
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def _address_space_used() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
