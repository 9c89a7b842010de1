"""Peak memory of `cnnlab data verify` on files whose headers claim 10 GiB (issue 22, item 1).

    .venv/bin/python benchmarks/bounded_read.py [--cap-mb 2048] [--before-src OLD/src]

Writes, in a temp directory, an `idx:DIR` whose train-images file has a valid IDX header for
13,700,000 28x28 images and is exactly that long (a sparse 10 GiB file), and an `npz:FILE` whose
x_train header claims (8,000,000, 28, 28). Runs `cnnlab data verify` on each in a child process,
sampling its resident memory every 10 ms and killing it once it passes --cap-mb (so a reader that
reads the whole file cannot take the machine down). Prints the peak, the seconds and how it
ended. `--before-src` runs the same with another cnnlab on PYTHONPATH (e.g. a checkout of the
commit before bounded reading: `git worktree add /tmp/old e53918a`, then `/tmp/old/src`), as
the "before" figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

TEN_GIB_IMAGES = (13_700_000, 28, 28)


def write_files(root: Path) -> tuple[str, str]:
    idx = root / "idx"
    idx.mkdir()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    for name, array in (
        ("train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8)),
        ("t10k-images-idx3-ubyte", small),
        ("t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8)),
    ):
        magic = 0x801 if array.ndim == 1 else 0x803
        header = b"".join(v.to_bytes(4, "big") for v in (magic, *array.shape))
        (idx / name).write_bytes(header + array.tobytes())
    header = b"".join(v.to_bytes(4, "big") for v in (0x803, *TEN_GIB_IMAGES))
    with (idx / "train-images-idx3-ubyte").open("wb") as out:
        out.write(header)
        out.truncate(len(header) + int(np.prod(TEN_GIB_IMAGES)))
    npz = root / "huge.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        with archive.open("x_train.npy", "w") as member:
            claim = {"descr": "|u1", "fortran_order": False, "shape": (8_000_000, 28, 28)}
            np.lib.format.write_array_header_1_0(member, claim)
            member.write(bytes(1000))
        for key, array in (
            ("y_train", small[:, 0, 0]),
            ("x_test", small),
            ("y_test", small[:, 0, 0]),
        ):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    return f"idx:{idx}", f"npz:{npz}"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(source: str, cap_mb: float, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "cnnlab", "data", "verify", source]
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, killed = 0.0, False
    while child.poll() is None:
        peak = max(peak, rss_mb(child.pid))
        if peak > cap_mb:
            child.kill()
            killed = True
            break
        time.sleep(0.01)
    _, err = child.communicate()
    seconds = time.perf_counter() - start
    lines = err.decode(errors="replace").strip().splitlines()
    ended = f"killed above {cap_mb:.0f} MB" if killed else f"exit {child.returncode}"
    return {"peak": peak, "seconds": seconds, "ended": ended, "last": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-mb", type=float, default=2048)
    parser.add_argument("--before-src", default=None, help="PYTHONPATH of the code to compare")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cnnlab-bounded-") as scratch:
        sources = write_files(Path(scratch))
        sides = [("before", args.before_src)] if args.before_src else []
        sides.append(("after", None))
        print("(a shared machine: the seconds move with its load; the peaks do not)")
        for source in sources:
            kind = source.split(":", 1)[0]
            for side, path in sides:
                row = measure(source, args.cap_mb, path)
                print(
                    f"{kind} {side:<7} peak RSS {row['peak']:7.0f} MB  {row['seconds']:6.2f} s  "
                    f"{row['ended']:<22} {row['last'][:150]}"
                )


if __name__ == "__main__":
    main()
