"""Stamped shapes: the procedural shapes with a spurious stamp that a model can learn to cheat on.

The images are :func:`xaicore.data.shapes.generate`'s; a square *stamp* (white with a dark
centre, :data:`STAMP_SIDE` of the image side, :data:`STAMP_MARGIN` from the bottom-right corner)
is pasted over some of them, on top of whatever is there. Under the training rule (``"iid"``)
the stamp is on :data:`CLASS_RATE` of the images of one class (:data:`STAMP_CLASS`, heart) and
on :data:`OTHER_RATE` of every other class, so the stamp predicts the class without being it:
the set-up of a "Clever Hans" model. The counts are exact per class (``round(rate * count)``
images of each class, chosen at random), so the rates hold on small sets too.

Three test sets share one rule each: ``"iid"`` (the training rule), ``"clean"`` (no stamp) and
``"stamped"`` (a stamp on every image). Every image's stamp mask is returned, so relevance in the
stamp can be measured with :mod:`xaicore.metrics.localization`. Deterministic by seed: the
stamps are drawn from their own generator, so the shapes are those of ``shapes.generate`` with
the same ``(n, seed, size, difficulty)``, byte for byte, where no stamp lies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xaicore.data import shapes
from xaicore.errors import ParameterError

STAMP_SIDE = 12 / 64  # the stamp's side as a fraction of the image side (12 px at 64 px)
STAMP_MARGIN = 2 / 64  # gap between the stamp and the image's bottom and right edges
STAMP_CORE = 0.5  # side of the dark centre as a fraction of the stamp's side
STAMP_LIGHT = 1.0  # grey level of the stamp's border
STAMP_DARK = 0.0  # grey level of its centre
STAMP_CLASS = "heart"
CLASS_RATE = 0.9  # share of the stamp class's images that carry the stamp (training rule)
OTHER_RATE = 0.02  # share of every other class's images that carry it
RULES: tuple[str, ...] = ("iid", "clean", "stamped")
_STAMP_STREAM = 0x57A_4D9  # second seed word of the generator that picks the stamped images


@dataclass(frozen=True)
class StampedSet:
    """Images with their classes, which of them carry the stamp, and each one's stamp mask.

    ``images`` (N, H, W, 3) float32 in [0, 1]; ``labels`` (N,) int64 indices into
    :data:`xaicore.data.shapes.CLASSES`; ``stamped`` (N,) bool; ``masks`` (N, H, W) bool, the
    stamp's pixels on stamped images and empty on the others.
    """

    images: np.ndarray
    labels: np.ndarray
    stamped: np.ndarray
    masks: np.ndarray


def stamp_box(size: int) -> tuple[int, int, int, int]:
    """The stamp's box in an image of side ``size``: (top, left, height, width) in pixels."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < shapes.MIN_SIZE:
        raise ParameterError(f"The image size must be a whole number of at least {shapes.MIN_SIZE}; got {size!r}.")
    side = max(4, int(round(STAMP_SIDE * size)))
    margin = int(round(STAMP_MARGIN * size))
    start = int(size) - margin - side
    return start, start, side, side


def stamp_mask(size: int) -> np.ndarray:
    """(size, size) bool: True on the stamp's pixels."""
    top, left, h, w = stamp_box(size)
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + h, left : left + w] = True
    return mask


def _stamp_pixels(side: int) -> np.ndarray:
    """(side, side) grey levels of the stamp: a light square with a dark centre."""
    core = max(1, int(round(STAMP_CORE * side)))
    start = (side - core) // 2
    tile = np.full((side, side), STAMP_LIGHT, dtype=np.float32)
    tile[start : start + core, start : start + core] = STAMP_DARK
    return tile


def paste_stamp(images: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``images`` (N, H, W, 3) with the stamp pasted on ``rows`` (default: all).

    ``rows`` is a boolean (N,) array or an array of indices. The images must be square.
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[1] != array.shape[2] or array.shape[3] != 3:
        raise ParameterError(f"Give square RGB images shaped (N, H, W, 3); got shape {array.shape}.")
    out = np.array(array, dtype=np.float32, copy=True)
    top, left, h, w = stamp_box(int(array.shape[1]))
    chosen = np.arange(len(out)) if rows is None else np.asarray(rows)
    if chosen.dtype == bool:
        chosen = np.flatnonzero(chosen)
    out[chosen, top : top + h, left : left + w, :] = _stamp_pixels(h)[None, :, :, None]
    return out


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ParameterError(f"{name} must be a share from 0 to 1; got {value!r}.")
    return float(value)


def stamp_rows(labels: np.ndarray, *, seed: int, stamp_class: int, class_rate: float, other_rate: float) -> np.ndarray:
    """(N,) bool: which images carry the stamp; exactly ``round(rate * count)`` per class."""
    rng = np.random.default_rng([seed, _STAMP_STREAM])
    chosen = np.zeros(len(labels), dtype=bool)
    for index in range(len(shapes.CLASSES)):
        members = np.flatnonzero(labels == index)
        rate = class_rate if index == stamp_class else other_rate
        count = int(round(rate * members.size))
        chosen[rng.permutation(members)[:count]] = True
    return chosen


def generate_stamped(
    n: int,
    *,
    seed: int,
    size: int = 64,
    rule: str = "iid",
    stamp_class: int | str = STAMP_CLASS,
    class_rate: float = CLASS_RATE,
    other_rate: float = OTHER_RATE,
    difficulty: float = 0.0,
) -> StampedSet:
    """``n`` single-object images (as :func:`shapes.generate`) with the stamp by ``rule``.

    Parameters
    ----------
    rule:
        ``"iid"``: the stamp on ``class_rate`` of the images of ``stamp_class`` and
        ``other_rate`` of the others; ``"clean"``: on none; ``"stamped"``: on all.
    stamp_class:
        The class the stamp goes with (index or name; default heart).
    class_rate, other_rate:
        Shares in [0, 1] for the ``"iid"`` rule.
    """
    if rule not in RULES:
        raise ParameterError(f"The stamp rule must be one of {', '.join(RULES)}; got {rule!r}.")
    cls = shapes._class_index(stamp_class)
    class_rate = _check_rate("class_rate", class_rate)
    other_rate = _check_rate("other_rate", other_rate)
    images, labels = shapes.generate(n, seed=seed, size=size, difficulty=difficulty)
    if rule == "iid":
        stamped = stamp_rows(labels, seed=seed, stamp_class=cls, class_rate=class_rate, other_rate=other_rate)
    else:
        stamped = np.full(n, rule == "stamped", dtype=bool)
    images = paste_stamp(images, stamped)
    masks = np.zeros((n, size, size), dtype=bool)
    masks[stamped] = stamp_mask(size)
    return StampedSet(images=images, labels=labels, stamped=stamped, masks=masks)
