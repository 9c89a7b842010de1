"""Per-channel statistics for normalize = "per-channel", computed in chunks from uint8."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data.normalize import channel_stats


def test_channel_stats_match_numpy_on_the_float_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(9000, 4, 4, 3), dtype=np.uint8)  # crosses two chunks
    images[..., 2] //= 4  # channels with different statistics
    stats = channel_stats(images)
    floats = images.astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean, floats.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, floats.std(axis=(0, 1, 2)), rtol=1e-9)
    assert stats.mean[2] < stats.mean[0] / 2


def test_a_constant_channel_gets_std_one_instead_of_zero():
    images = np.full((5, 2, 2, 1), 7, dtype=np.uint8)
    stats = channel_stats(images)
    assert stats.mean == (7 / 255,) and stats.std == (1.0,)


def test_empty_images_are_refused():
    with pytest.raises(ValueError, match="N >= 1"):
        channel_stats(np.zeros((0, 2, 2, 3), np.uint8))
