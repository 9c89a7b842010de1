"""Per-channel statistics for `normalize = "per-channel"`: the mean and std a run standardises with.

They are those of the *training part* of the data (after the train limit and the validation
split; never the validation part or the test set), in the [0, 1] units of x / 255, as Keras's
`Normalization(axis=-1).adapt(x_train / 255)` computes them. The sums are taken in integers over
chunks of the uint8 images, so the images are never converted whole and the sums are exact
(the same statistics on every machine, whatever the order of the chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_CHUNK_IMAGES = 4096  # 12 MB of 32x32x3 images at a time, 25 MB as uint16 squares


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation in x / 255 units, one value per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelStats:
        """Back from `to_dict` (a checkpoint's JSON): floats survive JSON exactly."""
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))


def channel_stats(images: np.ndarray) -> ChannelStats:
    """The per-channel mean and (population) std of uint8 images (N, H, W, C), in [0, 1] units.

    A channel with no spread (a constant channel) gets std 1, so standardising leaves it
    centred instead of dividing by zero.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected uint8 images (N, H, W, C) with N >= 1, got {images.shape}")
    channels = images.shape[-1]
    total = np.zeros(channels, np.int64)
    squares = np.zeros(channels, np.int64)
    for start in range(0, len(images), _CHUNK_IMAGES):
        chunk = np.asarray(images[start : start + _CHUNK_IMAGES]).reshape(-1, channels)
        total += chunk.sum(axis=0, dtype=np.int64)
        wide = chunk.astype(np.uint16)  # 255 ** 2 = 65,025 fits
        squares += np.multiply(wide, wide, out=wide).sum(axis=0, dtype=np.int64)
    count = images.size // channels
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 0.0)
    std = np.sqrt(variance)
    std[std == 0] = 255.0
    return ChannelStats(tuple((mean / 255).tolist()), tuple((std / 255).tolist()))
