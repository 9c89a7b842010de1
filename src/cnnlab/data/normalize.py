"""Preprocessing as numbers a run records: the notebook's x / 255, or per-channel standardising.

`normalize = "per-channel"` standardises each channel with the mean and standard deviation of
the *training part* of the data (after the train limit and the validation split; never the test
set), in the [0, 1] units of x / 255, as Keras's `Normalization(axis=-1).adapt(x_train / 255)`
computes them. The statistics are accumulated in chunks of images, in float64, so the uint8
images are never converted whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZE_MODES = ("scale", "per-channel")  # "scale": x / 255 only (the notebook)
_CHUNK_IMAGES = 4096


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation in x / 255 units, one value per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


def channel_stats(images: np.ndarray) -> ChannelStats:
    """The per-channel mean and (population) std of uint8 images (N, H, W, C), in [0, 1] units.

    A channel with no spread (a constant channel) gets std 1, so standardising leaves it
    centred instead of dividing by zero.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected uint8 images (N, H, W, C) with N >= 1, got {images.shape}")
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), _CHUNK_IMAGES):
        chunk = images[start : start + _CHUNK_IMAGES].reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = images.size // channels
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 0.0)
    std = np.sqrt(variance)
    std[std == 0] = 255.0
    return ChannelStats(tuple((mean / 255).tolist()), tuple((std / 255).tolist()))
