"""A study's trained networks back: `load_run` (best, last or any kept epoch) and predictions.

A run's directory (`runs/<key>/` in the study) holds its last `checkpoint.KEEP` epoch
checkpoints and `best.safetensors`, the weights of its best validation epoch, written while it
trained. `load_run` rebuilds the network from the spec the store holds and loads those weights.
Its `model` takes NCHW float32 images in [0, 1] (uint8 pixels / 255, as the notebook's
`x_train.astype('float32') / 255`) and returns logits; a run trained with normalize =
"per-channel" has the mean and std its checkpoints recorded built in front (`cnnlab.inputs`),
so predictions never need the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cnnlab.build import build_model
from cnnlab.checkpoint import (
    BEST_MONITOR,
    Checkpoint,
    CheckpointDamaged,
    best_epoch,
    kept_epochs,
    load_best,
    load_epoch,
)
from cnnlab.data.normalize import ChannelStats
from cnnlab.errors import CnnlabError
from cnnlab.grid import did_you_mean
from cnnlab.inputs import with_standardisation
from cnnlab.spec import ModelSpec
from cnnlab.store import RunRecord
from cnnlab.study import RUNS_DIRNAME, dataset_class_names, study_directory, study_runs
from cnnlab.table import stored_spec

EpochChoice = Literal["best", "last"] | int

# Class names of the registered datasets, in label order (where a dataset's labels have names).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    # KMNIST's ten Hiragana, romanised as its paper's table lists them (Clanuwat et al., 2018).
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}


class RunError(CnnlabError):
    """A run cannot be loaded: not in the study, not done, or without the checkpoint asked for."""


@dataclass(frozen=True, eq=False)
class LoadedRun:
    """A trained network back from its study, with what it needs to be used."""

    # Eval mode on the CPU: NCHW float32 in [0, 1] (x / 255) in, logits out; a per-channel
    # run's standardisation is built in front.
    model: torch.nn.Module
    spec: ModelSpec
    key: str
    model_name: str
    seed: int
    epoch: int  # the epoch whose weights `model` holds
    chosen: str  # how the epoch was asked for: "best", "last" or "N"
    image_shape: tuple[int, int, int]  # (height, width, channels) the network takes
    classes: int
    dataset: str  # the dataset's name
    class_names: tuple[str, ...] | None
    history: tuple[dict[str, Any], ...]  # every epoch's metrics, up to the run's last
    test_accuracy: float | None  # the stored run's (the weights it kept: see `load_run`)
    # normalize = "per-channel": the training part's mean and std, built into `model`; None
    # for x / 255 alone. `network`: build_model's network itself, `model` without the
    # standardisation (it takes standardised images; `model` itself for x / 255 runs).
    channel_stats: ChannelStats | None
    network: torch.nn.Module

    @property
    def val_metric(self) -> float | None:
        """The `BEST_MONITOR` metric of the loaded epoch, as recorded while it trained."""
        record = next((r for r in self.history if r["epoch"] == self.epoch), None)
        return None if record is None else record.get(BEST_MONITOR)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images (N, H, W, C) -> the network's input: float32 (N, C, H, W) in [0, 1]."""
        array = np.asarray(images)
        if array.ndim == 3 and self.image_shape[2] == 1:
            array = array[..., None]
        if array.shape[1:] != self.image_shape:
            raise RunError(
                f"images of shape {array.shape[1:]} (H, W, C) given; "
                f"{self.model_name} takes {_shape_text(self.image_shape)}"
            )
        tensor = torch.from_numpy(np.array(array, dtype=np.float32, order="C")) / 255.0
        return tensor.permute(0, 3, 1, 2)

    @torch.inference_mode()
    def predict(self, images: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class (N,) and probabilities (N, classes) of uint8 images (N, H, W, C)."""
        probabilities = []
        for start in range(0, len(images), batch):
            logits = self.model(self.preprocess(images[start : start + batch]))
            probabilities.append(torch.softmax(logits.float(), dim=1))
        joined = torch.cat(probabilities) if probabilities else torch.zeros(0, self.classes)
        return joined.argmax(dim=1).numpy(), joined.numpy()

    def class_name(self, index: int) -> str:
        """The class's name where the dataset has one, else its index."""
        return self.class_names[index] if self.class_names else str(index)


def load_run(
    directory: str | Path,
    *,
    model: str,
    seed: int | None = None,
    epoch: EpochChoice = "best",
) -> LoadedRun:
    """The trained network of `model`'s run with `seed` in the study at `directory`.

    epoch: "best" (the epoch with the highest validation accuracy, kept while the run trained;
    for a run whose EarlyStopping restored its best weights, those weights, which its test
    figures came from, as Keras leaves the model), "last", or an epoch number whose
    checkpoint is kept (a finished run keeps its last and its best epoch). seed may be left
    out when the
    model has one run. Raises RunError (one line naming the model, seed, epoch and what exists)
    for a model or seed not in the study, a run not done, or an epoch without a checkpoint.
    """
    root = study_directory(directory)
    run = find_run(study_runs(root), model=model, seed=seed)
    run_dir = root / RUNS_DIRNAME / run.key
    checkpoint = _checkpoint(run, run_dir, epoch)
    identity = checkpoint.identity
    image_shape = tuple(identity["dataset"]["image_shape"])
    classes = int(identity["dataset"]["classes"])
    stats = _channel_stats(run, identity)
    spec = stored_spec(run.spec)
    network = build_model(spec, image_shape, classes)
    network.load_state_dict(checkpoint.model_state)
    return LoadedRun(
        model=with_standardisation(network, stats),
        spec=spec,
        key=run.key,
        model_name=run.model,
        seed=run.seed,
        epoch=checkpoint.epoch,
        chosen=str(epoch),
        image_shape=image_shape,  # type: ignore[arg-type]
        classes=classes,
        dataset=identity["dataset"]["name"],
        class_names=_class_names(root, run.dataset, identity["dataset"]["name"], classes),
        history=tuple(_history(run)),
        test_accuracy=run.test.accuracy if run.test else None,
        channel_stats=stats,
        network=network,
    )


def _channel_stats(run: RunRecord, identity: dict[str, Any]) -> ChannelStats | None:
    """The statistics a per-channel run standardised with, as its checkpoint recorded them."""
    normalize = run.training.get("normalize", "scale")
    if normalize == "scale":
        return None
    if normalize != "per-channel" or "channel_stats" not in identity:
        # predictions on x / 255 alone would be silently wrong
        raise RunError(
            f"{run.model} seed {run.seed} was trained with normalize = {normalize!r}, but its "
            "checkpoint holds no channel statistics this cnnlab can apply"
        )
    return ChannelStats.from_dict(identity["channel_stats"])


def find_run(runs: Sequence[RunRecord], *, model: str, seed: int | None) -> RunRecord:
    """The run of `model` with `seed` (or its only run); a RunError lists what there is."""
    models = list(dict.fromkeys(run.model for run in runs))
    mine = [run for run in runs if run.model == model]
    if not mine:
        raise RunError(
            f"no model {model!r} in the study{did_you_mean(model, models)} "
            f"(models: {', '.join(models) or 'none'})"
        )
    seeds = ", ".join(str(run.seed) for run in mine)
    if seed is None:
        if len(mine) > 1:
            raise RunError(f"{model} has runs with seeds {seeds}; say which with --seed / seed=")
        chosen = mine[0]
    else:
        chosen = next((run for run in mine if run.seed == seed), None)
        if chosen is None:
            raise RunError(f"{model} has no run with seed {seed} (seeds: {seeds})")
    if chosen.status != "done":
        epochs = f"{len(chosen.epochs)} of {chosen.training.get('epochs', '?')} epochs"
        raise RunError(
            f"{model} seed {chosen.seed} is {chosen.status} ({epochs}"
            + (f"; {chosen.reason}" if chosen.reason else "")
            + "): only a done run can be loaded"
        )
    return chosen


def _checkpoint(run: RunRecord, run_dir: Path, epoch: EpochChoice) -> Checkpoint:
    where = f"{run.model} seed {run.seed}"
    last = len(run.epochs)
    restored = None  # EarlyStopping's restored weights: read (from the last checkpoint) if needed
    try:
        if epoch == "best":
            return _restored_by_early_stopping(run, run_dir) or _best(run, run_dir, where)
        number = last if epoch == "last" else _epoch_number(epoch, last, where)
        checkpoint = load_epoch(run_dir, number) or _best_if_epoch(run_dir, number)
        if checkpoint is None:
            restored = _restored_by_early_stopping(run, run_dir)
            if restored is not None and restored.epoch == number:
                checkpoint = restored
    except CheckpointDamaged as damage:
        raise RunError(f"{where}: the checkpoint in {run_dir} is damaged ({damage})") from None
    if checkpoint is None:
        kept = _kept(run_dir, restored)
        raise RunError(f"{where}: no checkpoint of epoch {number} in {run_dir} (kept: {kept})")
    return checkpoint


def _kept(run_dir: Path, restored: Checkpoint | None = None) -> str:
    """'epoch 7 (best), epoch 12': the epochs whose weights a run directory holds (the best
    is EarlyStopping's where it restored its weights)."""
    kept = {epoch: "" for epoch in kept_epochs(run_dir)}
    try:
        saved = load_best(run_dir)
    except CheckpointDamaged:
        saved = None
    if saved is not None:
        kept[saved.epoch] = "" if restored else " (best)"
    if restored is not None:
        kept[restored.epoch] = " (best)"
    return ", ".join(f"epoch {e}{label}" for e, label in sorted(kept.items())) or "none"


def _best(run: RunRecord, run_dir: Path, where: str) -> Checkpoint:
    wanted = best_epoch(_history(run))
    if wanted is None:
        raise RunError(
            f"{where} was trained without validation, so it has no best epoch; "
            'use epoch="last" (--epoch last)'
        )
    checkpoint = load_best(run_dir)
    if checkpoint is None:
        raise RunError(
            f"{where}: no best-epoch checkpoint in {run_dir} (trained by an older cnnlab?); "
            'use epoch="last" (--epoch last)'
        )
    if checkpoint.epoch != wanted:
        raise RunError(
            f"{where}: {run_dir / 'best.json'} holds epoch {checkpoint.epoch}, but the stored "
            f"history's best {BEST_MONITOR} is epoch {wanted}; use --epoch last"
        )
    return checkpoint


def _restored_by_early_stopping(run: RunRecord, run_dir: Path) -> Checkpoint | None:
    """The weights EarlyStopping kept and restored (restore_best_weights), which the run was
    tested with; they travel inside its last checkpoint. None for a run that restored none."""
    early_stopping = run.training.get("early_stopping") or {}
    if run.best_epoch is None or not early_stopping.get("restore_best_weights"):
        return None
    last = load_epoch(run_dir, len(run.epochs))
    if last is None or not last.kept_state:
        return None
    return replace(last, epoch=run.best_epoch, model_state=last.kept_state)


def _best_if_epoch(run_dir: Path, epoch: int) -> Checkpoint | None:
    """The best-epoch checkpoint when it holds `epoch` (a finished run keeps only its last)."""
    best = load_best(run_dir)
    return best if best is not None and best.epoch == epoch else None


def _epoch_number(epoch: Any, last: int, where: str) -> int:
    if isinstance(epoch, str) and epoch.isdigit():
        epoch = int(epoch)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise RunError(f'epoch must be "best", "last" or a number, got {epoch!r}')
    if not 1 <= epoch <= last:
        raise RunError(f"{where} has epochs 1..{last}, not {epoch}")
    return epoch


def _history(run: RunRecord) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e.epoch,
            "loss": e.loss,
            "accuracy": e.accuracy,
            "val_loss": e.val_loss,
            "val_accuracy": e.val_accuracy,
        }
        for e in run.epochs
    ]


def _class_names(root: Path, dataset: str, name: str, classes: int) -> tuple[str, ...] | None:
    """The names the study recorded from its dataset (a folder's, CIFAR's), else the table's."""
    names = dataset_class_names(root, dataset) or CLASS_NAMES.get(name)
    return names if names is not None and len(names) == classes else None


def _shape_text(shape: tuple[int, int, int]) -> str:
    height, width, channels = shape
    kind = "grayscale" if channels == 1 else "RGB" if channels == 3 else f"{channels}-channel"
    return f"{height}x{width} {kind} images ({shape})"


# -- image files ---------------------------------------------------------------------------


def read_images(paths: Sequence[str | Path], image_shape: tuple[int, int, int]) -> np.ndarray:
    """Image files as uint8 (N, H, W, C) for a network taking `image_shape`.

    Never resized or converted: a file of another size or colour mode is a RunError naming the
    file, what it is and what the network takes (height x width, as image shapes are written;
    Pillow's size is width, height).
    """
    from PIL import Image, UnidentifiedImageError

    height, width, channels = image_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                size, image_mode = image.size, image.mode
                array = np.asarray(image)
        except FileNotFoundError:
            raise RunError(f"{path}: no such file") from None
        except (UnidentifiedImageError, OSError) as error:
            raise RunError(f"{path}: not an image file Pillow can read ({error})") from None
        if size != (width, height) or image_mode != mode:
            raise RunError(
                f"{path}: a {size[1]}x{size[0]} image in mode {image_mode}; the network takes "
                f"{height}x{width} in mode {mode} ({_shape_text(image_shape)}); "
                "resize or convert it first"
            )
        arrays.append(array.reshape(height, width, channels))
    return np.stack(arrays).astype(np.uint8)
