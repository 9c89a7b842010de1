"""The line of every key in TOML text (tomllib gives values without positions)."""

from __future__ import annotations

import bisect
import contextlib
import functools


@functools.lru_cache(maxsize=16)  # every layer of a file asks for its line: scan it once
def toml_positions(text: str) -> dict[tuple[str | int, ...], int]:
    """The line (from 1) of every key and array element of valid TOML text, by key path.

    tomllib gives values without positions; errors found after parsing still name a line.
    Best effort: on text it cannot follow it returns what it found so far.
    """
    scanner = _Scanner(text)
    with contextlib.suppress(IndexError, ValueError, RecursionError):
        scanner.document()
    return scanner.positions


class _Scanner:
    """A small reader of TOML structure (tables, keys, arrays, inline tables), not values."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0
        self.positions: dict[tuple[str | int, ...], int] = {}
        self.newlines = [index for index, char in enumerate(text) if char == "\n"]
        self.counters: dict[tuple[str | int, ...], int] = {}

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1

    def document(self) -> None:
        prefix: tuple[str | int, ...] = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.text):
                return
            start = self.i
            if self.text.startswith("[[", self.i):
                self.i += 2
                key = self.key()
                base = self.resolve(key[:-1]) + key[-1:]
                self.counters[base] = self.counters.get(base, -1) + 1
                prefix = (*base, self.counters[base])
                self.i = self.text.index("]]", self.i) + 2
            elif self.text[self.i] == "[":
                self.i += 1
                prefix = self.resolve(self.key())
                self.i = self.text.index("]", self.i) + 1
            else:
                self.key_value(prefix)
                self.advanced(start)
                continue
            self.positions[prefix] = self.line(start)

    def resolve(self, key: tuple[str, ...]) -> tuple[str | int, ...]:
        """[model.reported] after the 2nd [[model]] is ("model", 1, "reported")."""
        out: tuple[str | int, ...] = ()
        for part in key:
            out = (*out, part)
            if out in self.counters:
                out = (*out, self.counters[out])
        return out

    def key_value(self, prefix: tuple[str | int, ...]) -> None:
        start = self.i
        path = prefix + self.key()
        self.positions[path] = self.line(start)
        self.skip(newlines=False)
        self.i += 1  # "="
        self.skip(newlines=False)
        self.value(path)

    def key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self.skip(newlines=False)
            char = self.text[self.i]
            if char in "\"'":
                end = self.text.index(char, self.i + 1)
                parts.append(self.text[self.i + 1 : end])
                self.i = end + 1
            else:
                start = self.i
                while self.text[self.i].isalnum() or self.text[self.i] in "_-":
                    self.i += 1
                parts.append(self.text[start : self.i])
            self.skip(newlines=False)
            if self.text[self.i] != ".":
                return tuple(parts)
            self.i += 1

    def value(self, path: tuple[str | int, ...]) -> None:
        char = self.text[self.i]
        if char == "[":
            self.container(path, "]", array=True)
        elif char == "{":
            self.container(path, "}", array=False)
        elif self.text.startswith(('"""', "'''"), self.i):
            self.multiline_string(self.text[self.i])
        elif char in "\"'":
            self.string(char)
        else:
            while self.i < len(self.text) and self.text[self.i] not in ",]}\n#":
                self.i += 1

    def container(self, path: tuple[str | int, ...], close: str, *, array: bool) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip(newlines=True)
            start = self.i
            if self.text[self.i] == close:
                self.i += 1
                return
            if array:
                self.positions[(*path, index)] = self.line(self.i)
                self.value((*path, index))
                index += 1
            else:
                self.key_value(path)
            self.skip(newlines=True)
            if self.text[self.i] == ",":
                self.i += 1
            self.advanced(start)

    def advanced(self, start: int) -> None:
        """Stop (as on text it cannot follow) rather than loop without moving."""
        if self.i <= start:
            raise ValueError("the scanner did not advance")

    def string(self, quote: str) -> None:
        self.i += 1
        while self.text[self.i] != quote:
            self.i += 2 if quote == '"' and self.text[self.i] == "\\" else 1
        self.i += 1

    def multiline_string(self, quote: str) -> None:
        self.i += 3
        while not self.text.startswith(quote * 3, self.i):
            self.i += 2 if quote == '"' and self.text[self.i] == "\\" else 1
        self.i += 3
        while self.i < len(self.text) and self.text[self.i] == quote:
            self.i += 1

    def skip(self, *, newlines: bool) -> None:
        while self.i < len(self.text):
            char = self.text[self.i]
            if char in " \t\r" or (newlines and char == "\n"):
                self.i += 1
            elif char == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            else:
                return
