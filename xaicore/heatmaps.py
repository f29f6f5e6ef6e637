"""Turning raw attributions into pictures (NumPy and Pillow only; no Streamlit, no matplotlib).

Views of a (3, H, W) attribution: the channel sum or one colour channel. Scalings:
``"all"`` divides the signed map by its absolute maximum, giving [-1, 1], drawn with the
diverging blue-white-red map (red: evidence for the class, blue: against); ``"positive"``
keeps the positive part divided by its maximum, giving [0, 1]; ``"absolute"`` the absolute
value divided by its maximum. Sequential views use the "heat" map (black-purple-orange-
yellow). A degenerate view (all zero, or any NaN/inf) is never stretched into a picture:
:func:`view_status` names it and :func:`heatmap_tile` draws a neutral grey tile instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xaicore.errors import ParameterError
from xaicore.explainers.results import ExplainResult, Status, classify_attribution

MODES = ("all", "positive", "absolute")
CHANNELS = ("sum", "R", "G", "B")
NEUTRAL_GREY = 128

STATUS_TEXT = {
    Status.NO_SIGNAL: "no signal",
    Status.NUMERICAL_ERROR: "numerical error",
    Status.UNAVAILABLE: "unavailable",
    Status.FAILED: "failed",
}


@dataclass(frozen=True)
class Colormap:
    """Colours at anchor positions in [0, 1], linearly interpolated in between.

    ``signed`` maps take values in [-1, 1] (0 at the middle anchor); others take [0, 1].
    """

    name: str
    positions: tuple[float, ...]
    colors: tuple[tuple[float, float, float], ...]
    signed: bool

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """RGB floats in [0, 1], shape ``values.shape + (3,)``."""
        v = np.asarray(values, dtype=np.float64)
        t = (v + 1.0) / 2.0 if self.signed else v
        t = np.clip(t, 0.0, 1.0)
        table = np.asarray(self.colors, dtype=np.float64)
        return np.stack([np.interp(t, self.positions, table[:, c]) for c in range(3)], axis=-1)


# ColorBrewer RdBu anchors, blue (negative) to red (positive) through near-white.
DIVERGING = Colormap(
    "diverging",
    (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0),
    (
        (0.020, 0.188, 0.380),
        (0.263, 0.576, 0.765),
        (0.820, 0.898, 0.941),
        (0.969, 0.969, 0.969),
        (0.992, 0.859, 0.780),
        (0.839, 0.376, 0.302),
        (0.404, 0.000, 0.122),
    ),
    signed=True,
)
HEAT = Colormap(
    "heat",
    (0.0, 0.25, 0.5, 0.75, 1.0),
    ((0.0, 0.0, 0.016), (0.341, 0.062, 0.429), (0.735, 0.216, 0.330), (0.978, 0.557, 0.035), (0.988, 0.998, 0.645)),
    signed=False,
)
GRAY = Colormap("gray", (0.0, 1.0), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), signed=False)
COLORMAPS = {c.name: c for c in (DIVERGING, HEAT, GRAY)}


def _check_attr(attr: np.ndarray) -> np.ndarray:
    a = np.asarray(attr)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ParameterError(f"An attribution must have shape (3, H, W); got {a.shape}.")
    return a


def channel_sum(attr: np.ndarray) -> np.ndarray:
    """The (H, W) sum over the three colour channels of a (3, H, W) attribution."""
    return _check_attr(attr).sum(axis=0, dtype=np.float64)


def channel_view(attr: np.ndarray, channel: str = "sum") -> np.ndarray:
    """The (H, W) map of one view: ``"sum"`` or a single channel ``"R"``, ``"G"``, ``"B"``."""
    if channel == "sum":
        return channel_sum(attr)
    if channel not in CHANNELS:
        raise ParameterError(f"Unknown channel view {channel!r}; choose one of {', '.join(CHANNELS)}.")
    return _check_attr(attr)[CHANNELS.index(channel) - 1].astype(np.float64)


def _view_values(m: np.ndarray, mode: str) -> np.ndarray:
    if mode == "all":
        return m
    if mode == "positive":
        return np.maximum(m, 0.0)
    if mode == "absolute":
        return np.abs(m)
    raise ParameterError(f"Unknown scaling {mode!r}; choose one of {', '.join(MODES)}.")


def view_status(m: np.ndarray, *, mode: str = "all") -> Status:
    """OK, NO_SIGNAL (nothing to show in this view) or NUMERICAL_ERROR (NaN or inf anywhere
    in the map, whatever the view)."""
    values = np.asarray(m, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return Status.NUMERICAL_ERROR
    return classify_attribution(_view_values(values, mode))


def scale_map(m: np.ndarray, *, mode: str = "all") -> np.ndarray:
    """``m`` scaled to [-1, 1] (``"all"``) or [0, 1] (``"positive"``, ``"absolute"``).

    Raises :class:`ParameterError` for a degenerate view (see :func:`view_status`), which
    must be shown as such and never normalized.
    """
    status = view_status(m, mode=mode)
    values = _view_values(np.asarray(m, dtype=np.float64), mode)
    if status is not Status.OK:
        raise ParameterError(f"This map cannot be scaled: {STATUS_TEXT[status]}.")
    return values / np.max(np.abs(values))


def colorize(m: np.ndarray, *, cmap: str | Colormap = "diverging") -> np.ndarray:
    """RGB floats (H, W, 3) in [0, 1] for a scaled map."""
    colormap = COLORMAPS.get(cmap) if isinstance(cmap, str) else cmap
    if colormap is None:
        raise ParameterError(f"Unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}.")
    return colormap(m)


def overlay(image: np.ndarray, heat_rgb: np.ndarray, *, alpha: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Blend ``heat_rgb`` over ``image`` (both (H, W, 3) floats in [0, 1]) with opacity ``alpha``.

    ``weight`` (H, W) in [0, 1], when given, scales the opacity per pixel (e.g. the map's
    magnitude, so that weak regions show the image).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"The overlay opacity must be between 0 and 1; got {alpha}.")
    img = np.asarray(image, dtype=np.float64)
    heat = np.asarray(heat_rgb, dtype=np.float64)
    if img.shape != heat.shape:
        raise ParameterError(f"Image {img.shape} and heatmap {heat.shape} must have the same size to overlay.")
    a = alpha if weight is None else alpha * np.clip(np.asarray(weight, dtype=np.float64), 0.0, 1.0)[..., None]
    return (1.0 - a) * img + a * heat


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] to uint8 (rounded)."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class Tile:
    """One rendered heatmap: uint8 (H, W, 3) pixels, the view's status and a caption."""

    rgb: np.ndarray
    status: Status
    caption: str


def grey_tile(height: int, width: int) -> np.ndarray:
    """The neutral tile shown instead of a degenerate or missing map."""
    return np.full((height, width, 3), NEUTRAL_GREY, dtype=np.uint8)


def heatmap_tile(
    attr: np.ndarray,
    *,
    mode: str = "all",
    channel: str = "sum",
    image: np.ndarray | None = None,
    alpha: float = 0.6,
    cmap: str | None = None,
) -> Tile:
    """Render one attribution view, over ``image`` when given.

    ``cmap`` defaults to ``"diverging"`` for ``mode="all"`` and ``"heat"`` otherwise. With an
    image, the opacity is ``alpha`` times the map's magnitude.
    """
    m = channel_view(attr, channel)
    status = view_status(m, mode=mode)
    if status is not Status.OK:
        return Tile(grey_tile(*m.shape), status, STATUS_TEXT[status])
    scaled = scale_map(m, mode=mode)
    rgb = colorize(scaled, cmap=cmap or ("diverging" if mode == "all" else "heat"))
    if image is not None:
        rgb = overlay(image, rgb, alpha=alpha, weight=np.abs(scaled))
    return Tile(to_uint8(rgb), status, "")


# ----------------------------------------------------------------------------------- grid


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support takes no size
        return ImageFont.load_default()


def _upscale(rgb: np.ndarray, width: int) -> Image.Image:
    height = max(1, round(width * rgb.shape[0] / rgb.shape[1]))
    return Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST)


def _captioned(picture: Image.Image, lines: Sequence[str], *, font: ImageFont.ImageFont) -> Image.Image:
    line_h = int(getattr(font, "size", 11) * 1.3)
    canvas = Image.new("RGB", (picture.width, picture.height + line_h * len(lines) + 6), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(lines):
        draw.text((3, picture.height + 3 + k * line_h), text, fill=(20, 20, 20), font=font)
    return canvas


def grid_image(
    result: ExplainResult,
    *,
    mode: str = "all",
    channel: str = "sum",
    overlay_image: bool = False,
    alpha: float = 0.6,
    tile: int = 160,
    columns: int = 4,
) -> np.ndarray:
    """One picture of every method's map (the Explain page's PNG download), uint8 (H, W, 3).

    The first tile is the model input with the target class; then one tile per method with
    its title and status or runtime. Degenerate, unavailable and failed methods get the
    neutral grey tile and their status.
    """
    if columns < 1 or tile < 16:
        raise ParameterError("The grid needs at least one column and tiles of at least 16 pixels.")
    font = _font(max(10, tile // 13))
    height, width = result.image.shape[:2]
    cells = [_captioned(_upscale(to_uint8(result.image), tile), ["input", f"class: {result.target_label}"], font=font)]
    for m in result.methods:
        if m.attribution is None:
            picture, note = grey_tile(height, width), STATUS_TEXT.get(m.status, m.status.value)
        else:
            rendered = heatmap_tile(
                m.attribution, mode=mode, channel=channel, image=result.image if overlay_image else None, alpha=alpha
            )
            picture = rendered.rgb
            note = rendered.caption or f"{m.runtime_s * 1e3:.0f} ms"
        cells.append(_captioned(_upscale(picture, tile), [m.title, note], font=font))
    cell_w = tile
    cell_h = max(c.height for c in cells)
    rows = (len(cells) + columns - 1) // columns
    gap = 6
    sheet = Image.new("RGB", (columns * (cell_w + gap) + gap, rows * (cell_h + gap) + gap), "white")
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        sheet.paste(cell, (gap + c * (cell_w + gap), gap + r * (cell_h + gap)))
    return np.asarray(sheet, dtype=np.uint8)
