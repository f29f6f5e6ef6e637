"""Drawing helpers of the Faithfulness page (no computation): the fitted probability axis, the
mark on the pixels changed so far in the step preview, and the preview's caption."""

from __future__ import annotations

import numpy as np


def fitted_range(result, kind: str) -> list[float]:
    """A probability axis fitted to the ``kind`` curves (a margin of 5% of their span, at least
    0.01), within [0, 1.02]."""
    values = np.concatenate([np.asarray(getattr(c, kind)[0], dtype=np.float64) for c in result.curves])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.02]
    low, high = float(values.min()), float(values.max())
    pad = max(0.01, 0.05 * (high - low))
    return [max(0.0, low - pad), min(1.02, high + pad)]


MARK_COLOR = np.array([1.0, 0.0, 1.0], dtype=np.float32)  # magenta: rare in photos and shapes
MARK_NAME = "magenta"


def marked(picture: np.ndarray, changed: np.ndarray, *, tint: float = 0.35) -> np.ndarray:
    """``picture`` (H, W, 3) in [0, 1] with the ``changed`` pixels tinted with :data:`MARK_COLOR`
    and the border of the changed region drawn in it (the changed pixels next to unchanged ones)."""
    out = np.asarray(picture, dtype=np.float32).copy()
    out[changed] = (1.0 - tint) * out[changed] + tint * MARK_COLOR
    padded = np.pad(changed, 1, mode="edge")
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    out[changed & ~inner] = MARK_COLOR
    return out


def preview_caption(result, kind: str, *, pixels: int, probability: float) -> str:
    """The caption of a step preview: how many pixels, what they became, and the probability."""
    share = f"{pixels} pixels ({100 * pixels / result.params['num_pixels']:.0f}%)"
    background = result.background_text()
    if kind == "deletion":
        return f"deletion: {share} replaced by {background}, p = {probability:.3f}"
    return f"insertion: {share} of the image put onto {background}, p = {probability:.3f}"
