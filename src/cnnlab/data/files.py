"""Reading a local data file: gzip recognised by its magic, decompressed within a limit."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from cnnlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # bytes per read when streaming a file


def candidates(directory: Path, name: str) -> tuple[Path, ...]:
    return (directory / f"{name}.gz", directory / name)


def read_content(
    path: Path, where: str, remedy: str, limit: int | None = None
) -> tuple[bytes, bytes | None]:
    """(decompressed bytes, archive bytes or None); gzip is recognised by its magic, not name.

    `limit`: the most bytes the content may have (a registry file's known size), so a hostile
    or broken mirror's gzip bomb is refused after `limit` bytes instead of filling memory.
    """
    try:
        stored = path.read_bytes()
    except OSError as error:
        raise DataError(f"{where}: cannot be read ({error.strerror}); {remedy}") from error
    if not stored.startswith(GZIP_MAGIC):
        return stored, None
    try:
        if limit is None:
            return gzip.decompress(stored), stored
        with gzip.GzipFile(fileobj=io.BytesIO(stored)) as archive:
            content = archive.read(limit + 1)
        if len(content) > limit:
            raise DataError(
                f"{where}: decompresses to more than the {limit:,} bytes this file has; "
                f"not the expected file; {remedy}"
            )
        return content, stored
    except EOFError as error:
        raise DataError(
            f"{where}: truncated gzip stream ({len(stored)} bytes end before the archive does); "
            f"expected a complete gzip file; {remedy}"
        ) from error
    except (OSError, zlib.error) as error:
        raise DataError(
            f"{where}: corrupt gzip data ({error}); expected a gzip-compressed IDX file; {remedy}"
        ) from error
