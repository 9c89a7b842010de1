"""Where an error is in a spec: file, line and label, for one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import SpecError
from cnnlab.spec.toml_lines import toml_positions


@dataclass(frozen=True)
class Source:
    """A spec's origin: the name errors show and, for files, the TOML text to find lines in."""

    name: str
    text: str | None = None

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """Line of the deepest part of `path` found in the text (None for dicts)."""
        if self.text is None:
            return None
        positions = toml_positions(self.text)
        while path:
            if path in positions:
                return positions[path]
            path = path[:-1]
        return None


@dataclass(frozen=True)
class At:
    """A place in a spec: the key path (for the line) and a label such as 'layer 3 (conv)'."""

    source: Source
    path: tuple[str | int, ...] = ()
    label: str = ""

    def key(self, *keys: str | int, label: str = "") -> At:
        joined = ": ".join(part for part in (self.label, label) if part)
        return At(self.source, self.path + keys, joined)

    def error(self, rule: str) -> SpecError:
        return SpecError(": ".join(part for part in (self.where(), self.label, rule) if part))

    def where(self) -> str:
        """ "file:line" of this place, or the source's name where the line is unknown."""
        line = self.source.line_of(self.path)
        return self.source.name if line is None else f"{self.source.name}:{line}"
