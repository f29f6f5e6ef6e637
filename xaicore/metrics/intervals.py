"""Means with 95% intervals, as the report card states them.

Three documented intervals, all two-sided at ``level`` (default 0.95):

* :func:`t_interval` -- for a continuous score (an AUC, a relevance share, a runtime): the
  Student t interval ``mean +- t(1 - (1 - level) / 2, n - 1) * s / sqrt(n)`` with ``s`` the
  sample standard deviation (``ddof=1``). It needs two values; with one the mean is given and
  the bounds are ``None``. Applied to paired differences (method minus random control on the
  same images) it is the paired t interval.
* :func:`wilson_interval` -- for a rate of hits (the pointing game): the Wilson score interval
  without continuity correction, which stays inside [0, 1] and does not collapse to a point
  when every image is a hit.
* :func:`welch_interval` -- for the difference of the means of two independent groups (CO
  scores of correctly minus wrongly predicted images): Welch's t interval with the
  Welch-Satterthwaite degrees of freedom; it needs two values in each group.

Non-finite values are left out before anything is computed; ``n`` counts the values used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from xaicore.errors import ParameterError

LEVEL = 0.95
KINDS = ("t", "wilson", "welch")


@dataclass(frozen=True)
class Interval:
    """A mean (or rate, or difference) with its interval.

    ``low``/``high`` are ``None`` when the interval is undefined (too few values); ``mean`` is
    ``None`` when there is no value at all. ``std`` is the sample standard deviation (``ddof=1``,
    ``None`` below two values; for ``welch`` the standard error of the difference). ``kind`` is
    ``"t"``, ``"wilson"`` or ``"welch"``.
    """

    n: int
    mean: float | None
    low: float | None
    high: float | None
    std: float | None
    kind: str
    level: float = LEVEL

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def defined(self) -> bool:
        """Whether both bounds exist."""
        return self.low is not None and self.high is not None

    def side(self, of: float = 0.0) -> str:
        """``"above"`` or ``"below"`` when the whole interval lies strictly on that side of
        ``of``; ``"overlaps"`` when it contains ``of``; ``"unknown"`` when undefined."""
        if not self.defined:
            return "unknown"
        if self.low > of:  # type: ignore[operator]
            return "above"
        if self.high < of:  # type: ignore[operator]
            return "below"
        return "overlaps"

    def text(self, digits: int = 3) -> str:
        """``"0.512 [0.431, 0.593]"``, ``"0.512 (n=1)"`` or ``"-"``."""
        if self.mean is None:
            return "-"
        if not self.defined:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _finite(values: Iterable[float | None]) -> np.ndarray:
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ParameterError(f"The interval level must be between 0 and 1 (0.95 for 95%); got {level}.")
    return float(level)


def t_interval(values: Iterable[float | None], *, level: float = LEVEL) -> Interval:
    """Mean and Student t interval of ``values`` (``None``, NaN and inf are left out)."""
    level = _check_level(level)
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Interval(0, None, None, None, None, "t", level)
    mean = float(x.mean())
    if n == 1:
        return Interval(1, mean, None, None, None, "t", level)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half, std, "t", level)


def wilson_interval(hits: Iterable[bool | float | None], *, level: float = LEVEL) -> Interval:
    """Hit rate and Wilson score interval of 0/1 outcomes (``None`` and NaN left out)."""
    level = _check_level(level)
    x = _finite(hits)
    if x.size and not np.isin(x, (0.0, 1.0)).all():
        raise ParameterError("A hit rate needs outcomes that are 0 or 1 (False or True).")
    n = int(x.size)
    if n == 0:
        return Interval(0, None, None, None, None, "wilson", level)
    p = float(x.mean())
    z = float(stats.norm.ppf(0.5 + level / 2))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    std = float(x.std(ddof=1)) if n > 1 else None
    # the exact interval always holds p; clamping removes rounding errors at p = 0 and p = 1
    low = min(p, max(0.0, centre - half))
    high = max(p, min(1.0, centre + half))
    return Interval(n, p, low, high, std, "wilson", level)


def welch_interval(first: Iterable[float | None], second: Iterable[float | None], *, level: float = LEVEL) -> Interval:
    """``mean(first) - mean(second)`` with Welch's t interval (two values per group needed).

    ``n`` is the number of values in both groups together.
    """
    level = _check_level(level)
    a, b = _finite(first), _finite(second)
    n = int(a.size + b.size)
    if a.size == 0 or b.size == 0:
        return Interval(n, None, None, None, None, "welch", level)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(n, diff, None, None, None, "welch", level)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(n, diff, diff, diff, 0.0, "welch", level)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return Interval(n, diff, diff - half, diff + half, se, "welch", level)


def paired_differences(first: Iterable[float | None], second: Iterable[float | None]) -> list[float | None]:
    """``first[i] - second[i]`` where both are finite, ``None`` elsewhere (same length required)."""
    a, b = list(first), list(second)
    if len(a) != len(b):
        raise ParameterError(f"Paired values need the same number on both sides; got {len(a)} and {len(b)}.")
    out: list[float | None] = []
    for x, y in zip(a, b):
        if x is None or y is None or not (math.isfinite(float(x)) and math.isfinite(float(y))):
            out.append(None)
        else:
            out.append(float(x) - float(y))
    return out
