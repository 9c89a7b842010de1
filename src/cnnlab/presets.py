"""Named models and studies shipped with cnnlab, as TOML files under `cnnlab/presets/`.

A preset's name is its path below `presets/models/` (or `presets/studies/`) without `.toml`:
`seed/model-3` is `presets/models/seed/model-3.toml`. Like timm's `list_models("pattern*")`,
`list_presets` filters names with shell patterns. This module only finds and reads files;
`cnnlab.spec.load_model` / `load_study` parse them.
"""

from __future__ import annotations

import fnmatch
import re
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

KINDS = {"model": "models", "study": "studies"}
_PACKAGE_PREFIX = "cnnlab/presets/"


def _root(kind: str) -> Traversable:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return files("cnnlab") / "presets" / KINDS[kind]


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".toml"):
            found.append((prefix + entry.name.removesuffix(".toml"), entry))
    return found


def _natural_key(name: str) -> list[object]:
    """seed/model-2 before seed/model-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _presets(kind: str) -> dict[str, Traversable]:
    return dict(sorted(_walk(_root(kind), ""), key=lambda item: _natural_key(item[0])))


def list_presets(pattern: str = "*", *, kind: str = "model") -> list[str]:
    """Preset names matching a shell pattern; a pattern without wildcards matches substrings."""
    if not any(char in pattern for char in "*?["):
        pattern = f"*{pattern}*"
    return [name for name in _presets(kind) if fnmatch.fnmatchcase(name, pattern)]


def preset_text(name: str, *, kind: str = "model") -> tuple[str, str] | None:
    """(TOML text, the name errors show) of a preset, or None when no preset has that name."""
    entry = _presets(kind).get(name)
    if entry is None:
        return None
    return entry.read_text(encoding="utf-8"), f"{_PACKAGE_PREFIX}{KINDS[kind]}/{name}.toml"


def is_preset_source(shown: str) -> bool:
    """Whether an error-message file name (from preset_text) is a preset inside the package."""
    return shown.startswith(_PACKAGE_PREFIX)
