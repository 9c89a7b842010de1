"""One run's training recipe while it trains: its learning rate, callbacks and kept weights.

The engine (`cnnlab.train`) asks it for the learning rate of each step and tells it how each
epoch ended; it answers whether the run stops and keeps EarlyStopping's best weights. Its state
goes into every checkpoint (`state()`, `kept`), so a resumed run continues a schedule, a
patience count and a plateau exactly where the interrupted one was.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.callbacks import EarlyStopping, ReduceLROnPlateau, learning_rate_at
from cnnlab.spec import TrainingSpec


class Recipe:
    """A run's learning rate, EarlyStopping and ReduceLROnPlateau state, and kept weights."""

    def __init__(self, training: TrainingSpec, learning_rate: float, augment_seed: int) -> None:
        self.schedule = training.learning_rate_schedule
        self.learning_rate = learning_rate  # the optimiser's, until ReduceLROnPlateau lowers it
        self.early = (
            EarlyStopping.from_spec(training.early_stopping) if training.early_stopping else None
        )
        self.plateau = (
            ReduceLROnPlateau.from_spec(training.reduce_lr_on_plateau)
            if training.reduce_lr_on_plateau
            else None
        )
        self.augment = torch.Generator().manual_seed(augment_seed)
        self.kept: dict[str, torch.Tensor] | None = None  # EarlyStopping's best weights (CPU)

    @property
    def sets_rates(self) -> bool:
        """Whether the learning rate may change while the run trains."""
        return self.schedule is not None or self.plateau is not None

    def rate_at(self, step: int) -> float:
        """The learning rate of optimiser step `step` (0 for the first update)."""
        if self.schedule is not None:
            return learning_rate_at(self.schedule, step)
        return self.learning_rate

    @property
    def stopped(self) -> bool:
        return self.early is not None and self.early.stopped_epoch > 0

    @property
    def stopped_epoch(self) -> int | None:
        """The 1-based epoch EarlyStopping stopped after (Keras's index + 1)."""
        return self.early.stopped_epoch + 1 if self.stopped else None  # type: ignore[union-attr]

    @property
    def best_epoch(self) -> int | None:
        """The 1-based epoch of the monitor's best value, once one was seen."""
        if self.early is None or (self.early.best is None and not self.early.has_best_weights):
            return None
        return self.early.best_epoch + 1

    def end_epoch(self, epoch: int, logs: dict[str, float | None], model: torch.nn.Module):
        """The callbacks after 1-based `epoch`: EarlyStopping first, then ReduceLROnPlateau
        (the order Keras runs callbacks in when listed so)."""
        if self.early is not None:
            keep, _ = self.early.on_epoch_end(epoch - 1, logs)
            if keep:
                self.kept = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.plateau is not None:
            self.learning_rate = self.plateau.on_epoch_end(logs, self.learning_rate)

    def restore_best(self, model: torch.nn.Module) -> bool:
        """Keras's on_train_end: the best weights back into `model` when asked for and held."""
        if self.early is None or not self.early.restore_best_weights or self.kept is None:
            return False
        model.load_state_dict(self.kept)
        return True

    def state(self) -> dict[str, Any]:
        """JSON for the checkpoint (the kept weights go beside it as tensors)."""
        state: dict[str, Any] = {"learning_rate": self.learning_rate}
        if self.early is not None:
            state["early_stopping"] = self.early.state()
        if self.plateau is not None:
            state["reduce_lr_on_plateau"] = self.plateau.state()
        state["augment"] = self.augment.get_state().tolist()
        return state

    def restore(self, state: dict[str, Any], kept: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint's `state()` and kept weights."""
        if not state:
            return
        self.learning_rate = state["learning_rate"]
        if self.early is not None:
            self.early = EarlyStopping(**state["early_stopping"])
        if self.plateau is not None:
            self.plateau = ReduceLROnPlateau(**state["reduce_lr_on_plateau"])
        self.augment.set_state(torch.tensor(state["augment"], dtype=torch.uint8))
        self.kept = dict(kept) or None
