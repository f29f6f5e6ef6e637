"""Seeded attribution-like maps for the insertion/deletion and inference-copy tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attribution_maps(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Two kinds of (n, 3, size, size) maps: a smooth one and one with many ties."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "smooth": F.avg_pool2d(torch.randn(n, 3, size, size, generator=gen), 5, stride=1, padding=2),
        "ties": torch.randint(0, 3, (n, 3, size, size), generator=gen).float(),
    }
