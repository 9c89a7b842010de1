"""Reading a local data file as a stream: gzip recognised by its magic, read in bounded chunks.

Nothing here reads a whole file into memory: a reader takes the header first, decides from it
(and from what the registry knows) whether the rest can be right, and only then reads the data
straight into its final array.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from cnnlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # bytes per read when streaming a file


def candidates(directory: Path, name: str) -> tuple[Path, ...]:
    return (directory / f"{name}.gz", directory / name)


class ContentStream:
    """A file's content (decompressed when gzipped), read with errors that name the file."""

    def __init__(self, raw: IO[bytes], gzipped: bool, where: str, remedy: str) -> None:
        self.gzipped, self.where, self.remedy = gzipped, where, remedy
        self.size_on_disk = _size_of(raw)
        self._stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if gzipped else raw

    def read(self, count: int) -> bytes:
        """Up to `count` bytes; fewer only at the end of the content."""
        with self._translated():
            return self._stream.read(count)

    def read_into(
        self, array: np.ndarray, on_chunk: Callable[[memoryview], object] | None = None
    ) -> int:
        """Fill a flat uint8 array from the stream in chunks; the bytes filled (short at EOF)."""
        view, filled = memoryview(array).cast("B"), 0
        with self._translated():
            while filled < len(view):
                count = self._stream.readinto(view[filled : filled + CHUNK])
                if not count:
                    break
                if on_chunk is not None:
                    on_chunk(view[filled : filled + count])
                filled += count
        return filled

    def count_rest(self, cap: int) -> int:
        """How many bytes remain, counting at most `cap` (so a gzip bomb is not read to its end)."""
        counted = 0
        with self._translated():
            while counted <= cap and (chunk := self._stream.read(min(CHUNK, cap + 1 - counted))):
                counted += len(chunk)
        return counted

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except EOFError as error:
            raise DataError(
                f"{self.where}: truncated gzip stream ({self.size_on_disk} bytes end before the "
                f"archive does); expected a complete gzip file; {self.remedy}"
            ) from error
        except (OSError, zlib.error) as error:
            raise DataError(
                f"{self.where}: corrupt gzip data ({error}); expected a gzip-compressed file; "
                f"{self.remedy}"
            ) from error


@contextmanager
def open_content(path: Path, where: str, remedy: str) -> Iterator[ContentStream]:
    """Open `path` for streaming its content; gzip is recognised by its magic, not its name."""
    try:
        raw = path.open("rb")
    except OSError as error:
        raise DataError(f"{where}: cannot be read ({error.strerror}); {remedy}") from error
    with raw:
        try:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
        except OSError as error:
            raise DataError(f"{where}: cannot be read ({error.strerror}); {remedy}") from error
        yield ContentStream(raw, gzipped, where, remedy)


def _size_of(raw: IO[bytes]) -> int:
    return os.fstat(raw.fileno()).st_size
