"""Ground-truth localization: does a heatmap fall on the object it is meant to explain?

All three scores take a relevance map (H, W), or an attribution (3, H, W) that is first summed
over colour channels, and a boolean object mask (H, W):

* **Pointing game** (Zhang et al. 2016): a hit when the map's maximum lies on the object
  dilated by ``tolerance`` pixels (Euclidean distance). When several pixels share the maximum,
  *all* of them must lie there (a map that points everywhere does not point at the object).
  The default tolerance scales Zhang et al.'s 15 pixels at 224 x 224 to the map's smaller
  side: ``round(15 * min(H, W) / 224)``, 4 pixels at 64 x 64.
* **Relevance mass accuracy** (Arras et al. 2022): the share of the positive relevance that
  lies inside the mask. A map with no positive relevance puts none on the object: 0.
* **Relevance rank accuracy** (Arras et al. 2022): with ``K`` the number of mask pixels, the
  share of the ``K`` most relevant pixels that lie inside the mask. Pixels tied with the K-th
  value share the remaining places in proportion (the expected score under a random
  tie-break), so a constant map scores the chance level ``K / (H * W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from xaicore.errors import ParameterError

ZHANG_TOLERANCE_PX = 15
ZHANG_SIZE_PX = 224


@dataclass(frozen=True)
class LocalizationScores:
    """The three scores of one map against one object mask."""

    pointing_hit: bool
    relevance_mass: float
    relevance_rank: float
    tolerance: int

    def record(self) -> dict[str, float | bool | int]:
        return {
            "pointing_hit": self.pointing_hit,
            "relevance_mass": self.relevance_mass,
            "relevance_rank": self.relevance_rank,
            "tolerance_px": self.tolerance,
        }


def default_tolerance(shape: tuple[int, ...]) -> int:
    """Pointing-game tolerance in pixels for maps of ``shape`` (H, W): 15 px at 224 scaled."""
    return int(round(ZHANG_TOLERANCE_PX * min(shape[-2:]) / ZHANG_SIZE_PX))


def _inputs(relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    r = relevance.detach().cpu().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    r = r.astype(np.float64)
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ParameterError(f"A relevance map must be (H, W) or an attribution (3, H, W); got shape {r.shape}.")
    if m.shape != r.shape:
        raise ParameterError(
            f"The mask is {m.shape[-2:]} but the map is {r.shape}; resize the mask to the model input."
        )
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ParameterError("The mask must be boolean (or 0/1): True on the object.")
        m = m.astype(bool)
    if not m.any():
        raise ParameterError("The mask is empty: it marks no pixel of the object.")
    if not np.isfinite(r).all():
        raise ParameterError("The map contains NaN or inf, so it cannot be scored.")
    return r, m


def pointing_game(
    relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor, *, tolerance: int | None = None
) -> bool:
    """Whether every maximal pixel of the map lies within ``tolerance`` pixels of the object."""
    r, m = _inputs(relevance, mask)
    tol = default_tolerance(r.shape) if tolerance is None else int(tolerance)
    if tol < 0:
        raise ParameterError(f"tolerance must be zero or more pixels; got {tolerance}.")
    near = ndimage.distance_transform_edt(~m) <= tol
    return bool(near[r == r.max()].all())


def relevance_mass_accuracy(relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> float:
    """Share of the positive relevance inside the mask (0 when there is no positive relevance)."""
    r, m = _inputs(relevance, mask)
    positive = np.clip(r, 0.0, None)
    total = positive.sum()
    return float(positive[m].sum() / total) if total > 0 else 0.0


def relevance_rank_accuracy(relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> float:
    """Share of the ``|mask|`` most relevant pixels that lie inside the mask (ties shared)."""
    r, m = _inputs(relevance, mask)
    k = int(m.sum())
    kth = np.sort(r, axis=None)[::-1][k - 1]
    above = r > kth
    tied = r == kth
    places_left = k - int(above.sum())
    inside = (above & m).sum() + places_left * (tied & m).sum() / tied.sum()
    return float(inside / k)


def localization_scores(
    relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor, *, tolerance: int | None = None
) -> LocalizationScores:
    """Pointing game, relevance mass and relevance rank accuracy of one map and one mask."""
    r, m = _inputs(relevance, mask)
    tol = default_tolerance(r.shape) if tolerance is None else int(tolerance)
    return LocalizationScores(
        pointing_hit=pointing_game(r, m, tolerance=tol),
        relevance_mass=relevance_mass_accuracy(r, m),
        relevance_rank=relevance_rank_accuracy(r, m),
        tolerance=tol,
    )
