"""The tiny linear model and images of the CO/AX tests, whose scores are computed by hand there."""

from __future__ import annotations

import numpy as np
import torch

# 3 classes over 2x2 RGB images; the flattened input is channel-major, and each channel's
# pixel weights repeat per channel: row sums 6, 1.5 and 6.
PIXEL_WEIGHTS = torch.tensor([[1.0, -2.0, 0.0, 3.0], [0.5, 0.0, -1.0, 1.0], [-1.0, 1.0, 2.0, 0.0]])
WEIGHT = PIXEL_WEIGHTS.repeat(1, 3)
BIAS = torch.tensor([0.3, -0.2, 0.1])


def grey(value: float) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.float32)


def third_pixel() -> np.ndarray:
    image = np.zeros((2, 2, 3), dtype=np.float32)
    image[1, 0, :] = 1.0  # flattened pixel index 2 in every channel: logits W x = [0, -3, 6]
    return image
