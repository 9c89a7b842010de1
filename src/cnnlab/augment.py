"""Keras's random image layers as batched tensor operations on the training device.

`augment(images, layers, generators)` transforms the training images of one step, (S, N, H, W, C)
floats in [0, 1] for S seeds: every random number is drawn on the CPU from the seed's own
generator (so a seed's augmented batches are the same whether it trains alone or stacked, on any
device), then each layer runs once over all S*N images. Only training batches pass through here;
validation and test images never do.

Semantics follow Keras 3 (keras/src/layers/preprocessing/image_preprocessing/): RandomCrop draws
integer offsets uniformly (here after `pad` zero pixels on every side, the CIFAR recipe's
ZeroPadding2D); RandomFlip flips each image with probability 1/2 per direction; RandomTranslation,
RandomRotation and RandomZoom draw their factors uniformly in the given range (rotation in
fractions of 2 pi, counter-clockwise positive; zoom 1 + factor, positive zooms out) and sample
with `fill_mode` reflect / nearest / constant; RandomContrast scales each image's deviation from
its per-channel mean by a factor in [1 - lower, 1 + upper] and clips to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cnnlab.errors import SpecError
from cnnlab.spec.recipes import KerasObject, snake

Generators = Sequence[torch.Generator]


def augment(images: torch.Tensor, layers: Sequence[KerasObject], generators: Generators):
    """The seeds' batches (S, N, H, W, C) through every layer in order, same shape out."""
    seeds, count = images.shape[:2]
    flat = images.reshape(seeds * count, *images.shape[2:])
    for layer in layers:
        flat = _LAYERS[layer.name](flat, layer.kwargs(), _Draw(generators, count, flat.device))
    return flat.view(images.shape)


def check_augmentation(layers: Sequence[KerasObject], image_shape: tuple[int, ...]) -> None:
    """What only the dataset decides: a crop must fit the padded image and keep its size."""
    height, width = image_shape[0], image_shape[1]
    for index, layer in enumerate(layers):
        if layer.name != "RandomCrop":
            continue
        args = layer.kwargs()
        pad, crop = args["pad"], (args["height"], args["width"])
        where = f"training.augment[{index}] ({snake(layer.name)})"
        if crop[0] > height + 2 * pad or crop[1] > width + 2 * pad:
            raise SpecError(
                f"{where}: a {crop[0]}x{crop[1]} crop is larger than the padded image "
                f"({height + 2 * pad}x{width + 2 * pad}: {height}x{width} with pad = {pad})"
            )
        if crop != (height, width):
            raise SpecError(
                f"{where}: the crop must keep the image's size, {height}x{width}, got "
                f"{crop[0]}x{crop[1]} (pad first to crop at random: the CIFAR recipe is "
                "pad = 4 with a crop of the image's size); a smaller crop would change the "
                "model's input"
            )


class _Draw:
    """Uniform numbers per image, each seed's from its own generator, on the CPU then moved."""

    def __init__(self, generators: Generators, count: int, device: torch.device) -> None:
        self.generators, self.count, self.device = generators, count, device

    def uniform(self, low: float, high: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
        parts = [
            torch.rand((self.count, *shape), generator=g, dtype=torch.float64)
            for g in self.generators
        ]
        values = low + (high - low) * torch.cat(parts)
        return values.to(self.device, torch.float32)

    def integers(self, high: int) -> torch.Tensor:
        """Integers in [0, high] (Keras: int(uniform(0, high + 1)))."""
        parts = [torch.randint(high + 1, (self.count,), generator=g) for g in self.generators]
        return torch.cat(parts).to(self.device)


def _crop(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    pad, height, width = args["pad"], args["height"], args["width"]
    padded = F.pad(images, (0, 0, pad, pad, pad, pad)) if pad else images  # NHWC: W, H padded
    top = draw.integers(padded.shape[1] - height)
    left = draw.integers(padded.shape[2] - width)
    device = images.device
    rows = top[:, None] + torch.arange(height, device=device)  # (B, height)
    cols = left[:, None] + torch.arange(width, device=device)  # (B, width)
    batch = torch.arange(len(images), device=device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, height, width, C)


def _flip(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    mode = args["mode"]
    if mode in ("horizontal", "horizontal_and_vertical"):
        flip = draw.uniform(0.0, 1.0) <= 0.5  # Keras: uniform <= 0.5 flips
        images = torch.where(flip[:, None, None, None], images.flip(2), images)
    if mode in ("vertical", "horizontal_and_vertical"):
        flip = draw.uniform(0.0, 1.0) <= 0.5
        images = torch.where(flip[:, None, None, None], images.flip(1), images)
    return images


def _translation(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    dy = draw.uniform(*args["height_factor"])  # fractions of the height; positive moves down
    dx = draw.uniform(*args["width_factor"])
    theta = _identity(len(images), images.device)
    theta[:, 0, 2] = -2 * dx  # the normalised frame spans 2 units
    theta[:, 1, 2] = -2 * dy
    return _resample(images, theta, args)


def _rotation(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    angle = draw.uniform(*args["factor"]) * 2 * math.pi  # counter-clockwise as seen
    height, width = images.shape[1], images.shape[2]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = _identity(len(images), images.device)
    # Output pixel p samples the input at R(angle)^-1 p in pixel units (y down), in the
    # normalised frame whose x and y units differ by the image's aspect.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    return _resample(images, theta, args)


def _zoom(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    zoom_y = 1 + draw.uniform(*args["height_factor"])
    zoom_x = zoom_y if args["width_factor"] is None else 1 + draw.uniform(*args["width_factor"])
    theta = _identity(len(images), images.device)
    theta[:, 0, 0], theta[:, 1, 1] = zoom_x, zoom_y
    return _resample(images, theta, args)


def _contrast(images: torch.Tensor, args: dict, draw: _Draw) -> torch.Tensor:
    lower, upper = args["factor"]
    factor = draw.uniform(1 - lower, 1 + upper)[:, None, None, None]
    mean = images.mean(dim=(1, 2), keepdim=True)
    return ((images - mean) * factor + mean).clamp_(0.0, 1.0)


def _identity(count: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(count, 1, 1)


_PADDING = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}


def _resample(images: torch.Tensor, theta: torch.Tensor, args: dict) -> torch.Tensor:
    """Each output pixel samples the input where `theta` sends it (grid_sample, NCHW view)."""
    planar = images.permute(0, 3, 1, 2)
    grid = F.affine_grid(theta, list(planar.shape), align_corners=False)
    mode = args["interpolation"]
    out = F.grid_sample(
        planar, grid, mode=mode, padding_mode=_PADDING[args["fill_mode"]], align_corners=False
    )
    if args["fill_mode"] == "constant" and args["fill_value"]:
        inside = F.grid_sample(torch.ones_like(planar[:, :1]), grid, mode=mode, align_corners=False)
        out = out + args["fill_value"] * (1 - inside)
    return out.permute(0, 2, 3, 1)


_LAYERS = {
    "RandomCrop": _crop,
    "RandomFlip": _flip,
    "RandomTranslation": _translation,
    "RandomRotation": _rotation,
    "RandomZoom": _zoom,
    "RandomContrast": _contrast,
}
