"""The lab's fixed grid: one stamped image of each class, and its relevance maps for heart."""

from __future__ import annotations

import numpy as np
import torch

from xaicore.clever_hans.measures import DEFAULT_METHOD, STAMP_CLASS, Box, box_mask
from xaicore.data import shapes, stamped
from xaicore.explainers.api import attribute
from xaicore.metrics.localization import relevance_mass_accuracy
from xaicore.models.bundle import ModelBundle
from xaicore.models.default import INPUT_SIZE

GRID_SEED = 7


def grid_images() -> tuple[np.ndarray, np.ndarray]:
    """(8, H, W, 3) stamped images, the first of each class in :data:`shapes.CLASSES` order, and labels."""
    data = stamped.generate_stamped(4 * len(shapes.CLASSES), seed=GRID_SEED, size=INPUT_SIZE[0], rule="stamped")
    rows = [int(np.flatnonzero(data.labels == c)[0]) for c in range(len(shapes.CLASSES))]
    return data.images[rows], data.labels[rows]


def grid_maps(bundle: ModelBundle, images: np.ndarray, *, method: str = DEFAULT_METHOD) -> np.ndarray:
    """(N, H, W) relevance for heart (attribution summed over colour channels)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(bundle.device)
    values = attribute(bundle, x, method=method, target=STAMP_CLASS).values.detach().cpu().numpy()
    return values.sum(axis=1)


def masses(maps: np.ndarray, box: Box) -> np.ndarray:
    """(N,) share of each map's positive relevance inside ``box``."""
    mask = box_mask(box, maps.shape[-1])
    return np.array([relevance_mass_accuracy(m, mask) for m in maps])
