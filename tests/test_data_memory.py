"""Bounded reading: files whose headers claim more than memory holds are refused, not read.

Each case runs `cnnlab data verify` in a subprocess whose address space is capped a little
above what it has already mapped (resource.setrlimit): reading the whole file, or allocating
what its header claims, would fail there with a MemoryError, so a pass means nothing close to
the file's claim was allocated.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import IDX_NAMES, encode_idx

HEADROOM = 512 * 2**20  # address space allowed beyond what the process holds after imports
TEN_GIB_IMAGES = (13_700_000, 28, 28)  # 10.7e9 bytes of pixels

CAPPED = """
import resource, sys
from cnnlab.cli import main
import cnnlab.cli.data, cnnlab.data  # everything imported first, then the cap
def mapped():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
limit = mapped() + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""


def verify_capped(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CAPPED, str(HEADROOM), "data", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess, phrase: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], result.stderr


def write_small_idx(directory: Path, skip: str = "") -> None:
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        np.arange(4, dtype=np.uint8),
        rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8),
        np.arange(2, dtype=np.uint8),
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        if name != skip:
            (directory / name).write_bytes(encode_idx(array))


def sparse_idx_claiming(path: Path, dims: tuple[int, ...]) -> None:
    """A raw IDX file with a valid header for `dims` and exactly that many (sparse) bytes."""
    header = b"".join(v.to_bytes(4, "big") for v in (0x803, *dims))
    with path.open("wb") as out:
        out.write(header)
        out.truncate(len(header) + int(np.prod(dims)))


@pytest.mark.slow
def test_idx_file_whose_header_claims_10_gib_is_refused_before_allocating(tmp_path):
    write_small_idx(tmp_path, skip="train-images-idx3-ubyte")
    sparse_idx_claiming(tmp_path / "train-images-idx3-ubyte", TEN_GIB_IMAGES)
    result = verify_capped(f"idx:{tmp_path}")
    assert_one_line_refusal(result, "would take 10.00 GiB of memory")


@pytest.mark.slow
def test_registry_file_longer_than_the_registry_knows_is_refused_from_its_header(tmp_path):
    write_small_idx(tmp_path, skip="train-images-idx3-ubyte")
    sparse_idx_claiming(tmp_path / "train-images-idx3-ubyte", TEN_GIB_IMAGES)
    result = verify_capped("mnist", "--data-dir", str(tmp_path))
    assert_one_line_refusal(result, "more than the 47,040,016 bytes this file has in all")


@pytest.mark.slow
def test_gzip_expanding_to_512_mib_with_a_wrong_magic_is_refused_after_its_first_bytes(tmp_path):
    write_small_idx(tmp_path, skip="train-images-idx3-ubyte")
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip container
    zeros = bytes(1 << 24)
    with (tmp_path / "train-images-idx3-ubyte.gz").open("wb") as out:
        for _ in range(32):  # 32 x 16 MiB of zeros
            out.write(packer.compress(zeros))
        out.write(packer.flush())
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz") as check:
        assert check.read(4) == bytes(4)
    result = verify_capped(f"idx:{tmp_path}")
    assert_one_line_refusal(result, "IDX magic number is 0x00000000, expected 0x00000803")


@pytest.mark.slow
def test_npz_whose_header_claims_8_million_images_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    small = np.zeros((2, 28, 28), np.uint8)
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x_train.npy", "w") as member:
            header = {"descr": "|u1", "fortran_order": False, "shape": (8_000_000, 28, 28)}
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(1000))
        for key, array in (
            ("y_train", small[:, 0, 0]),
            ("x_test", small),
            ("y_test", small[:, 0, 0]),
        ):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    result = verify_capped(f"npz:{path}")
    assert_one_line_refusal(result, "header declares (8000000, 28, 28) uint8 = 6,272,000,000 bytes")


@pytest.mark.slow
def test_npz_with_a_consistent_header_beyond_memory_is_refused_with_the_figures(tmp_path):
    path = tmp_path / "big.npz"
    shape = (1_000_000, 28, 28)  # 784 MB: above the cap, and the member really holds it
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(member, header)
            zeros = bytes(28 * 28 * 10_000)
            for _ in range(100):
                member.write(zeros)
        small = np.zeros((2, 28, 28), np.uint8)
        for key, array in (
            ("y_train", small[:, 0, 0]),
            ("x_test", small),
            ("y_test", small[:, 0, 0]),
        ):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    result = verify_capped(f"npz:{path}")
    assert_one_line_refusal(result, "would take 0.73 GiB of memory")


def test_memory_check_refuses_what_cannot_fit_in_one_line():
    from cnnlab.data.memory import available_bytes, check_allocation
    from cnnlab.errors import DataError

    check_allocation(1 << 20, "a small array", "here")
    with pytest.raises(DataError, match=r"here: a huge array would take .* GiB of memory and"):
        check_allocation(available_bytes() + 2**30, "a huge array", "here")
    with pytest.raises(DataError, match=r"is available \(a dataset may take half\)"):
        check_allocation(int(available_bytes() * 0.6), "most of memory", "here")
