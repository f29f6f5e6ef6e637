"""Procedural images of simple shapes: the offline data of the embedded default model.

Every image shows one object of one of :data:`CLASSES` (or, in a *scene*, two objects of
different classes) drawn with a random colour, size, position, rotation and texture on a
random background. Everything is vectorized over images with numpy and deterministic by
seed: the same ``(n, seed, size)`` gives the same bytes (with the same numpy on the same
platform; trigonometric functions may differ in the last bit elsewhere).

Drawing rules (all lengths scale with ``size``):

- objects: radius 14-36 % of the image side alone, 13-22 % in scenes; any rotation;
  textures ``flat``, ``stripes``, ``checker`` (period 3-8 px at size 64) and ``noise``; the
  texture mixes the object colour with a second tone;
- backgrounds: ``flat`` colour, linear ``gradient`` between two colours, or ``noise``
  (uniform noise of amplitude 0.04-0.12 around a colour);
- contrast: the object colour is lighter, or darker, than every background colour by at
  least :data:`MIN_CONTRAST` in luminance (ITU-R 601), so the silhouette is visible even in
  grey levels; the texture's second tone lies further away from the background still;
- edges are hard (no antialiasing), so a scene's mask is exactly the set of pixels painted
  with its object; the hole of a ``ring`` and the bite of a ``crescent`` are background.

Harder single-object images: ``generate(..., difficulty=d)`` with ``d`` in (0, 1] (see
:func:`generate`) shrinks the object by up to :data:`HARD_SHRINK`, scatters small distractor
blobs and strokes on the background, lays an occluding bar across the object and adds pixel
noise, all in proportion to ``d``; ``d = 0`` is the plain generator, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xaicore.errors import ParameterError

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart")
TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "noise")
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise")

MIN_CONTRAST = 0.25  # luminance difference between an object's colour and every background colour
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luminance weights
MIN_SIZE = 32
SINGLE_RADIUS = (0.14, 0.36)  # object radius as a fraction of the image side
SCENE_RADIUS = (0.13, 0.22)
_REACH = 1.1  # every shape fits in a disc of _REACH * radius around its centre
_CHUNK = 512  # images rendered at once (bounds memory; part of the definition of the output)

HARD_SHRINK = 0.45  # at difficulty 1 the object radius is (1 - HARD_SHRINK) of the plain one
HARD_CLUTTER = 6  # distractors per image at difficulty 1 (drawn before the object)
HARD_CLUTTER_RADIUS = (0.03, 0.07)  # distractor size as a fraction of the image side
HARD_OCCLUDER_WIDTH = (0.06, 0.12)  # occluding bar width, fraction of the side (probability d per image)
HARD_NOISE = 0.06  # standard deviation of the Gaussian pixel noise at difficulty 1
_HARD_STREAM = 0x5EED_0D1F  # second seed word of the generator of the extra difficulty effects


@dataclass(frozen=True)
class Scene:
    """An image with two objects of different classes and one ground-truth mask per object.

    ``image`` (H, W, 3) float32 in [0, 1]; ``labels[k]`` is the class index of the object whose
    pixels are ``masks[k]`` ((k, H, W) bool, disjoint).
    """

    image: np.ndarray
    labels: tuple[int, ...]
    masks: np.ndarray


# ---------------------------------------------------------------------------- shapes
# Each function receives the pixel coordinates (u, v) in the object's frame, scaled so that
# the object's radius is 1, and returns which pixels belong to the object.


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inside = np.ones(u.shape, dtype=bool)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        inside &= u * np.float32(np.cos(angle)) + v * np.float32(np.sin(angle)) <= 0.55
    return inside


_STAR_POINTS = 5
_STAR_INNER = 0.45


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    sector = np.float32(2 * np.pi / _STAR_POINTS)
    rho = np.hypot(u, v)
    a = np.abs(np.mod(np.arctan2(v, u) + sector / 2, sector) - sector / 2)  # 0 at a tip
    px, py = rho * np.cos(a), rho * np.sin(a)
    ix, iy = _STAR_INNER * np.cos(sector / 2), _STAR_INNER * np.sin(sector / 2)
    # Same side of the edge tip (1, 0) -> inner corner (ix, iy) as the centre.
    side = (ix - 1.0) * py - iy * (px - 1.0)
    return side * iy >= 0.0


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.28) & (av <= 0.95)) | ((av <= 0.28) & (au <= 0.95))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.8**2)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = 1.25 * u
    y = -1.25 * v + 0.15
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "crescent": _crescent,
    "heart": _heart,
}


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Backgrounds:
    kind: np.ndarray  # (n,) index into BACKGROUNDS
    color: np.ndarray  # (n, 3)
    color2: np.ndarray  # (n, 3) other end of a gradient (equal to color otherwise)
    direction: np.ndarray  # (n,) gradient direction, radians
    noise: np.ndarray  # (n,) noise amplitude


@dataclass(frozen=True)
class _Objects:
    label: np.ndarray  # (n,)
    cx: np.ndarray  # (n,) centre in pixels
    cy: np.ndarray
    radius: np.ndarray  # (n,) pixels
    angle: np.ndarray  # (n,) rotation, radians
    color: np.ndarray  # (n, 3)
    tone: np.ndarray  # (n, 3) second tone of the texture
    texture: np.ndarray  # (n,) index into TEXTURES
    tex_period: np.ndarray  # (n,) pixels
    tex_angle: np.ndarray  # (n,) radians

    def take(self, index: slice | np.ndarray) -> _Objects:
        return _Objects(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


def _sample_backgrounds(rng: np.random.Generator, n: int) -> _Backgrounds:
    kind = rng.integers(0, len(BACKGROUNDS), n)
    color = rng.random((n, 3))
    offset = rng.uniform(-0.3, 0.3, (n, 3))
    color2 = np.where((kind == BACKGROUNDS.index("gradient"))[:, None], np.clip(color + offset, 0, 1), color)
    direction = rng.uniform(0, 2 * np.pi, n)
    noise = np.where(kind == BACKGROUNDS.index("noise"), rng.uniform(0.04, 0.12, n), 0.0)
    return _Backgrounds(kind, color, color2, direction, noise)


def _luminance(color: np.ndarray) -> np.ndarray:
    return color @ _LUMA


def _second_tone(color: np.ndarray, lighter: np.ndarray) -> np.ndarray:
    """The texture's second tone: halfway to white for objects lighter than the background,
    halfway to black for darker ones, so it contrasts with the background at least as much."""
    return np.where(lighter[:, None], color + 0.5 * (1.0 - color), 0.5 * color)


def _contrast(color: np.ndarray, bg: _Backgrounds, rows: np.ndarray) -> np.ndarray:
    """Smallest luminance margin between ``color`` and the background's colours.

    Negative when ``color`` is lighter than one background colour and darker than the other.
    """
    tone = _luminance(color)
    grounds = [_luminance(bg.color[rows]), _luminance(bg.color2[rows])]
    side = np.where(tone >= grounds[0], 1.0, -1.0)
    return np.min([side * (tone - g) for g in grounds], axis=0)


def _sample_colors(rng: np.random.Generator, bg: _Backgrounds) -> tuple[np.ndarray, np.ndarray]:
    """Object colours that contrast with the background, and their second tones.

    Rejection sampling, then black or white for the rare background with no colour left.
    """
    n = len(bg.kind)
    color = rng.random((n, 3))
    todo = np.flatnonzero(_contrast(color, bg, np.arange(n)) < MIN_CONTRAST)
    for _ in range(64):
        if todo.size == 0:
            break
        color[todo] = rng.random((todo.size, 3))
        todo = todo[_contrast(color[todo], bg, todo) < MIN_CONTRAST]
    if todo.size:
        mean = _luminance((bg.color[todo] + bg.color2[todo]) / 2)
        color[todo] = np.repeat((mean < 0.5).astype(np.float64)[:, None], 3, axis=1)
    lighter = _luminance(color) > _luminance(bg.color)
    return color, _second_tone(color, lighter)


def _sample_objects(
    rng: np.random.Generator,
    labels: np.ndarray,
    bg: _Backgrounds,
    *,
    size: int,
    radius: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
) -> _Objects:
    n = len(labels)
    color, tone = _sample_colors(rng, bg)
    return _Objects(
        label=labels,
        cx=cx,
        cy=cy,
        radius=radius,
        angle=rng.uniform(0, 2 * np.pi, n),
        color=color,
        tone=tone,
        texture=rng.integers(0, len(TEXTURES), n),
        tex_period=rng.uniform(3, 8, n) * size / 64,
        tex_angle=rng.uniform(0, np.pi, n),
    )


def _single_layout(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius = rng.uniform(*SINGLE_RADIUS, n) * size
    reach = _REACH * radius + 1
    cx = reach + rng.random(n) * (size - 2 * reach)
    cy = reach + rng.random(n) * (size - 2 * reach)
    return radius, cx, cy


def _pair_layout(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, ...]:
    """Radii and centres of two objects per image whose bounding discs do not touch."""
    radius = rng.uniform(*SCENE_RADIUS, (n, 2)) * size
    reach = _REACH * radius + 1
    cx, cy = np.empty((n, 2)), np.empty((n, 2))
    todo = np.arange(n)
    for _ in range(200):
        if todo.size == 0:
            break
        r = reach[todo]
        cx[todo] = r + rng.random((todo.size, 2)) * (size - 2 * r)
        cy[todo] = r + rng.random((todo.size, 2)) * (size - 2 * r)
        gap = np.hypot(cx[todo, 0] - cx[todo, 1], cy[todo, 0] - cy[todo, 1]) - r.sum(axis=1) - 1
        todo = todo[gap < 0]
    if todo.size:  # opposite corners always leave room at the radii allowed
        r = reach[todo]
        cx[todo], cy[todo] = r * [1, -1] + [0, size], r * [1, -1] + [0, size]
    return radius[:, 0], cx[:, 0], cy[:, 0], radius[:, 1], cx[:, 1], cy[:, 1]


# ---------------------------------------------------------------------------- rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    return coords[None, None, :], coords[None, :, None]  # x (1, 1, W), y (1, H, 1)


def _col(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)[:, None, None]


def _render_background(rng: np.random.Generator, bg: _Backgrounds, size: int) -> np.ndarray:
    n = len(bg.kind)
    canvas = np.tile(bg.color.astype(np.float32), (1, size * size)).reshape(n, size, size, 3)
    ramped = np.flatnonzero(bg.kind == BACKGROUNDS.index("gradient"))
    if ramped.size:
        x, y = _grid(size)
        dx, dy = _col(np.cos(bg.direction[ramped])), _col(np.sin(bg.direction[ramped]))
        ramp = ((x - size / 2) * dx + (y - size / 2) * dy) / (size * np.float32(np.sqrt(0.5))) + 0.5
        step = (bg.color2[ramped] - bg.color[ramped]).astype(np.float32)[:, None, None, :]
        canvas[ramped] += np.clip(ramp, 0, 1)[..., None] * step
    noisy = np.flatnonzero(bg.noise > 0)
    if noisy.size:
        noise = rng.random((noisy.size, size, size, 3), dtype=np.float32)
        noise *= 2
        noise -= 1
        noise *= bg.noise[noisy].astype(np.float32)[:, None, None, None]
        canvas[noisy] += noise
    return canvas


def _object_masks(objects: _Objects, size: int) -> np.ndarray:
    """(m, H, W) masks of the objects."""
    x, y = _grid(size)
    dx = x - _col(objects.cx)
    dy = y - _col(objects.cy)
    cos, sin, inv = _col(np.cos(objects.angle)), _col(np.sin(objects.angle)), _col(1.0 / objects.radius)
    u = (cos * dx + sin * dy) * inv
    v = (cos * dy - sin * dx) * inv
    masks = np.zeros(u.shape, dtype=bool)
    for index, name in enumerate(CLASSES):
        rows = np.flatnonzero(objects.label == index)
        if rows.size:
            masks[rows] = _SHAPES[name](u[rows], v[rows])
    return masks


def _texture(rng: np.random.Generator, objects: _Objects, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mixing weight in [0, 1] between colour and second tone at object pixels.

    ``b`` is each pixel's image (row of ``objects``), ``x`` and ``y`` its offset from the
    object's centre in pixels.
    """
    angle, period, kind = objects.tex_angle[b], objects.tex_period[b], objects.texture[b]
    cos, sin = np.cos(angle), np.sin(angle)
    p = np.floor((cos * x + sin * y) / period)
    q = np.floor((cos * y - sin * x) / period)
    weight = np.zeros(b.shape, dtype=np.float32)
    stripes = kind == TEXTURES.index("stripes")
    weight[stripes] = np.mod(p[stripes], 2)
    checker = kind == TEXTURES.index("checker")
    weight[checker] = np.mod(p[checker] + q[checker], 2)
    noise = np.flatnonzero(kind == TEXTURES.index("noise"))
    weight[noise] = rng.random(noise.size, dtype=np.float32)
    return weight


def _paint(rng: np.random.Generator, canvas: np.ndarray, objects: _Objects) -> np.ndarray:
    """Draw one object per image onto ``canvas`` (m, H, W, 3) in place; returns the masks."""
    masks = _object_masks(objects, canvas.shape[1])
    b, i, j = np.nonzero(masks)
    weight = _texture(rng, objects, b, j + 0.5 - objects.cx[b], i + 0.5 - objects.cy[b])
    c1 = objects.color.astype(np.float32)[b]
    c2 = objects.tone.astype(np.float32)[b]
    canvas[b, i, j] = c1 + (c2 - c1) * weight[:, None]
    return masks


# ---------------------------------------------------------------------------- public API


def _check(n: int, seed: int, size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"The number of images must be a whole number of at least 0; got {n!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"The seed must be a whole number of at least 0; got {seed!r}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ParameterError(f"The image size must be a whole number of at least {MIN_SIZE} pixels; got {size!r}.")


def _class_index(value: int | str) -> int:
    if isinstance(value, str):
        if value not in CLASSES:
            raise ParameterError(f"{value!r} is not a shape class; choose from {', '.join(CLASSES)}.")
        return CLASSES.index(value)
    index = int(value)
    if not 0 <= index < len(CLASSES):
        raise ParameterError(f"Shape class {index} is out of range 0 to {len(CLASSES) - 1}.")
    return index


def generate(n: int, *, seed: int, size: int = 64, difficulty: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of one object each, and their class indices.

    Parameters
    ----------
    n:
        Number of images. Classes are balanced (``n // len(CLASSES)`` or one more each) and
        shuffled.
    seed:
        Non-negative integer; the same ``(n, seed, size, difficulty)`` gives the same bytes.
    size:
        Side of the square images in pixels (at least 32).
    difficulty:
        0 (default: the plain images) to 1. Above 0, in proportion to it: the object's radius
        shrinks by up to :data:`HARD_SHRINK` (same centre, labels and colours); up to
        :data:`HARD_CLUTTER` small distractor discs and strokes of random colours are drawn on
        the background first; with probability ``difficulty`` a bar of random colour crosses
        the object; Gaussian pixel noise of standard deviation up to :data:`HARD_NOISE` is added.
        The extra effects draw from their own generator, seeded by ``seed``.

    Returns
    -------
    images, labels:
        (n, size, size, 3) float32 in [0, 1] and (n,) int64 indices into :data:`CLASSES`.
    """
    _check(n, seed, size)
    if (
        isinstance(difficulty, bool)
        or not isinstance(difficulty, (int, float, np.floating, np.integer))
        or not 0.0 <= float(difficulty) <= 1.0
    ):
        raise ParameterError(f"The difficulty must be a number from 0 (plain) to 1 (hardest); got {difficulty!r}.")
    difficulty = float(difficulty)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    bg = _sample_backgrounds(rng, n)
    radius, cx, cy = _single_layout(rng, n, size)
    if difficulty > 0:
        radius = radius * (1.0 - HARD_SHRINK * difficulty)  # same centres: the smaller object still fits
    objects = _sample_objects(rng, labels, bg, size=size, radius=radius, cx=cx, cy=cy)
    extra = np.random.default_rng([seed, _HARD_STREAM]) if difficulty > 0 else None
    images = np.empty((n, size, size, 3), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(n, start + _CHUNK))
        canvas = _render_background(rng, _take_bg(bg, part), size)
        if extra is not None:
            _clutter(extra, canvas, difficulty)
        _paint(rng, canvas, objects.take(part))
        if extra is not None:
            _occlude(extra, canvas, objects.take(part), difficulty)
            canvas += extra.normal(0.0, HARD_NOISE * difficulty, canvas.shape).astype(np.float32)
        np.clip(canvas, 0.0, 1.0, out=images[part])
    return images, labels


def _clutter(rng: np.random.Generator, canvas: np.ndarray, difficulty: float) -> None:
    """Draw up to ``HARD_CLUTTER * difficulty`` small discs and strokes per image, in place."""
    m, size = canvas.shape[0], canvas.shape[1]
    x, y = _grid(size)
    count = rng.binomial(HARD_CLUTTER, difficulty, m)
    for k in range(HARD_CLUTTER):
        rows = np.flatnonzero(count > k)
        if rows.size == 0:
            continue
        r = rng.uniform(*HARD_CLUTTER_RADIUS, rows.size) * size
        cx, cy = rng.uniform(0, size, rows.size), rng.uniform(0, size, rows.size)
        stroke = rng.random(rows.size) < 0.5
        angle = rng.uniform(0, np.pi, rows.size)
        color = rng.random((rows.size, 3)).astype(np.float32)
        dx, dy = x - _col(cx), y - _col(cy)
        along = dx * _col(np.cos(angle)) + dy * _col(np.sin(angle))
        across = dy * _col(np.cos(angle)) - dx * _col(np.sin(angle))
        disc = dx * dx + dy * dy <= _col(r) ** 2
        bar = (np.abs(along) <= _col(2.0 * r)) & (np.abs(across) <= _col(0.35 * r))
        shape = np.where(stroke[:, None, None], bar, disc)
        b, i, j = np.nonzero(shape)
        canvas[rows[b], i, j] = color[b]


def _occlude(rng: np.random.Generator, canvas: np.ndarray, objects: _Objects, difficulty: float) -> None:
    """With probability ``difficulty`` per image, lay a bar of random colour across the object, in place."""
    m, size = int(canvas.shape[0]), int(canvas.shape[1])
    x, y = _grid(size)
    hit = rng.random(m) < difficulty
    width = rng.uniform(*HARD_OCCLUDER_WIDTH, m) * size
    angle = rng.uniform(0, np.pi, m)
    shift = rng.uniform(-0.5, 0.5, m) * objects.radius  # the bar passes near the centre
    color = rng.random((m, 3)).astype(np.float32)
    rows = np.flatnonzero(hit)
    if rows.size == 0:
        return
    dx, dy = x - _col(objects.cx[rows]), y - _col(objects.cy[rows])
    across = dy * _col(np.cos(angle[rows])) - dx * _col(np.sin(angle[rows])) - _col(shift[rows])
    bar = np.abs(across) <= _col(width[rows] / 2)
    b, i, j = np.nonzero(bar)
    canvas[rows[b], i, j] = color[rows][b]


def _take_bg(bg: _Backgrounds, index: slice | np.ndarray) -> _Backgrounds:
    return _Backgrounds(**{k: getattr(bg, k)[index] for k in bg.__dataclass_fields__})


def generate_scene_arrays(
    n: int,
    *,
    seed: int,
    size: int = 64,
    pairs: Sequence[tuple[int | str, int | str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` two-object scenes as arrays (the batched form of :func:`generate_scenes`).

    Parameters
    ----------
    pairs:
        Optional class pair per scene (indices or names, two different classes each); by
        default pairs are drawn uniformly among all ordered pairs of different classes.

    Returns
    -------
    images, labels, masks:
        (n, size, size, 3) float32 in [0, 1]; (n, 2) int64 class indices; (n, 2, size, size)
        bool masks, ``masks[i, k]`` being the pixels of object ``labels[i, k]``.
    """
    _check(n, seed, size)
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    if pairs is None:
        first = rng.integers(0, k, n)
        labels = np.stack([first, (first + rng.integers(1, k, n)) % k], axis=1).astype(np.int64)
    else:
        if len(pairs) != n:
            raise ParameterError(f"Give one class pair per scene: {n} scenes, {len(pairs)} pairs.")
        labels = np.array([[_class_index(a), _class_index(b)] for a, b in pairs], dtype=np.int64).reshape(n, 2)
        if np.any(labels[:, 0] == labels[:, 1]):
            raise ParameterError("The two objects of a scene must be of different classes.")
    bg = _sample_backgrounds(rng, n)
    r1, x1, y1, r2, x2, y2 = _pair_layout(rng, n, size)
    first_objects = _sample_objects(rng, labels[:, 0], bg, size=size, radius=r1, cx=x1, cy=y1)
    second_objects = _sample_objects(rng, labels[:, 1], bg, size=size, radius=r2, cx=x2, cy=y2)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    masks = np.empty((n, 2, size, size), dtype=bool)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(n, start + _CHUNK))
        canvas = _render_background(rng, _take_bg(bg, part), size)
        masks[part, 0] = _paint(rng, canvas, first_objects.take(part))
        masks[part, 1] = _paint(rng, canvas, second_objects.take(part))
        np.clip(canvas, 0.0, 1.0, out=images[part])
    return images, labels, masks


def generate_scene(*, seed: int, size: int = 64, classes: tuple[int | str, int | str] | None = None) -> Scene:
    """One scene with two objects of different classes (``classes``: indices or names)."""
    images, labels, masks = generate_scene_arrays(1, seed=seed, size=size, pairs=None if classes is None else [classes])
    return Scene(image=images[0], labels=tuple(int(c) for c in labels[0]), masks=masks[0])


def generate_scenes(n: int, *, seed: int, size: int = 64) -> list[Scene]:
    """``n`` scenes (see :func:`generate_scene_arrays` for the batched arrays)."""
    images, labels, masks = generate_scene_arrays(n, seed=seed, size=size)
    return [Scene(image=images[i], labels=tuple(int(c) for c in labels[i]), masks=masks[i]) for i in range(n)]
