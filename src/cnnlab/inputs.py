"""What a network is fed: uint8 pixels as x / 255, then, with `normalize = "per-channel"`,
each channel standardised with the training part's mean and std (`cnnlab.data.normalize`).

Training converts one batch at a time on its device (`as_inputs`, then augmentation in [0, 1]
units, then `standardise`), so images stay bytes in memory. A trained run carries its
statistics: `with_standardisation` puts the same arithmetic in front of a loaded network, so a
loaded or exported model takes x / 255 whatever the run's normalize was.
"""

from __future__ import annotations

import torch

from cnnlab.data.normalize import ChannelStats


def as_inputs(images: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images -> float32 in [0, 1], on their device.

    x / 255 in float32, as the notebook's `x_train.astype('float32') / 255`: the same values
    the whole array converted at once would give.
    """
    return images.float().div_(255)


class Standardiser:
    """(x - mean) / std over the last (channel) axis of (..., H, W, C) batches, on the device.

    float32, as Keras's Normalization computes in the layer's dtype; the statistics are those
    the run records (float64 in JSON), rounded to float32 once here and in `Standardise`, so
    both give the same numbers. mean and std are laid out as whole (H, W, C) images, the same
    numbers broadcast over the batch only: broadcast over a last axis of 3 instead, torch's CPU
    kernels took 3 to 14 times as long (3.7-5.2 ms against 0.4-1.1 ms for a batch of 128
    32x32x3 images, repeated on the shared 2-core Xeon).
    """

    def __init__(
        self, stats: ChannelStats, device: torch.device, image_shape: tuple[int, int, int]
    ) -> None:
        self.stats = stats
        self.mean, self.std = (
            torch.tensor(values, dtype=torch.float32, device=device)
            .expand(image_shape)
            .contiguous()
            for values in (stats.mean, stats.std)
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.sub_(self.mean).div_(self.std)


class Standardise(torch.nn.Module):
    """The run's standardisation in front of its network: NCHW x / 255 in, the network's
    logits out. mean and std are buffers, so ONNX and TorchScript exports hold them."""

    def __init__(
        self, network: torch.nn.Module, stats: ChannelStats, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.network, self.stats = network, stats
        shape = (1, len(stats.mean), 1, 1)
        for name in ("mean", "std"):
            values = torch.tensor(getattr(stats, name), dtype=torch.float32, device=device)
            self.register_buffer(name, values.view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def with_standardisation(
    network: torch.nn.Module, stats: ChannelStats | None, device: torch.device | None = None
) -> torch.nn.Module:
    """`network` (in eval mode) taking x / 255: itself for normalize = "scale" (no
    statistics), else wrapped in `Standardise` with its buffers on `device`."""
    network.eval()
    return network if stats is None else Standardise(network, stats, device).eval()
