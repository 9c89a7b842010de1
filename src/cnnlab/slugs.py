"""Model names as file and directory names: the report's plot files and the TensorBoard export's
run directories. A name keeps its own slug; two names that would share one each get a short
hash of the exact name, so no export overwrites another model's files."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence


def slug(text: str) -> str:
    """A file-name-safe form of a model name ('seed/model-1' -> 'seed-model-1')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


def unique_slugs(names: Sequence[str]) -> dict[str, str]:
    """Each name's slug, made unique: where two names share one ('a/b', 'a-b', 'a?b'; also 'A'
    and 'a', one file on a case-blind disk) each gets a short hash of its exact name."""
    slugs = {name: slug(name) for name in names}
    shared = Counter(text.lower() for text in slugs.values())
    return {
        name: text if shared[text.lower()] == 1 else f"{text}-{_short_hash(name)}"
        for name, text in slugs.items()
    }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
