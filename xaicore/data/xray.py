"""Procedural chest-X-ray-like images with a ground-truth finding, for teaching and tests.

Not medical images: pictures drawn from a few geometric rules that look enough like a frontal
chest radiograph (dense tissue bright, air dark) for a small grayscale network to learn a task
whose answer has a known place. Each image has

* a thorax: soft tissue in an ellipse on dark air, two darker lungs, a brighter heart and
  mediastinum, the spine with its vertebrae, ribs as curved bright bands over the lungs and two
  clavicles, each part placed, sized and tilted at random within anatomical bounds;
* imaging variation: a global shift, scale and tilt, exposure (gamma, brightness), slight blur,
  low-frequency shading and noise;
* for the class ``"finding"``: a nodule (a round density of radius 2-6 px at 64x64) or an
  opacity (a patch of several overlapping blobs) inside a lung, of varying size, contrast and
  position, with its ground-truth mask (the pixels where the finding adds at least half of its
  peak density). ``"normal"`` images have an empty mask.

Every image is drawn from its own ``numpy`` generator seeded from ``(seed, index)``, so a set is
fully described by its seed and size and never touches the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from xaicore.errors import ParameterError

CLASSES: tuple[str, ...] = ("normal", "finding")
SIZE = 64
FINDING_KINDS = ("nodule", "opacity")


@dataclass(frozen=True)
class XrayCase:
    """One generated image.

    Attributes
    ----------
    image:
        (H, W) float32 in [0, 1], bright = dense.
    mask:
        (H, W) bool ground truth of the finding; all False for a normal image.
    label:
        Index into :data:`CLASSES`.
    finding:
        The finding's parameters (kind, centre (row, col) in pixels, radius in pixels, contrast),
        empty for a normal image.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    finding: dict[str, Any] = field(default_factory=dict)

    def rgb(self) -> np.ndarray:
        """The image as (H, W, 3) float32, gray copied to three channels (the pixel-space contract)."""
        return np.ascontiguousarray(np.repeat(self.image[:, :, None], 3, axis=2), dtype=np.float32)


def case_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of the set with ``seed``: ``SeedSequence([seed, index])``'s first word."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def make_case(seed: int, *, size: int = SIZE, finding: bool | None = None, kind: str | None = None) -> XrayCase:
    """One image from ``seed``: normal or with a finding (``finding=None``: either, 50/50).

    ``kind`` forces ``"nodule"`` or ``"opacity"`` for a finding.
    """
    if size < 32 or size > 1024:
        raise ParameterError(f"The image side must be between 32 and 1024 pixels, not {size}.")
    if kind is not None and kind not in FINDING_KINDS:
        raise ParameterError(f"Unknown finding kind {kind!r}; use one of {', '.join(FINDING_KINDS)}.")
    rng = np.random.default_rng(seed)
    has_finding = bool(rng.random() < 0.5) if finding is None else bool(finding)
    u, v = _grid(rng, size)
    tissue, lungs = _anatomy(rng, u, v)
    mask = np.zeros((size, size), dtype=bool)
    params: dict[str, Any] = {}
    if has_finding:
        density, mask, params = _finding(rng, lungs, size, kind or ("nodule" if rng.random() < 0.6 else "opacity"))
        tissue = tissue + density
    image = _imaging(rng, tissue, size)
    return XrayCase(image=image, mask=mask, label=int(has_finding), finding=params)


def generate(n: int, *, seed: int, size: int = SIZE, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images of the set ``seed`` (indices ``start`` ... ``start + n - 1``), half of them with a finding.

    Returns
    -------
    (images, labels, masks):
        (n, H, W) float32 in [0, 1], (n,) int64, (n, H, W) bool.
    """
    cases = generate_cases(n, seed=seed, size=size, start=start)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    labels = np.empty(n, dtype=np.int64)
    for i, case in enumerate(cases):
        images[i], masks[i], labels[i] = case.image, case.mask, case.label
    return images, labels, masks


def generate_cases(n: int, *, seed: int, size: int = SIZE, start: int = 0) -> list[XrayCase]:
    """The cases behind :func:`generate`: image ``i`` has a finding when its index is odd."""
    if n < 0:
        raise ParameterError(f"The number of images must be zero or more, not {n}.")
    return [make_case(case_seed(seed, i), size=size, finding=i % 2 == 1) for i in range(start, start + n)]


# ----------------------------------------------------------------------------------------
# internals


def _grid(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates (u: left-right, v: top-bottom, about [-1, 1]) after a random pose."""
    centres = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    v0, u0 = np.meshgrid(centres, centres, indexing="ij")
    shift_u, shift_v = rng.uniform(-0.06, 0.06, size=2)
    scale = rng.uniform(0.9, 1.1)
    angle = math.radians(rng.uniform(-5.0, 5.0))
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (u0 - np.float32(shift_u)) / np.float32(scale), (v0 - np.float32(shift_v)) / np.float32(scale)
    return np.float32(cos) * u + np.float32(sin) * v, np.float32(-sin) * u + np.float32(cos) * v


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float, tilt: float = 0.0) -> np.ndarray:
    """Normalized radius of the ellipse: < 1 inside."""
    c, s = np.float32(math.cos(tilt)), np.float32(math.sin(tilt))
    du, dv = u - np.float32(cu), v - np.float32(cv)
    a = (c * du + s * dv) * np.float32(1.0 / au)
    b = (c * dv - s * du) * np.float32(1.0 / av)
    return np.sqrt(a * a + b * b)


def _inside(r: np.ndarray, softness: float) -> np.ndarray:
    """A soft indicator of ``r < 1`` with an edge ``softness`` wide (in units of r)."""
    z = np.clip((r - np.float32(1.0)) * np.float32(1.0 / softness), -40.0, 40.0)
    return np.float32(1.0) / (np.float32(1.0) + np.exp(z))


def _anatomy(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue density of the thorax and the (soft) lung fields, both (H, W)."""
    body = _inside(_ellipse(u, v, 0.0, 0.08, rng.uniform(0.8, 0.92), rng.uniform(0.95, 1.05)), 0.03)
    density = 0.06 + 0.5 * body
    lungs = np.zeros_like(u)
    for side in (-1.0, 1.0):
        r = _ellipse(
            u,
            v,
            side * rng.uniform(0.33, 0.43),
            rng.uniform(-0.15, -0.05),
            rng.uniform(0.22, 0.3),
            rng.uniform(0.5, 0.62),
            tilt=side * rng.uniform(0.0, 0.15),
        )
        lungs = np.maximum(lungs, _inside(r, 0.06))
    density -= rng.uniform(0.26, 0.34) * lungs * body
    heart = _inside(_ellipse(u, v, rng.uniform(0.02, 0.14), rng.uniform(0.25, 0.35), 0.3, 0.27, 0.3), 0.08)
    mediastinum = _inside(_ellipse(u, v, 0.0, -0.1, rng.uniform(0.1, 0.14), 0.6), 0.1)
    density += 0.22 * np.maximum(heart, mediastinum)
    spine = _inside(np.abs(u) / rng.uniform(0.07, 0.09), 0.1) * body
    vertebrae = 0.5 + 0.5 * np.cos(2.0 * np.pi * v / rng.uniform(0.13, 0.17))
    density += spine * (0.1 + 0.06 * vertebrae)
    period, phase = rng.uniform(0.16, 0.21), rng.uniform(0.0, 1.0)
    arc = v + rng.uniform(0.25, 0.4) * u**2 - 0.1 * np.abs(u)
    ribs = np.clip(np.cos(2.0 * np.pi * (arc / period + phase)), 0.0, None) ** 6
    density += rng.uniform(0.07, 0.12) * ribs * _inside(_ellipse(u, v, 0.0, -0.05, 0.82, 0.8), 0.05)
    for side in (-1.0, 1.0):  # clavicles: short bright bars near the top, sloping outwards
        line = np.abs(v - (-0.72 + side * 0.12 * u)) / 0.035
        reach = _inside(np.abs(u - side * 0.3) / 0.32, 0.1)
        density += 0.14 * _inside(line, 0.3) * reach
    return density, lungs * body


def _finding(
    rng: np.random.Generator, lungs: np.ndarray, size: int, kind: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The finding's added density, its mask and parameters, placed inside a lung."""
    scale = size / SIZE
    inner = lungs > 0.8
    eroded = ndimage.binary_erosion(inner, iterations=max(1, int(round(3 * scale))))
    spots = np.argwhere(eroded if eroded.any() else inner)
    if len(spots) == 0:
        spots = np.argwhere(np.ones_like(inner))
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    row, col = spots[rng.integers(len(spots))] + 0.5
    if kind == "nodule":
        radius = rng.uniform(2.0, 6.0) * scale
        contrast = rng.uniform(0.12, 0.35)
        d2 = ((rows - row) ** 2 + (cols - col) ** 2) / radius**2
        shape = np.clip(1.0 - d2, 0.0, None) ** 0.6  # a dense round body with a soft rim
    else:
        radius = rng.uniform(5.0, 9.0) * scale
        contrast = rng.uniform(0.1, 0.22)
        shape = np.zeros((size, size))
        for _ in range(int(rng.integers(3, 6))):
            dr, dc = rng.normal(0.0, radius * 0.5, size=2)
            r = radius * rng.uniform(0.45, 0.8)
            shape = np.maximum(shape, np.exp(-(((rows - row - dr) ** 2 + (cols - col - dc) ** 2) / (r**2))))
        shape = shape * np.clip(lungs / 0.8, 0.0, 1.0)  # an opacity fills the lung, not beyond
    density = contrast * shape
    mask = shape >= 0.5
    params = {
        "kind": kind,
        "center": [round(float(row - 0.5), 2), round(float(col - 0.5), 2)],
        "radius_px": round(float(radius), 2),
        "contrast": round(float(contrast), 3),
        "area_px": int(mask.sum()),
    }
    return density, mask, params


def _imaging(rng: np.random.Generator, density: np.ndarray, size: int) -> np.ndarray:
    """Blur, shading, exposure and noise: the density as a detector would show it, in [0, 1]."""
    scale = size / SIZE
    image = ndimage.gaussian_filter(density, sigma=rng.uniform(0.4, 0.9) * scale)
    low = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), sigma=12 * scale)
    image = image + 0.04 * low / (np.abs(low).max() + 1e-9)
    image = np.clip(image * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04), 0.0, 1.0) ** rng.uniform(0.85, 1.2)
    image = image + rng.normal(0.0, rng.uniform(0.01, 0.035), (size, size))
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
