"""Similarity of two heatmaps: SSIM and Spearman rank correlation, and the map normalizations.

SSIM here has one definition, the one of :func:`skimage.metrics.structural_similarity` with
the same settings (Wang et al. 2004 as implemented in scikit-image):

* local means, variances and covariance are weighted averages over a window: a uniform
  ``win_size`` x ``win_size`` window (default 7), or, with ``gaussian_weights``, a Gaussian of
  standard deviation ``sigma`` truncated at 3.5 sigma (11 taps for sigma 1.5); borders are
  mirrored (``d c b a | a b c d``), as ``scipy.ndimage`` does with ``mode="reflect"``;
* with ``use_sample_covariance`` the (co)variances are multiplied by ``n / (n - 1)``, with
  ``n = win_size ** 2``;
* ``S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))``, ``C1 = (K1 R)^2``,
  ``C2 = (K2 R)^2``, ``K1 = 0.01``, ``K2 = 0.03``, ``R = data_range`` (required: it depends on
  the normalization, see :data:`NORMALIZATIONS`);
* the score is the mean of ``S`` over the interior, a border of ``(win_size - 1) // 2`` pixels
  being left out. When ``gaussian_weights`` is set and ``win_size`` is not given, ``win_size``
  is the Gaussian's width (``2 * int(3.5 * sigma + 0.5) + 1``), as in scikit-image.

Both implementations compute in float64 by default: :func:`ssim` (NumPy, one pair of 2-D maps)
and :func:`ssim_batch` (PyTorch, many pairs at once on their device, separable window sums made of
shifted slices: a plain box sum for the uniform window, weighted taps for the Gaussian).

Spearman's rank correlation is Pearson's correlation of the ranks, tied values getting the
mean of their ranks (as :func:`scipy.stats.spearmanr`). Degenerate inputs are defined instead of
giving NaN: two constant maps correlate 1 (they rank every pixel alike), a constant map and a
non-constant one correlate 0. A map containing NaN or inf gives NaN, on purpose: that is a
numerical error of the explanation, to be reported as such, never a similarity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

from xaicore.errors import ParameterError
from xaicore.runtime.device import run_chunked

K1 = 0.01
K2 = 0.03
TRUNCATE = 3.5  # Gaussian window truncated at this many sigmas (scikit-image's choice)


@dataclass(frozen=True)
class Normalization:
    """How raw (3, H, W) attributions become one 2-D map before they are compared.

    ``data_range`` is the SSIM ``data_range`` the normalized maps imply.
    """

    name: str
    description: str
    data_range: float


NORMALIZATIONS: dict[str, Normalization] = {
    n.name: n
    for n in (
        Normalization(
            "abs",
            "sum over colour channels, absolute value, divided by the map's maximum: values in [0, 1]",
            1.0,
        ),
        Normalization(
            "signed",
            "sum over colour channels, divided by the map's largest absolute value: values in [-1, 1]",
            2.0,
        ),
        Normalization(
            "abs_channel_max",
            "largest absolute value over colour channels, divided by the map's maximum: values in [0, 1]",
            1.0,
        ),
    )
}


def get_normalization(name: str) -> Normalization:
    """The :class:`Normalization` called ``name``; :class:`ParameterError` for unknown names."""
    try:
        return NORMALIZATIONS[name]
    except KeyError:
        raise ParameterError(f"Unknown normalization {name!r}; choose one of {', '.join(NORMALIZATIONS)}.") from None


@overload
def prepare_maps(attr: torch.Tensor, *, normalization: str) -> torch.Tensor: ...
@overload
def prepare_maps(attr: np.ndarray, *, normalization: str) -> np.ndarray: ...
def prepare_maps(attr: torch.Tensor | np.ndarray, *, normalization: str) -> torch.Tensor | np.ndarray:
    """Turn attributions (N, 3, H, W) into 2-D maps (N, H, W) with the named normalization.

    See :data:`NORMALIZATIONS`. An all-zero map stays all zero (nothing is divided by zero);
    a map with any NaN or inf becomes all NaN, so that every similarity computed from it is
    NaN ("numerical error") rather than a plausible number. Returns the input's type (tensor
    on the input's device, or NumPy array).
    """
    spec = get_normalization(normalization)
    is_numpy = isinstance(attr, np.ndarray)
    x = torch.as_tensor(attr)
    if x.ndim != 4:
        raise ParameterError(f"Attributions must have shape (N, channels, H, W); got {tuple(x.shape)}.")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if spec.name == "abs_channel_max":
        maps = x.abs().amax(dim=1)
    else:
        maps = x.sum(dim=1)
        if spec.name == "abs":
            maps = maps.abs()
    finite = torch.isfinite(maps).flatten(1).all(dim=1)
    scale = maps.abs().flatten(1).amax(dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    maps = maps / scale.view(-1, 1, 1)
    maps = torch.where(finite.view(-1, 1, 1), maps, torch.full_like(maps, float("nan")))
    return maps.cpu().numpy() if is_numpy else maps


# ----------------------------------------------------------------------------- SSIM: settings


@dataclass(frozen=True)
class _Window:
    kernel: np.ndarray  # 1-D filter taps (float64), applied along rows then columns
    crop: int  # border left out of the mean
    cov_norm: float


def _window(*, win_size: int | None, gaussian_weights: bool, sigma: float, use_sample_covariance: bool) -> _Window:
    if sigma <= 0:
        raise ParameterError(f"sigma must be positive; got {sigma}.")
    if gaussian_weights:
        radius = int(TRUNCATE * sigma + 0.5)
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        if win_size is None:
            win_size = 2 * radius + 1
    else:
        if win_size is None:
            win_size = 7
        kernel = np.full(win_size, 1.0 / win_size) if win_size > 0 else np.ones(1)
    if win_size < 3 or win_size % 2 == 0:
        raise ParameterError(f"win_size must be an odd number of at least 3; got {win_size}.")
    n = win_size * win_size
    return _Window(kernel=kernel, crop=(win_size - 1) // 2, cov_norm=n / (n - 1) if use_sample_covariance else 1.0)


def _check_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(
            f"data_range must be a positive number (1 for maps in [0, 1], 2 for maps in [-1, 1]); got {data_range}."
        )
    return value


def _check_extent(shape: Sequence[int], window: _Window) -> None:
    size = 2 * window.crop + 1
    if min(shape) < size:
        raise ParameterError(
            f"Maps of {shape[0]}x{shape[1]} pixels are smaller than the {size}x{size} SSIM window; "
            "use a smaller win_size or larger maps."
        )


def _mirror_index(n: int, start: int, stop: int) -> np.ndarray:
    """Indices of positions start..stop-1 of a length-n axis mirrored at both ends (d c b a | a b c d)."""
    i = np.arange(start, stop) % (2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def _ssim_from_moments(ux, uy, uxx, uyy, uxy, *, cov_norm: float, data_range: float):
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _box_sum(m: torch.Tensor, size: int) -> torch.Tensor:
    """Sums of ``m`` (..., H, W) over every ``size`` x ``size`` window inside it (no padding).

    Separable: ``size`` shifted slices added along rows, then along columns. Each output is
    a plain sum of ``size`` terms per axis (no running cumulative sum whose rounding error would
    grow with the map's size), so float32 stays accurate; O(size) adds per pixel and axis.
    """
    h, w = m.shape[-2] - size + 1, m.shape[-1] - size + 1
    along_rows = m[..., 0:h, :].clone()
    for i in range(1, size):
        along_rows += m[..., i : i + h, :]
    out = along_rows[..., 0:w].clone()
    for i in range(1, size):
        out += along_rows[..., i : i + w]
    return out


def _weighted_sum(m: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Weighted sums of ``m`` (..., H, W) over every window, 1-D ``taps`` along rows then columns."""
    size = len(taps)
    h, w = m.shape[-2] - size + 1, m.shape[-1] - size + 1
    along_rows = m[..., 0:h, :] * taps[0]
    for i in range(1, size):
        along_rows.add_(m[..., i : i + h, :], alpha=taps[i])
    out = along_rows[..., 0:w] * taps[0]
    for i in range(1, size):
        out.add_(along_rows[..., i : i + w], alpha=taps[i])
    return out


# ----------------------------------------------------------------------------- SSIM: NumPy


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    data_range: float,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
) -> float:
    """Mean SSIM of two 2-D maps, as defined in this module's docstring (NumPy, float64).

    Parameters
    ----------
    a, b:
        Maps of the same shape (H, W).
    data_range:
        Difference between the largest and smallest possible value (1 for [0, 1], 2 for
        [-1, 1]); required, since the constants C1 and C2 depend on it.
    win_size, gaussian_weights, sigma, use_sample_covariance:
        As in :func:`skimage.metrics.structural_similarity`.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ParameterError(f"SSIM needs two 2-D maps of the same shape; got {x.shape} and {y.shape}.")
    rng = _check_range(data_range)
    window = _window(
        win_size=win_size, gaussian_weights=gaussian_weights, sigma=sigma, use_sample_covariance=use_sample_covariance
    )
    _check_extent(x.shape, window)

    def smooth(m: np.ndarray) -> np.ndarray:
        # weighted window average at every interior position, rows then columns
        k = window.kernel
        r, c = len(k) // 2, window.crop
        h, w = m.shape
        rows = _mirror_index(h, c - r, h - c + r)
        cols = _mirror_index(w, c - r, w - c + r)
        padded = m[np.ix_(rows, cols)]
        along_rows = np.lib.stride_tricks.sliding_window_view(padded, len(k), axis=0) @ k
        return np.lib.stride_tricks.sliding_window_view(along_rows, len(k), axis=1) @ k

    s = _ssim_from_moments(
        smooth(x), smooth(y), smooth(x * x), smooth(y * y), smooth(x * y), cov_norm=window.cov_norm, data_range=rng
    )
    return float(s.mean())


# ----------------------------------------------------------------------------- SSIM: PyTorch


def ssim_batch(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    data_range: float,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
    dtype: torch.dtype = torch.float64,
    chunk: int = 256,
) -> torch.Tensor:
    """Mean SSIM of each pair of maps ``a[i]``, ``b[i]``, computed on their device.

    Same definition and parameters as :func:`ssim`; ``a`` and ``b`` are (N, H, W) tensors.
    ``dtype`` is the precision of the computation (float64 matches scikit-image to ~1e-12;
    float32 is faster on GPUs, to ~1e-5). Pairs are processed ``chunk`` at a time (halved
    when memory runs out). Returns an (N,) tensor of ``dtype`` on the maps' device.
    """
    if a.ndim != 3 or a.shape != b.shape:
        raise ParameterError(
            f"ssim_batch needs two (N, H, W) tensors of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    rng = _check_range(data_range)
    window = _window(
        win_size=win_size, gaussian_weights=gaussian_weights, sigma=sigma, use_sample_covariance=use_sample_covariance
    )
    _check_extent(tuple(a.shape[-2:]), window)
    n, h, w = a.shape
    if n == 0:
        return torch.zeros(0, dtype=dtype, device=a.device)
    device = a.device
    taps = [float(t) for t in window.kernel]
    r, c = len(taps) // 2, window.crop
    uniform = not gaussian_weights
    # A uniform window's radius equals the crop: the interior needs no mirrored border.
    pad = r != c
    rows = torch.as_tensor(_mirror_index(h, c - r, h - c + r), device=device) if pad else None
    cols = torch.as_tensor(_mirror_index(w, c - r, w - c + r), device=device) if pad else None

    def one_chunk(start: int, stop: int) -> torch.Tensor:
        x, y = a[start:stop].to(dtype), b[start:stop].to(dtype)
        if rows is not None and cols is not None:  # pad
            x = x.index_select(1, rows).index_select(2, cols)
            y = y.index_select(1, rows).index_select(2, cols)
        moments = torch.stack((x, y, x * x, y * y, x * y), dim=1)
        if uniform:
            smoothed = _box_sum(moments, len(taps)).div_(len(taps) ** 2)
        else:
            smoothed = _weighted_sum(moments, taps)
        ux, uy, uxx, uyy, uxy = smoothed.unbind(dim=1)
        s = _ssim_from_moments(ux, uy, uxx, uyy, uxy, cov_norm=window.cov_norm, data_range=rng)
        return s.mean(dim=(1, 2))

    return run_chunked(one_chunk, n, chunk=chunk, combine=torch.cat)


# ----------------------------------------------------------------------------- Spearman


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based, float64) of each row, ties given the mean of their ranks; no Python loop."""
    m = values.shape[1]
    sorted_vals, order = torch.sort(values, dim=1, stable=True)
    pos = torch.arange(m, device=values.device).expand_as(order)
    starts_group = torch.ones_like(order, dtype=torch.bool)
    starts_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    ends_group = torch.ones_like(starts_group)
    ends_group[:, :-1] = starts_group[:, 1:]
    first = torch.where(starts_group, pos, torch.zeros_like(pos)).cummax(dim=1).values
    last = torch.where(ends_group, pos, torch.full_like(pos, m)).flip(1).cummin(dim=1).values.flip(1)
    mean_rank = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def rank_maps(maps: torch.Tensor) -> torch.Tensor:
    """Average ranks (N, pixels) float64 of each flattened map of ``maps`` (N, ...), for
    :func:`spearman_batch`'s ``ranks_b`` when one reference is compared with many maps.
    A map with NaN or inf is ranked as all zero (its correlations are NaN anyway)."""
    x = maps.flatten(1)
    finite = torch.isfinite(x).all(dim=1)
    return _average_ranks(torch.where(finite[:, None], x, torch.zeros_like(x)))


def spearman_batch(a: torch.Tensor, b: torch.Tensor, *, ranks_b: torch.Tensor | None = None) -> torch.Tensor:
    """Spearman rank correlation of each pair of rows (maps are flattened), on their device.

    ``a`` and ``b`` have shape (N, ...) with equal shapes. Ties get average ranks (as
    :func:`scipy.stats.spearmanr`). Defined for degenerate maps (see the module docstring):
    both constant -> 1, one constant -> 0; any NaN or inf in a pair -> NaN. ``ranks_b``, if
    given, is ``rank_maps(b)`` computed beforehand (e.g. once for a fixed reference map, then
    expanded), so that ``b`` is not sorted again. Returns (N,) float64.
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ParameterError(
            f"spearman_batch needs two (N, ...) tensors of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    x, y = a.flatten(1), b.flatten(1)
    if x.shape[1] < 2:
        raise ParameterError("Rank correlation needs maps of at least two values.")
    if ranks_b is not None and tuple(ranks_b.shape) != tuple(y.shape):
        raise ParameterError(f"ranks_b must be rank_maps(b), of shape {tuple(y.shape)}; got {tuple(ranks_b.shape)}.")
    finite = torch.isfinite(x).all(dim=1) & torch.isfinite(y).all(dim=1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))
    rx = _average_ranks(x)
    ry = rank_maps(b) if ranks_b is None else ranks_b.to(torch.float64)
    rx = rx - rx.mean(dim=1, keepdim=True)
    ry = ry - ry.mean(dim=1, keepdim=True)
    sx, sy = rx.square().sum(dim=1), ry.square().sum(dim=1)
    const_x, const_y = sx == 0, sy == 0
    rho = (rx * ry).sum(dim=1) / torch.sqrt(torch.where(const_x | const_y, torch.ones_like(sx), sx * sy))
    rho = rho.clamp(-1.0, 1.0)
    rho = torch.where(
        const_x & const_y, torch.ones_like(rho), torch.where(const_x | const_y, torch.zeros_like(rho), rho)
    )
    return torch.where(finite, rho, torch.full_like(rho, float("nan")))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (flattened), NumPy in and out.

    Same definition as :func:`spearman_batch` (average ranks for ties; degenerate maps defined).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ParameterError(f"spearman needs two maps of the same shape; got {x.shape} and {y.shape}.")
    return float(spearman_batch(torch.from_numpy(x.reshape(1, -1)), torch.from_numpy(y.reshape(1, -1)))[0])


# ----------------------------------------------------------------------------- both at once


@dataclass(frozen=True)
class MapSimilarity:
    """SSIM and Spearman of N pairs of maps after one normalization (CPU float64 arrays)."""

    normalization: str
    data_range: float
    ssim: np.ndarray
    spearman: np.ndarray


def compare_maps(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    normalization: str,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
) -> MapSimilarity:
    """Normalize two batches of attributions (N, 3, H, W) and compare them pair by pair.

    The SSIM ``data_range`` is the normalization's (see :data:`NORMALIZATIONS`).
    """
    spec = get_normalization(normalization)
    ma = prepare_maps(a, normalization=spec.name)
    mb = prepare_maps(b, normalization=spec.name)
    s = ssim_batch(
        torch.as_tensor(ma),
        torch.as_tensor(mb),
        data_range=spec.data_range,
        win_size=win_size,
        gaussian_weights=gaussian_weights,
        sigma=sigma,
        use_sample_covariance=use_sample_covariance,
    )
    rho = spearman_batch(torch.as_tensor(ma), torch.as_tensor(mb))
    return MapSimilarity(spec.name, spec.data_range, s.cpu().numpy(), rho.cpu().numpy())


__all__: Sequence[str] = (
    "NORMALIZATIONS",
    "Normalization",
    "get_normalization",
    "prepare_maps",
    "ssim",
    "ssim_batch",
    "spearman",
    "spearman_batch",
    "rank_maps",
    "MapSimilarity",
    "compare_maps",
)
