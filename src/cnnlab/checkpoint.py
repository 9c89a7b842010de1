"""Per-epoch checkpoints that survive kill -9 and power loss, and say when they are damaged.

A checkpoint of epoch N is two files in the run directory:

- `epoch-NNNN.safetensors`: every tensor (weights and buffers under `model/`, optimiser state
  under `optimizer/<param index>/<key>`, RNG states under `rng/`). safetensors, never pickle:
  loading a checkpoint cannot run code.
- `epoch-NNNN.json`: the manifest, written after the tensors: epoch, the tensors' sha256, the
  history so far, what produced the run, the optimiser's non-tensor state; and a sha256 of
  itself, so a damaged manifest is caught too.

Each file is written to a temporary name, fsynced and renamed (`os.replace`, atomic on POSIX and
Windows), so a reader sees a whole old file or a whole new one. A checkpoint counts only when
both files are there and both checksums match; the newest such one is loaded and damaged ones are
reported. The last `KEEP` checkpoints are kept, so one damaged file costs one epoch, not the run.

Beside them, `best.safetensors` + `best.json` hold the weights of the epoch with the best
validation metric so far (`BEST_MONITOR`), written in the same way as that epoch ends: "the best
model" needs no second pass and survives the rotation of the epoch checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

FORMAT = 1
KEEP = 2  # the newest good checkpoint and the one before it
_NAME = re.compile(r"^epoch-(\d{4,})\.json$")
BEST = "best"  # best.safetensors + best.json
# The report ranks models by accuracy, so "best" is the highest validation accuracy; the first
# epoch reaching it wins a tie (as Keras's ModelCheckpoint(save_best_only) keeps the first).
BEST_MONITOR = "val_accuracy"


@dataclass(frozen=True)
class Checkpoint:
    """One verified checkpoint, as loaded."""

    epoch: int
    path: Path
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_states: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    identity: dict[str, Any]


def save_checkpoint(
    run_dir: Path,
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng_states: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
    identity: dict[str, Any],
) -> Path:
    """Write epoch `epoch`'s checkpoint atomically, drop old ones; returns the tensors' path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer_tensors, optimizer_rest = _split_optimizer_state(optimizer.state_dict())
    tensors = {
        **{f"model/{k}": v for k, v in model.state_dict().items()},
        **optimizer_tensors,
        **{f"rng/{k}": v for k, v in rng_states.items()},
    }
    blob = save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    stem = f"epoch-{epoch:04d}"
    _write_atomic(run_dir / f"{stem}.safetensors", blob)
    body = {
        "format": FORMAT,
        "epoch": epoch,
        "tensors": f"{stem}.safetensors",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "history": history,
        "identity": identity,
        "optimizer": optimizer_rest,
    }
    _write_atomic(run_dir / f"{stem}.json", _sealed_json(body))
    _remove_others(run_dir, keep=range(epoch - KEEP + 1, epoch + 1))
    return run_dir / f"{stem}.safetensors"


def load_latest(run_dir: Path) -> tuple[Checkpoint | None, tuple[str, ...]]:
    """The newest checkpoint whose files are whole (None if there is none), and the damaged
    newer ones passed over, each as "epoch-0003: why"."""
    damaged: list[str] = []
    for epoch, manifest in sorted(_manifests(run_dir), reverse=True):
        try:
            return _load(run_dir, epoch, manifest), tuple(damaged)
        except CheckpointDamaged as problem:
            damaged.append(f"{manifest.stem}: {problem}")
    return None, tuple(damaged)


class CheckpointDamaged(Exception):
    """A checkpoint file is missing, truncated or altered (internal: the loader moves on)."""


def restore_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimiser state, each buffer laid out like its parameter.

    torch's fused and foreach kernels pair a parameter with its state buffers element by
    element, so a channels_last weight needs channels_last moments.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, buffers in state["state"].items():
        param = params[int(index)]
        for key, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                buffers[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    optimizer.load_state_dict(state)


def _load(run_dir: Path, epoch: int, manifest: Path) -> Checkpoint:
    body = _read_sealed_json(manifest)
    blob_path = run_dir / body["tensors"]
    try:
        blob = blob_path.read_bytes()
    except OSError as error:
        raise CheckpointDamaged(f"cannot read {blob_path.name}: {error.strerror}") from None
    if hashlib.sha256(blob).hexdigest() != body["sha256"]:
        raise CheckpointDamaged(f"{blob_path.name} does not match its sha256")
    tensors = load_tensors(blob)
    return Checkpoint(
        epoch=epoch,
        path=blob_path,
        model_state=_prefixed(tensors, "model/"),
        optimizer_state=_join_optimizer_state(_prefixed(tensors, "optimizer/"), body["optimizer"]),
        rng_states=_prefixed(tensors, "rng/"),
        history=body["history"],
        identity=body["identity"],
    )


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of `optimizer.state_dict()` by flat name; everything else as JSON-able data."""
    tensors, scalars = {}, {}
    for index, buffers in state["state"].items():
        for key, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, scalars in rest["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in rest["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _sealed_json(body: dict[str, Any]) -> bytes:
    text = json.dumps(body, sort_keys=True)
    seal = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"body": body, "sha256": seal}, sort_keys=True, indent=1).encode()


def _read_sealed_json(path: Path) -> dict[str, Any]:
    try:
        outer = json.loads(path.read_bytes())
        body = outer["body"]
        seal = outer["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointDamaged(f"{path.name} is unreadable") from None
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != seal:
        raise CheckpointDamaged(f"{path.name} does not match its sha256")
    if body.get("format") != FORMAT:
        raise CheckpointDamaged(f"{path.name} has format {body.get('format')}, not {FORMAT}")
    return body


def _manifests(run_dir: Path) -> list[tuple[int, Path]]:
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


def _remove_others(run_dir: Path, keep: range) -> None:
    """Delete checkpoints outside `keep` (older ones, and newer ones from a damaged future)
    and temp files that a killed writer left behind."""
    for path in run_dir.iterdir():
        match = re.match(r"^epoch-(\d{4,})\.(json|safetensors)$", path.name)
        stale_temp = path.name.startswith((".epoch-", f".{BEST}.")) and ".tmp-" in path.name
        if (match and int(match.group(1)) not in keep) or stale_temp:
            path.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync, rename over `path`, fsync the directory."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory; its rename is durable on its own
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint's tensors file (e.g. `TrainResult.checkpoint`)."""
    from safetensors.torch import load_file

    return _prefixed(load_file(str(path)), "model/")


# -- the best epoch's weights ---------------------------------------------------------------


def best_epoch(history: list[dict[str, Any]]) -> int | None:
    """The epoch of `history` with the highest `BEST_MONITOR` (the first of equals); None when
    no epoch was validated."""
    scored = [r for r in history if r.get(BEST_MONITOR) is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r[BEST_MONITOR], -r["epoch"]))["epoch"]


def save_best(
    run_dir: Path,
    *,
    epoch: int,
    model: torch.nn.Module,
    history: list[dict[str, Any]],
    identity: dict[str, Any],
) -> Path | None:
    """Keep `epoch`'s weights as the run's best when it is the best epoch of `history`;
    returns the tensors' path when it wrote them."""
    if best_epoch(history) != epoch:
        return None
    blob = save_tensors(
        {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    )
    _write_atomic(run_dir / f"{BEST}.safetensors", blob)
    record = next(r for r in history if r["epoch"] == epoch)
    body = {
        "format": FORMAT,
        "epoch": epoch,
        "monitor": BEST_MONITOR,
        "value": record[BEST_MONITOR],
        "tensors": f"{BEST}.safetensors",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "history": history,
        "identity": identity,
        "optimizer": {"param_groups": [], "scalars": {}},
    }
    _write_atomic(run_dir / f"{BEST}.json", _sealed_json(body))
    return run_dir / f"{BEST}.safetensors"


def load_best(run_dir: Path) -> Checkpoint | None:
    """The best epoch's weights (no optimiser or RNG state); None when the run kept none.

    Raises CheckpointDamaged when its files are not whole.
    """
    manifest = run_dir / f"{BEST}.json"
    if not manifest.is_file():
        return None
    return _load(run_dir, _read_sealed_json(manifest)["epoch"], manifest)


def load_epoch(run_dir: Path, epoch: int) -> Checkpoint | None:
    """Epoch `epoch`'s checkpoint when it is still kept; None when it is not.

    Raises CheckpointDamaged when its files are not whole.
    """
    manifest = run_dir / f"epoch-{epoch:04d}.json"
    return _load(run_dir, epoch, manifest) if manifest.is_file() else None


def kept_epochs(run_dir: Path) -> list[int]:
    """The epochs whose checkpoints are on disk (whole or not), oldest first."""
    return sorted(epoch for epoch, _ in _manifests(run_dir))


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` as checkpoints are written: temp file, fsync, atomic rename."""
    _write_atomic(path, data)
