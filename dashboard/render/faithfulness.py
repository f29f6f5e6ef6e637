"""Drawing helpers of the Faithfulness page (no computation): the fitted probability axis, the
mark on the pixels changed so far in the step preview, and the preview's caption."""

from __future__ import annotations

import numpy as np

from dashboard.wording import plural


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


MARK_COLORS: dict[str, tuple[float, float, float]] = {
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "lime": (0.0, 1.0, 0.0),
}
MARK_COLOR = np.array(MARK_COLORS["magenta"], dtype=np.float32)


def mark_color(*pictures: np.ndarray) -> tuple[str, np.ndarray]:
    """The colour of :data:`MARK_COLORS` that ``pictures`` (H, W, 3) in [0, 1] use least (fewest
    pixels within 0.4 of it, ties in the listed order), so the mark stands out; its name and RGB."""
    pixels = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, 3) for p in pictures])
    best, fewest = "magenta", None
    for name, rgb in MARK_COLORS.items():
        near = int((np.linalg.norm(pixels - np.asarray(rgb, dtype=np.float32), axis=1) < 0.4).sum())
        if fewest is None or near < fewest:
            best, fewest = name, near
    return best, np.asarray(MARK_COLORS[best], dtype=np.float32)


def marked(
    picture: np.ndarray, changed: np.ndarray, *, color: np.ndarray = MARK_COLOR, tint: float = 0.35
) -> np.ndarray:
    """``picture`` (H, W, 3) in [0, 1] with the ``changed`` pixels tinted with ``color`` and the
    border of the changed region drawn in it (the changed pixels next to unchanged ones)."""
    color = np.asarray(color, dtype=np.float32)
    out = np.asarray(picture, dtype=np.float32).copy()
    out[changed] = (1.0 - tint) * out[changed] + tint * color
    padded = np.pad(changed, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out[changed & ~inner] = color
    return out


def preview_caption(result, kind: str, *, pixels: int, probability: float) -> str:
    """The caption of a step preview: how many pixels, what they became, and the probability."""
    share = f"{plural(pixels, 'pixel')} ({100 * pixels / result.params['num_pixels']:.0f}%)"
    background = result.background_text()
    if kind == "deletion":
        return f"deletion: {share} replaced by {background}, p = {probability:.3f}"
    return f"insertion: {share} of the image put onto {background}, p = {probability:.3f}"
