"""Text from a store or a spec file (model names above all) made inert in Markdown.

A model may be named `**best**`, `a|b`, `<img src=x onerror=...>` or `$\\frac{$`: in the
exported `results.md` and `conclusions.md` such a name must read as itself, not turn into
emphasis, a table cell, raw HTML or a formula (GitHub renders `$...$`). CommonMark lets a
backslash escape any ASCII punctuation, so the characters that can start markup get one.
"""

from __future__ import annotations

import re

# Inline markup only: the texts escaped here never start a line (a list item or cell does).
_MARKUP = re.compile(r"([\\`*_\[\]<>|&~$])")


def escape(text: str) -> str:
    """`text` as literal Markdown text: 'a_b|*c*' -> 'a\\_b\\|\\*c\\*'."""
    return _MARKUP.sub(r"\\\1", text)
