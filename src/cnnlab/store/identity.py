"""A run's identity: the hash of everything that determines its result, and nothing else.

Editing one model changes only that model's keys, so a study re-runs only what changed, and
results of different specs never share a row. Versions and devices are recorded with a run but
are not part of its key: upgrading torch must not throw away a finished study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnlab.store.errors import StoreError

# Bumped only when the canonical form changes on purpose (every stored key changes with it).
KEY_VERSION = 1
KEY_LENGTH = 16  # hex digits: 64 bits, no collision in any study that fits on a disk

# Spec fields that describe a model to people but do not change what it learns: prose and
# figures reported elsewhere (the notebook's printed test loss).
NON_RESULT_SPEC_FIELDS = ("description", "reported")


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, tuples as lists, dataclasses as objects.

    A dataclass becomes {"type": its class name, fields...}, so Conv2D and Dense layers with
    equal fields stay different. NaN and infinities are refused (JSON has no form for them).
    """
    return json.dumps(
        _jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def run_key(spec: Any, *, seed: int, dataset: str, training: Any) -> str:
    """The run id: a hash of the resolved spec, seed, dataset identity and training settings.

    `spec` and `training` are JSON-able mappings or frozen spec dataclasses; pass the same
    form every time, since the key hashes the form. The spec's `description` and `reported`
    fields are left out (see NON_RESULT_SPEC_FIELDS).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StoreError(f"a run's seed must be an integer, got {seed!r}")
    spec_json = _jsonable(spec)
    if not isinstance(spec_json, dict):
        raise StoreError(f"a run's spec must be a mapping or a spec object, got {spec!r}")
    resolved = {k: v for k, v in spec_json.items() if k not in NON_RESULT_SPEC_FIELDS}
    payload = {
        "key_version": KEY_VERSION,
        "spec": resolved,
        "seed": int(seed),
        "dataset": dataset,
        "training": training,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def labels_hash(labels: np.ndarray) -> str:
    """A hash of a test set's labels in order: equal hashes mean predictions can be paired."""
    values = np.ascontiguousarray(np.asarray(labels), dtype="<i8")
    return hashlib.sha256(values.tobytes()).hexdigest()[:KEY_LENGTH]


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON types, refusing what JSON cannot hold exactly."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"a run's settings must be finite numbers, got {value!r}")
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # compare=False marks bookkeeping that is not part of the value (a spec's layer_places)
        # and a field added after runs were stored is left out at its default (their keys stay).
        fields = {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.compare
            and not (f.metadata.get("omit_default") and getattr(value, f.name) == f.default)
        }
        return {"type": type(value).__name__, **fields}
    if isinstance(value, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    raise StoreError(f"cannot store a value of type {type(value).__name__} as JSON: {value!r}")


def _json_key(key: Any) -> str:
    if not isinstance(key, str):
        raise StoreError(f"JSON object keys must be strings, got {key!r}")
    return key
