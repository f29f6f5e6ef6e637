"""What the model saw: its input image for display, and the given image with the kept box marked.

:func:`input_view` runs an image through the bundle's own :meth:`ModelBundle.to_input` (so the
picture is exactly the model's input) and returns plain arrays for any front end:

* ``tile``: the model input at its resolution, enlarged by a whole factor with nearest-neighbour
  sampling so that its pixels stay visible as squares (in gray for a grayscale model, which
  turns its input to luminance inside);
* ``original``: the given image (reduced for display when very large) with the part the model
  saw outlined and the rest dimmed, when the preprocessing cropped or padded it;
* ``framing``: the :class:`~xaicore.models.preprocess.Framing` (box, cropped or not, notice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xaicore.errors import ParameterError
from xaicore.models.bundle import ModelBundle
from xaicore.models.preprocess import Framing

DISPLAY_SIDE = 256  # the tile is enlarged until its longer side reaches at least this many pixels
MAX_ORIGINAL_SIDE = 1024  # larger originals are reduced (nearest) before the box is drawn
BOX_COLOUR = (255, 196, 0)
OUTSIDE_DIM = 0.4  # brightness kept outside the box
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # as PixelSpaceModel's grayscale mode


@dataclass(frozen=True)
class InputView:
    """The model input of one image and how it was made, ready to draw.

    Attributes
    ----------
    model_input:
        (H, W, 3) float32 in [0, 1]: exactly what :meth:`ModelBundle.to_input` gives.
    tile:
        (H * scale, W * scale, 3) uint8: the model input enlarged by nearest neighbour
        (luminance copied to three channels for a grayscale model).
    scale:
        The whole enlargement factor of ``tile``.
    original:
        (h, w, 3) uint8: the given image, with the kept box outlined and the rest dimmed when
        the image was cropped or padded.
    framing:
        What the preprocessing did to the image.
    grayscale:
        Whether the model turns its input to gray.
    """

    model_input: np.ndarray
    tile: np.ndarray
    scale: int
    original: np.ndarray
    framing: Framing
    grayscale: bool

    @property
    def notice(self) -> str:
        """The warning to show when the model did not see the image as it is; ``""`` otherwise."""
        return self.framing.notice()

    @property
    def caption(self) -> str:
        """A caption for the tile: its size and how it was made from the image."""
        text = self.framing.summary()
        if self.grayscale:
            text += " Shown in gray: the model turns its input to gray."
        return text


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (H, W, C) enlarged ``factor`` times in both directions, each pixel a square block."""
    if int(factor) < 1:
        raise ParameterError("The enlargement factor must be a whole number of at least 1.")
    f = int(factor)
    return np.ascontiguousarray(np.repeat(np.repeat(image, f, axis=0), f, axis=1))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8 (rounded)."""
    return np.ascontiguousarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def mark_box(image: np.ndarray, box: tuple[int, int, int, int], *, line: int | None = None) -> np.ndarray:
    """``image`` (uint8, (h, w, 3)) with the rest outside ``box`` (top, left, bottom, right) dimmed and
    the box outlined; ``line`` is the outline's width (default: about 1% of the longer side, at least 2)."""
    out = image.astype(np.float32)
    h, w = out.shape[:2]
    top, left, bottom, right = (int(v) for v in box)
    inside = np.zeros((h, w), dtype=bool)
    inside[top:bottom, left:right] = True
    out[~inside] *= OUTSIDE_DIM
    width = max(2, round(max(h, w) / 100)) if line is None else int(line)
    colour = np.array(BOX_COLOUR, dtype=np.float32)
    t0, l0 = max(top - width, 0), max(left - width, 0)
    b1, r1 = min(bottom + width, h), min(right + width, w)
    out[t0:top, l0:r1] = colour
    out[bottom:b1, l0:r1] = colour
    out[t0:b1, l0:left] = colour
    out[t0:b1, right:r1] = colour
    return np.ascontiguousarray(out.round().astype(np.uint8))


def input_view(bundle: ModelBundle, image: np.ndarray, *, display_side: int = DISPLAY_SIDE) -> InputView:
    """The model input of ``image`` ((h, w, 3) in [0, 1]) under ``bundle``'s preprocessing, for display."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ParameterError("The image must have shape (height, width, 3).")
    framing = bundle.preprocess.frame(array.shape[0], array.shape[1])
    model_input = bundle.to_input(array)[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)
    grayscale = bool(getattr(bundle.model, "grayscale", False))
    shown = model_input
    if grayscale:
        shown = np.repeat((model_input @ _LUMA)[..., None], 3, axis=-1)
    scale = max(1, math.ceil(int(display_side) / max(model_input.shape[:2])))
    tile = upscale_nearest(to_uint8(shown), scale)
    step = max(1, math.ceil(max(array.shape[:2]) / MAX_ORIGINAL_SIDE))
    original = to_uint8(array[::step, ::step])
    if framing.cropped or framing.padded:
        top, left, bottom, right = framing.pixel_box()
        reduced = (top // step, left // step, -(-bottom // step), -(-right // step))
        original = mark_box(original, reduced)
    return InputView(
        model_input=model_input, tile=tile, scale=scale, original=original, framing=framing, grayscale=grayscale
    )
