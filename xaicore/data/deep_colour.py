"""16 bits per channel colour images, read at their full precision.

Pillow has no 16-bit RGB mode: it opens 48- and 64-bit PNG and TIFF files as 8-bit ``RGB`` or
``RGBA`` and keeps only the high byte of every value. These files are read here instead:

* **PNG** (colour types 2, 4 and 6 at bit depth 16, not interlaced): the ``IDAT`` stream is
  inflated with a cap at the size the header announces, and the five row filters are undone
  for every pixel along anti-diagonals (a pixel depends only on its left, upper and upper-left
  neighbours, which lie on earlier diagonals), so the work is vectorized over each diagonal;
  ``tRNS`` (one transparent colour) is honoured;
* **TIFF** with 16-bit samples: read with ``tifffile`` (a scikit-image dependency).

:func:`read_deep_colour` returns the values as float64 in [0, 1] (value / 65535), with alpha
when the file has transparency; :mod:`xaicore.data.images` composites and converts as for any
other image. Whatever else (interlaced PNGs, other layouts) returns ``None``: Pillow's 8-bit
reading is used, with a notice.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import cast

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (RGB, gray + alpha, RGBA)


def png_deep_layout(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, colour type) of a non-interlaced 16-bit colour PNG, else ``None``."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 16 or colour not in _CHANNELS or interlace != 0:
        return None
    return width, height, colour


def read_deep_colour(data: bytes, fmt: str, rawmode: str) -> np.ndarray | None:
    """(H, W, C) float64 in [0, 1] (C = 3 colour, 2 gray + alpha or 4 with alpha), or ``None``.

    ``rawmode`` is Pillow's for the first tile (``"RGB;16B"``...): the file is read here only
    when it says 16 bits per sample. Raises ``ValueError`` or ``zlib.error`` for damaged data.
    """
    if ";16" not in rawmode:
        return None
    if fmt == "PNG":
        layout = png_deep_layout(data)
        return None if layout is None else _read_png(data, *layout)
    if fmt == "TIFF":
        return _read_tiff(data)
    return None


def _read_png(data: bytes, width: int, height: int, colour: int) -> np.ndarray:
    channels = _CHANNELS[colour]
    bpp = 2 * channels
    idat, key = [], None
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS" and colour == 2 and len(body) == 6:
            key = np.frombuffer(body, dtype=">u2")
        elif kind == b"IEND":
            break
        at += 12 + length
    expected = height * (1 + width * bpp)
    inflater = zlib.decompressobj()
    raw = inflater.decompress(b"".join(idat), expected)
    if len(raw) < expected:
        raise ValueError("the image data ends early (truncated)")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * bpp)
    kinds = rows[:, 0].astype(np.int16)
    if np.any(kinds > 4):
        raise ValueError("a row has an unknown PNG filter")
    filtered = rows[:, 1:].reshape(height, width, bpp).astype(np.int16)
    values = _unfilter(filtered, kinds).astype(np.uint8).reshape(height, width * bpp)
    samples = values.view(">u2").reshape(height, width, channels).astype(np.float64)
    if key is not None:
        opaque = np.any(samples != key.astype(np.float64), axis=2, keepdims=True)
        samples = np.concatenate([samples, np.where(opaque, 65535.0, 0.0)], axis=2)
    return samples / 65535.0


def _unfilter(filtered: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Undo PNG's row filters; ``filtered`` (H, W, bpp) int16 bytes, ``kinds`` (H,) filter types."""
    height, width, bpp = filtered.shape
    out = np.zeros((height + 1, width + 1, bpp), dtype=np.int16)  # a zero row above, a zero column left
    for d in range(height + width - 1):
        ys = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        xs = d - ys
        a = out[ys + 1, xs]  # left
        b = out[ys, xs + 1]  # up
        c = out[ys, xs]  # up-left
        kind = kinds[ys][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        predictor = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [a, b, (a + b) // 2, paeth], 0)
        out[ys + 1, xs + 1] = (filtered[ys, xs] + predictor) & 0xFF
    return out[1:, 1:]


def _read_tiff(data: bytes) -> np.ndarray | None:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = cast(tifffile.TiffPage, tif.pages[0])  # the first page is always read as a TiffPage
        if page.dtype is None or np.dtype(page.dtype) != np.uint16 or page.samplesperpixel not in (2, 3, 4):
            return None
        if page.photometric not in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.MINISBLACK):
            return None
        values = page.asarray()
    if values.ndim != 3 or values.shape[2] not in (2, 3, 4):
        return None
    return values.astype(np.float64) / 65535.0
