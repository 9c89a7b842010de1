"""Downloading registry files: each mirror in turn, kept only once its content checks."""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnlab import __version__
from cnnlab.data.cache import (
    OFFLINE_ENV,
    is_offline,
    locate_file,
    resolve_data_dir,
    verify_file,
)
from cnnlab.data.files import CHUNK, GZIP_MAGIC
from cnnlab.data.registry import DataFile, DatasetInfo, get_dataset_info
from cnnlab.errors import DataError

DOWNLOAD_TIMEOUT_S = 30.0  # per connection attempt and per read; a stalled mirror is left
# A temporary file this old belongs to a download killed outright (SIGKILL, power loss): a live
# one writes every megabyte, and a day per megabyte is slower than any mirror worth waiting for.
STALE_PART_S = 24 * 3600


@dataclass(frozen=True)
class FetchedFile:
    """One registry file after `fetch`: where it lies, and the URL it came from if downloaded."""

    name: str
    path: Path
    url: str | None  # None when a local copy was found


def _download_limit(file: DataFile) -> int:
    """The most bytes a mirror may send for `file`: its size, or for gzip the worst expansion."""
    # zlib's deflateBound: stored blocks add 5 bytes per 16 kB block, plus headers.
    return file.size + file.size // 1000 + (1 << 16) if file.gzipped else file.size


def _download_to(url: str, target: Path, timeout: float, limit: int) -> None:
    """Stream `url` into `target`, at most `limit` bytes; failures raise OSError/HTTPException."""
    request = urllib.request.Request(url, headers={"User-Agent": f"cnnlab/{__version__}"})
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
            if received > limit:
                raise ConnectionError(f"sent more than the {limit:,} bytes this file can have")
        promised = response.headers.get("Content-Length")
    # http.client's read(amt) returns short data without complaint when the peer hangs up early.
    if promised is not None and promised.isdigit() and received != int(promised):
        raise ConnectionError(f"connection closed after {received} of {promised} bytes")


def _describe_network_error(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return f"unreachable ({getattr(reason, 'strerror', None) or reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes"
    if isinstance(error, ConnectionError) and error.args:
        return str(error.args[0] if len(error.args) == 1 else error.strerror)
    return f"{type(error).__name__}: {error}"


def _try_mirror(
    url: str, file: DataFile, info: DatasetInfo, dest_dir: Path, timeout: float
) -> Path | str:
    """Download one URL into a temp file beside the target; keep it only if its content checks.

    Returns the final path, or a string saying what went wrong with this mirror.
    """
    _remove_stale_parts(dest_dir, file)
    fd, temp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{file.name}.", suffix=".part")
    os.close(fd)
    temp = Path(temp_name)
    try:
        _download_to(url, temp, timeout, _download_limit(file))
        verify_file(temp, file, info, where=url, remedy="")
        with temp.open("rb") as stream:
            suffix = ".gz" if file.gzipped and stream.read(2) == GZIP_MAGIC else ""
        target = dest_dir / (file.name + suffix)
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(temp, target)  # atomic: a reader sees the old state or the checked file
        return target
    except DataError as error:
        return f"{url}: bad content ({str(error).removeprefix(url + ': ').rstrip('; ')})"
    except (OSError, http.client.HTTPException) as error:
        return f"{url}: {_describe_network_error(error)}"
    finally:
        temp.unlink(missing_ok=True)


def _remove_stale_parts(dest_dir: Path, file: DataFile) -> None:
    """Delete `file`'s temporary files left a day ago by killed downloads (never a live one)."""
    cutoff = time.time() - STALE_PART_S
    for part in dest_dir.glob(f".{file.name}.*.part"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if part.stat().st_mtime < cutoff:
                part.unlink()


def download_file(
    info: DatasetInfo,
    file: DataFile,
    dest_dir: Path,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    report: Callable[[str], None] | None = None,
) -> tuple[Path, str]:
    """Try each mirror in order until one serves the right content; (path, url) of the copy."""
    if not (timeout > 0 and math.isfinite(timeout)):
        raise DataError(f"the download timeout must be a number of seconds > 0, got {timeout}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        probe, probe_name = tempfile.mkstemp(dir=dest_dir, prefix=".cnnlab-write-test.")
        os.close(probe)
        os.unlink(probe_name)
    except OSError as error:
        raise DataError(
            f"cannot write downloads into {dest_dir} ({error.strerror or error}); pass a "
            "writable --data-dir, or one that already holds the dataset's files"
        ) from None
    failures = []
    for mirror in info.mirrors:
        url = f"{mirror}{file.name}{'.gz' if file.gzipped else ''}"
        if report:
            report(f"downloading {url}")
        outcome = _try_mirror(url, file, info, dest_dir, timeout)
        if isinstance(outcome, Path):
            return outcome, url
        failures.append(outcome)
        if report:
            report(f"  failed: {outcome}")
    raise DataError(
        f"could not download {info.name}'s {file.name} from any of its {len(info.mirrors)} "
        f"mirrors: {'; '.join(failures)}; check the network (or proxy), or put the "
        f"files in a directory and pass --data-dir DIR"
    )


def fetch(
    info: DatasetInfo | str,
    *,
    data_dir: str | Path | None = None,
    offline: bool = False,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    report: Callable[[str], None] | None = None,
) -> tuple[FetchedFile, ...]:
    """Make all files of a registered dataset present and verified, downloading the missing.

    Found files are verified too, so fetch fails on a corrupt local copy instead of hiding it.
    Downloads land in DATA_DIR/<name>/ (cifar100-coarse: cifar100/); a `DatasetInfo` built by
    the caller (tests, private mirrors) is used as given.
    """
    info = get_dataset_info(info) if isinstance(info, str) else info
    directory = resolve_data_dir(data_dir)
    fetched = []
    for file in info.files:
        path = locate_file(info, file, directory)
        url = None
        if path is None:
            path, url = download_missing(info, file, directory, offline, timeout, report)
        else:
            verify_file(path, file, info)
        fetched.append(FetchedFile(file.name, path, url))
    return tuple(fetched)


def download_missing(
    info: DatasetInfo,
    file: DataFile,
    directory: Path,
    offline: bool,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    report: Callable[[str], None] | None = None,
) -> tuple[Path, str]:
    if is_offline(offline):
        raise DataError(
            f"{info.name}: {_stored_name(file)} not found in {directory} or "
            f"{directory / info.directory}, and offline mode forbids downloading; pass --data-dir "
            f"DIR with local copies, or allow downloads (no --offline, {OFFLINE_ENV} unset)"
        )
    return download_file(info, file, directory / info.directory, timeout=timeout, report=report)


def _stored_name(file: DataFile) -> str:
    return f"{file.name}[.gz]" if file.gzipped else file.name
