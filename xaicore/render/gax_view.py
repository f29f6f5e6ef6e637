"""Pictures of a GAX history (NumPy and Pillow only): per-channel tiles and an animated GIF.

The R, G and B channels of a heatmap (or of the change between two steps) are drawn with the
diverging blue-white-red map of :mod:`xaicore.render.heatmaps` on one *shared* scale, the largest
absolute value over the three channels, so the channels can be compared; an all-zero view is a
neutral grey tile, never a stretched picture.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xaicore.confidence.gax import GaxImageResult
from xaicore.errors import ParameterError
from xaicore.explainers.results import Status, classify_attribution
from xaicore.render import heatmaps

CHANNEL_NAMES = ("R", "G", "B")
LUT_LEVELS = 2047
"""Entries of the colour lookup table over [-1, 1]: adjacent entries differ by under one uint8 level."""

_LUT = heatmaps.to_uint8(heatmaps.colorize(np.linspace(-1.0, 1.0, LUT_LEVELS)))


def diverging_rgb(values: np.ndarray) -> np.ndarray:
    """uint8 RGB of values in [-1, 1] (clipped) through the diverging map, by table lookup.

    Equal to ``heatmaps.to_uint8(heatmaps.colorize(values))`` within one level per channel, and
    an order of magnitude faster, so that scrubbing large heatmaps stays quick.
    """
    index = np.rint((np.clip(values, -1.0, 1.0) + 1.0) * ((LUT_LEVELS - 1) / 2.0)).astype(np.intp)
    return _LUT[index]


@dataclass(frozen=True)
class ChannelTiles:
    """Three uint8 (H, W, 3) tiles (R, G, B), the shared scale they were drawn with, and the
    status of the view (OK, NO_SIGNAL when every value is zero, NUMERICAL_ERROR for NaN/inf)."""

    tiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    scale: float
    status: Status


def channel_tiles(values: np.ndarray, *, scale: float | None = None) -> ChannelTiles:
    """Tiles of a (3, H, W) map on one diverging scale: ``scale``, or the map's absolute maximum."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] != 3:
        raise ParameterError("A GAX map has shape (3, H, W).")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"The colour scale must be a positive number; got {scale!r}.")
    grey = heatmaps.grey_tile(*values.shape[1:])
    status = classify_attribution(values)
    if status is Status.NUMERICAL_ERROR:
        return ChannelTiles((grey, grey, grey), float("nan"), status)
    if status is Status.NO_SIGNAL:
        return ChannelTiles((grey, grey, grey), 0.0 if scale is None else float(scale), status)
    used = float(np.max(np.abs(values))) if scale is None else float(scale)
    tiles = tuple(diverging_rgb(v / used) for v in values)
    return ChannelTiles(tiles, used, Status.OK)  # type: ignore[arg-type]


def colorbar(drawn: ChannelTiles, *, width: int = 360) -> np.ndarray | None:
    """The colour bar of tiles drawn by :func:`channel_tiles`: the diverging map from
    ``-scale`` to ``+scale`` with its numbers (``None`` when the view has no scale)."""
    if drawn.status is not Status.OK or not (np.isfinite(drawn.scale) and drawn.scale > 0):
        return None
    return heatmaps.colorbar(drawn.scale, mode="all", width=width, cmap="diverging", plain=True)


def colorbar_text(drawn: ChannelTiles) -> str:
    """The numbers of :func:`colorbar` in words."""
    left, middle, right = heatmaps.colorbar_labels(drawn.scale, mode="all")
    return f"colour bar: {left} \u2026 {middle} \u2026 {right} (blue: negative, red: positive; pixel units)"


def frame_indices(count: int, *, max_frames: int) -> list[int]:
    """At most ``max_frames`` indices of ``range(count)``, evenly spread, first and last kept."""
    if max_frames < 2:
        raise ParameterError("An animation needs at least two frames.")
    if count <= max_frames:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, max_frames)})


def evolution_gif(
    result: GaxImageResult,
    *,
    upscale: int = 3,
    frame_ms: int = 100,
    max_frames: int = 120,
) -> bytes:
    """An animated GIF of the heatmap's R, G and B channels, step by step.

    Every frame uses the same scale (1: ``tanh`` keeps the heatmap in [-1, 1]) so colours mean
    the same thing throughout, shown by a colour bar under the channels; each carries its step
    and CO score. Long histories are thinned
    to ``max_frames`` frames, first and last kept; the last frame is held longer.
    """
    if upscale < 1 or frame_ms < 10:
        raise ParameterError("upscale must be at least 1 and frame_ms at least 10.")
    history = result.history
    indices = frame_indices(len(history), max_frames=max_frames)
    font = ImageFont.load_default()
    frames = [
        _gif_frame(
            history.heatmap(i),
            step=int(history.steps[i]),
            co=float(result.co_curve[int(history.steps[i])]),
            upscale=upscale,
            font=font,
        )
        for i in indices
    ]
    durations = [frame_ms] * (len(frames) - 1) + [max(frame_ms, 1500)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buffer.getvalue()


def _gif_frame(heatmap: np.ndarray, *, step: int, co: float, upscale: int, font) -> Image.Image:
    drawn = channel_tiles(heatmap, scale=1.0)
    gap = np.full((heatmap.shape[1], 2, 3), 255, dtype=np.uint8)
    strip = np.concatenate([drawn.tiles[0], gap, drawn.tiles[1], gap, drawn.tiles[2]], axis=1)
    size = (strip.shape[1] * upscale, strip.shape[0] * upscale)
    picture = Image.fromarray(strip).resize(size, Image.Resampling.NEAREST)
    bar = Image.fromarray(heatmaps.colorbar(1.0, mode="all", width=picture.width, cmap="diverging", plain=True))
    canvas = Image.new("RGB", (picture.width, picture.height + 16 + bar.height), "white")
    canvas.paste(picture, (0, 16))
    canvas.paste(bar, (0, 16 + picture.height))
    ImageDraw.Draw(canvas).text((2, 2), f"step {step}   CO {co:.2f}   (R | G | B)", fill="black", font=font)
    return canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)


def gif_frame_count(data: bytes) -> int:
    """Number of frames of a GIF file (for checks and captions)."""
    with Image.open(io.BytesIO(data)) as image:
        return int(getattr(image, "n_frames", 1))


__all__: Sequence[str] = (
    "CHANNEL_NAMES",
    "diverging_rgb",
    "ChannelTiles",
    "channel_tiles",
    "colorbar",
    "colorbar_text",
    "frame_indices",
    "evolution_gif",
    "gif_frame_count",
)
