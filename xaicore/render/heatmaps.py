"""Turning raw attributions into pictures (NumPy and Pillow only; no Streamlit, no matplotlib).

Views of a (3, H, W) attribution: the channel sum or one colour channel. Scalings:
``"all"`` keeps the sign, drawn with the diverging blue-white-red map (red: evidence for the
class, blue: against); ``"positive"`` keeps the positive part, ``"absolute"`` the magnitude,
both drawn with a sequential map from pale yellow to dark red.

What a person sees (:func:`heatmap_tile`): each view is divided by a *robust* value, the
``percentile``-th percentile of its magnitudes (99 by default: :func:`clip_value`), and values
beyond it are clipped, so that one outlier pixel does not set the scale. The colours are drawn
over a dimmed greyscale copy of the image (or over white: the "heatmap only" view) with an
opacity that grows as the square root of the scaled magnitude (:func:`blend`), so that weak
evidence still shows. Every rendered tile carries its clip value in attribution units, which
:func:`colorbar` writes on a colour bar.

A degenerate view (all zero, or any NaN/inf) is never stretched into a picture:
:func:`view_status` names it and :func:`heatmap_tile` draws a neutral grey tile instead.
:func:`scale_map` (division by the maximum) is kept for callers that need the exact [-1, 1]
range (SSIM inputs, AX).
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
# ColorBrewer YlOrRd anchors: pale yellow (weak) to dark red (strong); it never starts at black,
# so weak values over a dark image stay visible.
HOT = Colormap(
    "hot",
    (0.0, 0.25, 0.5, 0.75, 1.0),
    ((1.0, 0.929, 0.627), (0.996, 0.698, 0.298), (0.992, 0.553, 0.235), (0.890, 0.102, 0.110), (0.502, 0.0, 0.149)),
    signed=False,
)
GRAY = Colormap("gray", (0.0, 1.0), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), signed=False)
COLORMAPS = {c.name: c for c in (DIVERGING, HEAT, HOT, GRAY)}

DEFAULT_PERCENTILE = 99.0
"""Default clip percentile of |attribution| (the Explain page's "contrast")."""
PERCENTILE_RANGE = (90.0, 100.0)
"""The contrast range offered on the pages."""
SIGNED_FLOOR = 0.35
"""Where a signed overlay's weakest colour sits on the diverging map (0: the white middle)."""
COLOR_MEANING = "red: evidence for the class, blue: against it"
"""What the diverging colours mean, for legends."""


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
    if classify_attribution(values) is Status.NUMERICAL_ERROR:
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


def clip_value(m: np.ndarray, *, mode: str = "all", percentile: float = DEFAULT_PERCENTILE) -> float:
    """The robust scale of a map view, in attribution units.

    The ``percentile``-th percentile (``numpy.percentile``, linear interpolation) of the
    magnitudes of the view's values (``|m|`` for ``"all"`` and ``"absolute"``, the positive
    part for ``"positive"``). For a sparse view whose percentile is zero although some values
    are not (more than ``100 - percentile`` percent of zeros), the same percentile of the
    non-zero magnitudes. ``percentile=100`` gives the maximum. Raises
    :class:`ParameterError` for a degenerate view or a percentile outside (0, 100].
    """
    if not (isinstance(percentile, (int, float)) and 0.0 < float(percentile) <= 100.0):
        raise ParameterError(f"The clip percentile must be in (0, 100]; got {percentile!r}.")
    status = view_status(m, mode=mode)
    if status is not Status.OK:
        raise ParameterError(f"This map cannot be scaled: {STATUS_TEXT[status]}.")
    magnitudes = np.abs(_view_values(np.asarray(m, dtype=np.float64), mode)).ravel()
    clip = float(np.percentile(magnitudes, float(percentile)))
    if clip == 0.0:
        clip = float(np.percentile(magnitudes[magnitudes > 0.0], float(percentile)))
    return clip


def robust_scale(
    m: np.ndarray, *, mode: str = "all", percentile: float = DEFAULT_PERCENTILE
) -> tuple[np.ndarray, float]:
    """``m`` divided by its :func:`clip_value` and clipped to [-1, 1] (``"all"``) or [0, 1],
    and the clip value."""
    clip = clip_value(m, mode=mode, percentile=percentile)
    values = _view_values(np.asarray(m, dtype=np.float64), mode) / clip
    low = -1.0 if mode == "all" else 0.0
    return np.clip(values, low, 1.0), clip


def dimmed_grey(image: np.ndarray, *, low: float = 0.2, high: float = 0.7) -> np.ndarray:
    """A greyscale copy of an (H, W, 3) image in [0, 1] with its range pressed into
    [``low``, ``high``], so that colours drawn over it stand out; (H, W, 3) floats."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ParameterError(f"The image must have shape (H, W, 3); got {img.shape}.")
    luma = img @ np.array([0.299, 0.587, 0.114])
    grey = low + (high - low) * np.clip(luma, 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=-1)


def blend(
    scaled: np.ndarray,
    *,
    cmap: str | Colormap,
    image: np.ndarray | None = None,
    alpha: float = 0.8,
    gamma: float = 0.5,
) -> np.ndarray:
    """The colours of a scaled map over a dimmed grey copy of ``image`` (white without one).

    Per pixel the opacity is ``alpha * |scaled| ** gamma``: strong values take the full
    ``alpha``, and with ``gamma`` 0.5 a value at a tenth of the clip value still gets a third
    of it, so the weak parts of a map show instead of vanishing. A signed map's colour is a
    shade of red or blue by sign, from :data:`SIGNED_FLOOR` of the way out of the white middle
    of the diverging map to its end, so a weak value tints rather than whitens. Returns
    (H, W, 3) floats.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"The overlay opacity must be between 0 and 1; got {alpha}.")
    if not gamma > 0.0:
        raise ParameterError(f"The opacity curve's exponent must be positive; got {gamma}.")
    values = np.asarray(scaled, dtype=np.float64)
    colormap = COLORMAPS.get(cmap) if isinstance(cmap, str) else cmap
    if colormap is None:
        raise ParameterError(f"Unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}.")
    if colormap.signed:  # weak values take a light shade of their sign's colour, never the white middle
        heat = colormap(np.sign(values) * (SIGNED_FLOOR + (1.0 - SIGNED_FLOOR) * np.clip(np.abs(values), 0.0, 1.0)))
    else:
        heat = colormap(values)
    if image is None:
        base = np.ones_like(heat)
    else:
        base = dimmed_grey(image)
        if base.shape != heat.shape:
            raise ParameterError(f"Image {base.shape} and heatmap {heat.shape} must have the same size to overlay.")
    weight = alpha * np.clip(np.abs(values), 0.0, 1.0) ** gamma
    return (1.0 - weight[..., None]) * base + weight[..., None] * heat


def default_cmap(mode: str) -> str:
    """The colour map of a scaling: diverging for signed maps, ``"hot"`` otherwise."""
    return "diverging" if mode == "all" else "hot"


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
    """One rendered heatmap: uint8 (H, W, 3) pixels, the view's status and a caption.

    ``clip`` is the value (attribution units) drawn at full colour, from the ``percentile``-th
    percentile of the view's magnitudes (NaN for a degenerate view); ``mode`` the scaling.
    """

    rgb: np.ndarray
    status: Status
    caption: str
    clip: float = float("nan")
    percentile: float = DEFAULT_PERCENTILE
    mode: str = "all"


def grey_tile(height: int, width: int) -> np.ndarray:
    """The neutral tile shown instead of a degenerate or missing map."""
    return np.full((height, width, 3), NEUTRAL_GREY, dtype=np.uint8)


def heatmap_tile(
    attr: np.ndarray,
    *,
    mode: str = "all",
    channel: str = "sum",
    image: np.ndarray | None = None,
    alpha: float = 0.8,
    cmap: str | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> Tile:
    """Render one attribution view, over a dimmed grey copy of ``image`` when given, else
    alone over white (the "heatmap only" view).

    The view is scaled by :func:`robust_scale` at ``percentile`` and drawn by :func:`blend`
    with opacity ``alpha``. ``cmap`` defaults to :func:`default_cmap` of ``mode``.
    """
    return render_map(
        channel_view(attr, channel), mode=mode, image=image, alpha=alpha, cmap=cmap, percentile=percentile
    )


def render_map(
    m: np.ndarray,
    *,
    mode: str = "all",
    image: np.ndarray | None = None,
    alpha: float = 0.8,
    cmap: str | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    clip: float | None = None,
) -> Tile:
    """Render one (H, W) map as :func:`heatmap_tile` does; ``clip``, when given, replaces the
    map's own :func:`clip_value` (to draw several maps on one shared scale)."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise ParameterError(f"A map to render must have shape (H, W); got {m.shape}.")
    status = view_status(m, mode=mode)
    if status is not Status.OK:
        return Tile(grey_tile(*m.shape), status, STATUS_TEXT[status], percentile=float(percentile), mode=mode)
    if clip is None:
        scaled, clip = robust_scale(m, mode=mode, percentile=percentile)
    else:
        if not (np.isfinite(clip) and clip > 0):
            raise ParameterError(f"A shared clip value must be positive and finite; got {clip!r}.")
        low = -1.0 if mode == "all" else 0.0
        scaled = np.clip(_view_values(np.asarray(m, dtype=np.float64), mode) / clip, low, 1.0)
    if image is not None and np.asarray(image).shape[:2] != m.shape:
        raise ParameterError(f"Image {np.asarray(image).shape} and map {m.shape} must have the same size to overlay.")
    rgb = blend(scaled, cmap=cmap or default_cmap(mode), image=image, alpha=alpha)
    return Tile(to_uint8(rgb), status, "", clip=float(clip), percentile=float(percentile), mode=mode)


def shared_clip(maps: Sequence[np.ndarray], *, mode: str = "all", percentile: float = DEFAULT_PERCENTILE) -> float:
    """One clip value for several maps drawn side by side: :func:`clip_value` of all their
    non-degenerate views together (NaN when every one is degenerate)."""
    usable = [
        np.asarray(m, dtype=np.float64).ravel() for m in maps if view_status(np.asarray(m), mode=mode) is Status.OK
    ]
    if not usable:
        return float("nan")
    return clip_value(np.concatenate(usable)[None, :], mode=mode, percentile=percentile)


def tinted_share(tile_rgb: np.ndarray, reference_rgb: np.ndarray, *, threshold: int = 10) -> float:
    """Share of pixels of ``tile_rgb`` differing from ``reference_rgb`` (both uint8 (H, W, 3))
    by more than ``threshold`` levels in some channel: how much of a tile is visibly tinted."""
    a = np.asarray(tile_rgb, dtype=np.int16)
    b = np.asarray(reference_rgb, dtype=np.int16)
    if a.shape != b.shape:
        raise ParameterError(f"Tiles {a.shape} and {b.shape} must have the same size to compare.")
    return float(np.mean(np.abs(a - b).max(axis=-1) > threshold))


def format_value(value: float) -> str:
    """A scale value for a colour bar: three significant digits with its sign."""
    text = f"{abs(value):.3g}"
    if value > 0:
        return "+" + text
    if value < 0:
        return "-" + text
    return "0"


def colorbar_labels(clip: float, *, mode: str = "all") -> tuple[str, str, str]:
    """The numbers written under a colour bar: left end, middle, right end."""
    if mode == "all":
        return format_value(-clip), "0", format_value(clip)
    return "0", format_value(clip / 2.0), format_value(clip)


def colorbar_text(clip: float, *, mode: str = "all", percentile: float = DEFAULT_PERCENTILE) -> str:
    """One line saying what a colour bar shows, e.g. ``"colour bar: −0.012 … 0 … +0.012"``."""
    left, middle, right = colorbar_labels(clip, mode=mode)
    return (
        f"colour bar: {left} \u2026 {middle} \u2026 {right} (clip at the {percentile:g}th percentile of |attribution|)"
    )


def colorbar(
    clip: float,
    *,
    mode: str = "all",
    width: int = 256,
    alpha: float = 0.8,
    cmap: str | None = None,
    font_size: int | None = None,
    plain: bool = False,
    over_white: bool = False,
) -> np.ndarray:
    """A colour bar, uint8 (h, ``width``, 3): the colours of the scale drawn as :func:`blend`
    draws them over a mid-grey pixel (``over_white``: over white, as in the "heatmap only" view;
    ``plain``: the colour map's own colours, for maps drawn alone at full strength), with the values at both ends
    and in the middle (``-clip``, 0, ``+clip`` for signed maps; 0, ``clip/2``, ``clip`` otherwise)."""
    if not (np.isfinite(clip) and clip > 0):
        raise ParameterError(f"A colour bar needs a positive, finite clip value; got {clip!r}.")
    if width < 16:
        raise ParameterError("A colour bar must be at least 16 pixels wide.")
    size = font_size or max(10, width // 20)
    font = _font(size)
    bar_h = max(8, size)
    low = -1.0 if mode == "all" else 0.0
    values = np.linspace(low, 1.0, width)[None, :].repeat(bar_h, axis=0)
    if plain:
        colours = to_uint8(colorize(values, cmap=cmap or default_cmap(mode)))
    else:
        grey = None if over_white else np.full((bar_h, width, 3), 0.5)
        colours = to_uint8(blend(values, cmap=cmap or default_cmap(mode), image=grey, alpha=alpha))
    canvas = Image.new("RGB", (width, bar_h + int(size * 1.4) + 2), "white")
    canvas.paste(Image.fromarray(colours), (0, 0))
    draw = ImageDraw.Draw(canvas)
    left, middle, right = colorbar_labels(clip, mode=mode)
    y = bar_h + 1
    if mode == "all":  # mark zero
        draw.line([(width // 2, 0), (width // 2, bar_h - 1)], fill=(60, 60, 60), width=1)
    draw.text((1, y), left, fill=(20, 20, 20), font=font)
    mid_w = draw.textlength(middle, font=font)
    draw.text((int((width - mid_w) / 2), y), middle, fill=(20, 20, 20), font=font)
    right_w = draw.textlength(right, font=font)
    draw.text((int(width - right_w - 1), y), right, fill=(20, 20, 20), font=font)
    return np.asarray(canvas, dtype=np.uint8)


# ----------------------------------------------------------------------------------- grid


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support takes no size
        return ImageFont.load_default()


def _upscale(rgb: np.ndarray, width: int) -> Image.Image:
    height = max(1, round(width * rgb.shape[0] / rgb.shape[1]))
    return Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST)


def _captioned(
    picture: Image.Image, lines: Sequence[str], *, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> Image.Image:
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
    alpha: float = 0.8,
    tile: int = 160,
    columns: int = 4,
    percentile: float = DEFAULT_PERCENTILE,
) -> np.ndarray:
    """One picture of every method's map (the Explain page's PNG download), uint8 (H, W, 3).

    The first tile is the model input with the target class; then one tile per method with
    its title, status or runtime, and its colour bar in attribution units (each map has its
    own clip value, the ``percentile``-th percentile of its magnitudes). A last line says what
    the colours mean. Degenerate, unavailable and failed methods get the neutral grey tile and
    their status, and no colour bar.
    """
    if columns < 1 or tile < 16:
        raise ParameterError("The grid needs at least one column and tiles of at least 16 pixels.")
    font = _font(max(10, tile // 13))
    height, width = result.image.shape[:2]
    cells = [_captioned(_upscale(to_uint8(result.image), tile), ["input", f"class: {result.target_label}"], font=font)]
    for m in result.methods:
        bar = None
        if m.attribution is None:
            picture, note = grey_tile(height, width), STATUS_TEXT.get(m.status, m.status.value)
        else:
            rendered = heatmap_tile(
                m.attribution,
                mode=mode,
                channel=channel,
                image=result.image if overlay_image else None,
                alpha=alpha,
                percentile=percentile,
            )
            picture = rendered.rgb
            note = rendered.caption or f"{m.runtime_s * 1e3:.0f} ms"
            if rendered.status is Status.OK:
                bar = colorbar(rendered.clip, mode=mode, width=tile, alpha=alpha, over_white=not overlay_image)
        cell = _captioned(_upscale(picture, tile), [m.title, note], font=font)
        if bar is not None:
            cell = _stacked(cell, Image.fromarray(bar))
        cells.append(cell)
    cell_w = tile
    cell_h = max(c.height for c in cells)
    rows = (len(cells) + columns - 1) // columns
    gap = 6
    legend = f"Each map is clipped at the {percentile:g}th percentile of |attribution|; the bar under it gives " + (
        "that value in attribution units; " + COLOR_MEANING + "."
        if mode == "all"
        else "that value in attribution units; darker red: stronger evidence for the class."
    )
    sheet_w = columns * (cell_w + gap) + gap
    lines = _wrap(legend, font=font, width=sheet_w - 2 * gap)
    line_h = int(getattr(font, "size", 11) * 1.3)
    legend_h = line_h * len(lines) + gap
    sheet = Image.new("RGB", (sheet_w, rows * (cell_h + gap) + gap + legend_h), "white")
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        sheet.paste(cell, (gap + c * (cell_w + gap), gap + r * (cell_h + gap)))
    draw = ImageDraw.Draw(sheet)
    for k, text in enumerate(lines):
        draw.text((gap, rows * (cell_h + gap) + gap + k * line_h), text, fill=(20, 20, 20), font=font)
    return np.asarray(sheet, dtype=np.uint8)


def _stacked(top: Image.Image, bottom: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    canvas.paste(top, (0, 0))
    canvas.paste(bottom, (0, top.height))
    return canvas


def _wrap(text: str, *, font, width: int) -> list[str]:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in text.split():
        if lines and probe.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
