"""Would training several seeds as one grouped convolution pay on this machine?

    .venv/bin/python benchmarks/grouped_conv.py [--seeds 4] [--threads 1]

The batched multi-seed idea stacks S seeds' feature maps along channels and runs each conv
layer once with groups=S. This times forward + backward of conv layers of the seed models
(channels_last, batch 128), S separate convolutions against one grouped convolution, and prints
the gain (> 1: batching pays). On a 2-core CPU oneDNN already fills the cores with one seed;
the gain is expected on GPUs, where one small model leaves the device idle.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# (input size, in channels, out channels, kernel, padding, where it occurs)
LAYERS = [
    (28, 1, 32, 7, 3, "model-3/-9 first conv, 7x7 same"),
    (14, 32, 64, 7, 3, "model-3 second conv, 7x7 same"),
    (7, 64, 84, 7, 3, "model-3 third conv, 7x7 same"),
    (26, 32, 64, 3, 0, "reference second conv, 3x3 valid"),
    (12, 32, 64, 5, 0, "model-2 second conv, 5x5 valid"),
]
BATCH = 128


def cpu_milliseconds(work, repeats: int = 10) -> float:
    """Median CPU time of `work` (robust to other processes on a shared machine)."""
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return sorted(times)[repeats // 2] * 1e3


def conv_step(channels_in: int, channels_out: int, size: int, kernel: int, pad: int, groups: int):
    """One forward + backward of a (grouped) convolution, as a training step runs it."""
    layout = torch.channels_last
    x = torch.randn(BATCH, channels_in * groups, size, size).contiguous(memory_format=layout)
    w = torch.randn(channels_out * groups, channels_in, kernel, kernel)
    w = w.contiguous(memory_format=layout)
    x.requires_grad_()
    w.requires_grad_()

    def step() -> None:
        y = F.conv2d(x, w, padding=pad, groups=groups)
        y.backward(torch.ones_like(y))

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds
    print(f"{seeds} seeds, {args.threads} thread(s), batch {BATCH}, forward + backward")
    for size, c_in, c_out, kernel, pad, where in LAYERS:
        separate = seeds * cpu_milliseconds(conv_step(c_in, c_out, size, kernel, pad, 1))
        grouped = cpu_milliseconds(conv_step(c_in, c_out, size, kernel, pad, seeds))
        print(
            f"{where:36s} {c_in:>3}->{c_out:<3} k{kernel}: separate {separate:7.1f} ms, "
            f"grouped {grouped:7.1f} ms, gain {separate / grouped:.2f}"
        )


if __name__ == "__main__":
    main()
