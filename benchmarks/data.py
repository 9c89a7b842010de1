"""Data loading and colour training: load time (cold and cached), resident memory, images/s.

    .venv/bin/python benchmarks/data.py [--images 60000] [--pngs 60000] [--train 2048]
        [--repeats 2] [--skip-pngs] [--work DIR]

Three measurements, each against a baseline measured in the same run, interleaved A/B/A/B:
1. A CIFAR-10-sized binary release (50,000 + 10,000 random 32x32x3 images, written here in the
   real layout and packed as .tar.gz) loaded with `cifar:ARCHIVE` and `cifar:DIR`, against MNIST
   (the IDX registry path, from $CNNLAB_DATA_DIR). Each load runs in a fresh process, so its
   peak resident memory (ru_maxrss) is its own; the first load of a file is "cold" only as far
   as the OS page cache allows (the file was just written).
2. A folder of 32x32x3 PNGs (`folder:DIR`): the first load decodes every file and writes the
   cache; the second reads the cache.
3. Training images/s of seed/model-2 on 32x32x3 against the same model on 28x28x1 (random
   images, one epoch on --train images, no validation, batch 128).
The CPU is named; the machine may be shared, which moves every figure: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

LOAD = """
import json, resource, sys, time
import cnnlab.data
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:"))
before = rss()
start = time.perf_counter()
verification = cnnlab.data.verify_dataset(sys.argv[1], data_dir=sys.argv[2] or None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
dataset = verification.dataset
arrays = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
print(json.dumps({"seconds": seconds, "peak_mb": peak, "held_mb": rss() - before,
                  "arrays_mb": sum(a.nbytes for a in arrays) / 2**20,
                  "check": verification.files[0].check, "describe": dataset.describe()}))
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load(source: str, data_dir: str = "") -> dict:
    """One load of `source` in a fresh interpreter: seconds, peak RSS, the arrays' size."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD, source, data_dir], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"loading {source} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def write_cifar_release(root: Path, images: int) -> tuple[Path, Path]:
    """50,000 + 10,000 (scaled by --images) random images in CIFAR-10's binary layout."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    train, test = images * 5 // 6, images // 6
    names = [f"data_batch_{i}.bin" for i in range(1, 6)]
    for name, count in [*((n, train // 5) for n in names), ("test_batch.bin", test)]:
        records = rng.integers(0, 256, size=(count, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / name).write_bytes(records.tobytes())
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta.txt").write_text("\n".join(classes) + "\n")
    archive = root / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as packed:
        packed.add(folder, arcname=folder.name)
    return folder, archive


def write_pngs(root: Path, count: int) -> Path:
    """`count` random 32x32x3 PNGs in train/ and test/ class folders (5:1)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(count):
        split = "test" if i % 6 == 5 else "train"
        folder = root / split / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:06d}.png")
    return root


def images_per_second(shape: tuple[int, int, int], images: int, repeats: int) -> list[float]:
    import cnnlab
    from cnnlab.data import dataset_from_arrays

    rng = np.random.default_rng(2)
    dataset = dataset_from_arrays(
        "random",
        (rng.integers(0, 256, size=(images, *shape), dtype=np.uint8), np.arange(images) % 10),
        (rng.integers(0, 256, size=(256, *shape), dtype=np.uint8), np.arange(256) % 10),
    )
    spec = cnnlab.load_model("seed/model-2")
    rates = []
    for _ in range(repeats):
        result = cnnlab.train_model(
            spec, dataset, epochs=1, batch_size=128, validation=0, progress="quiet"
        )
        rates.append(images / result.timings.train_seconds)
    return rates


def report_loads(title: str, rows: list[tuple[str, dict]], baseline: str) -> None:
    print(f"\n{title}")
    print(f"  {'load':<34}{'seconds':>9}{'peak RSS MB':>13}{'arrays MB':>11}{'RSS added':>11}")
    for label, row in rows:
        print(
            f"  {label:<34}{row['seconds']:>9.2f}{row['peak_mb']:>13.0f}{row['arrays_mb']:>11.0f}"
            f"{row['held_mb']:>11.0f}   {row['check'].split(' in /')[0]}"
        )
    base = min(r["seconds"] for label, r in rows if label.startswith(baseline))
    for label, row in rows:
        if not label.startswith(baseline):
            print(f"  {label}: {row['seconds'] / base:.2f} x the {baseline} load time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60000, help="CIFAR-sized images in all")
    parser.add_argument("--pngs", type=int, default=60000)
    parser.add_argument("--train", type=int, default=2048, help="images per training epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-pngs", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (a temp dir)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="cnnlab-data-bench-"))
    print(f"CPU: {cpu_name()}; python {platform.python_version()}; scratch {work}")
    print("(a shared machine: other processes move the figures; the ratios are the result)")
    try:
        start = time.perf_counter()
        folder, archive = write_cifar_release(work / "cifar", args.images)
        print(
            f"wrote a {args.images:,}-image CIFAR-10 layout in {time.perf_counter() - start:.1f} s"
        )
        rows = []
        for turn in range(args.repeats):  # A/B/A/B: MNIST, then the CIFAR forms
            rows.append((f"mnist (IDX .gz) #{turn + 1}", load("mnist")))
            rows.append((f"cifar:ARCHIVE.tar.gz #{turn + 1}", load(f"cifar:{archive}")))
            rows.append((f"cifar:DIR #{turn + 1}", load(f"cifar:{folder}")))
        report_loads("CIFAR-10-sized binary release against MNIST", rows, "mnist")
        uint8 = args.images * 32 * 32 * 3 / 2**20
        print(
            f"  {args.images:,} images of 32x32x3: {uint8:.0f} MB as uint8, "
            f"{4 * uint8:.0f} MB as float32"
        )
        if not args.skip_pngs:
            start = time.perf_counter()
            pngs = write_pngs(work / "pngs", args.pngs)
            print(f"\nwrote {args.pngs:,} PNGs in {time.perf_counter() - start:.1f} s")
            cache = str(work / "data-dir")
            rows = [
                ("folder: first load (decode, cache)", load(f"folder:{pngs}", cache)),
                ("folder: second load (cache)", load(f"folder:{pngs}", cache)),
                ("folder: third load (cache)", load(f"folder:{pngs}", cache)),
            ]
            report_loads(f"a folder of {args.pngs:,} PNGs", rows, "folder: second")
        grey, colour = [], []
        for _ in range(args.repeats):  # A/B/A/B
            grey += images_per_second((28, 28, 1), args.train, 1)
            colour += images_per_second((32, 32, 3), args.train, 1)
        print(
            f"\ntraining seed/model-2, one epoch of {args.train} images, batch 128, "
            f"best of {args.repeats}:"
        )
        print(
            f"  28x28x1: {max(grey):8.0f} images/s   (all: {', '.join(f'{r:.0f}' for r in grey)})"
        )
        print(
            f"  32x32x3: {max(colour):8.0f} images/s   "
            f"(all: {', '.join(f'{r:.0f}' for r in colour)})"
        )
        print(f"  32x32x3 / 28x28x1: {max(colour) / max(grey):.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
