"""Reading user images safely into RGB float arrays.

Every upload goes through :func:`load_image`: a byte cap before reading, the format judged by
content against an allow-list (the file name is ignored), the pixel count, the aspect ratio and
the memory the decoding will take (:func:`decode_cost`, per colour mode and conversion path)
checked against caps before any pixel is decoded (decompression bombs), EXIF orientation
applied, and every colour
mode (grayscale, alpha, palette, CMYK, 16-bit, 32-bit integer, float, 1-bit) turned into RGB
float32 in [0, 1]. Whatever goes wrong surfaces as :class:`~xaicore.errors.ImageLoadError`
with one plain sentence; no other exception type escapes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xaicore.errors import ImageLoadError

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
"""Pillow format identifiers accepted by :func:`load_image`, judged by file content."""

FORMAT_TITLES = {
    "PNG": "PNG",
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "WEBP": "WebP",
    "GIF": "GIF",
}
SUPPORTED_TEXT = "PNG, JPEG, BMP, TIFF, WebP or GIF"

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 50 * 2**20
DEFAULT_MAX_DECODE_BYTES = 512 * 10**6
"""Memory one decode may take at its peak (decoded picture, conversions and the float result):
about 19 megapixels of RGB or RGBA, 9 of 16-bit gray."""
MAX_ASPECT_RATIO = 400
"""Longest side over shortest: a 30000x1 strip cannot be shown or resized to a model's input."""

# Signatures of common formats we refuse, so that the message can name what the file is.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"%!PS", "an EPS/PostScript file"),
    (b"\xc5\xd0\xd3\xc6", "an EPS/PostScript file"),
    (b"%PDF", "a PDF document"),
    (b"<?xml", "an XML file"),
    (b"<!doctype html", "a web page (HTML)"),
    (b"<html", "a web page (HTML)"),
    (b"\x00\x00\x01\x00", "an icon (ICO) file"),
    (b"8BPS", "a Photoshop (PSD) file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy array file"),
)

Source = bytes | bytearray | memoryview | str | Path | BinaryIO
T = TypeVar("T")


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for a model: RGB float32 in [0, 1], upright.

    Attributes
    ----------
    array:
        (H, W, 3) float32, finite, in [0, 1], EXIF orientation applied.
    format:
        Format found in the content: ``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"``, ``"WEBP"`` or ``"GIF"``.
    original_size:
        (width, height) of the upright picture at full resolution, before any later resizing.
    notices:
        Plain sentences about conversions the user should know of (first frame used,
        transparency composited on white, values rescaled ...).
    mask:
        An optional (H, W) boolean object mask; ``None`` from :func:`load_image`.
    name:
        The file name given by the caller, for messages and display only.
    """

    array: np.ndarray
    format: str
    original_size: tuple[int, int]
    notices: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    name: str | None = None


def load_image(
    source: Source,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> LoadedImage:
    """Read an image file safely into an upright RGB float32 array in [0, 1].

    Parameters
    ----------
    source:
        The file's bytes, a path, or a binary file object (for example a Streamlit upload).
    name:
        File name for messages; the format is judged by content, never by this name.
    max_pixels:
        Largest width x height accepted, checked from the header before decoding.
    max_bytes:
        Largest file size accepted, checked before reading the whole file.
    max_decode_bytes:
        Largest peak memory the decoding may take, estimated from the header by
        :func:`decode_cost` before decoding.

    Returns
    -------
    LoadedImage

    Raises
    ------
    ImageLoadError
        Empty, damaged, truncated, unsupported or over-size files, with one plain sentence.
    """
    subject = _subject(source, name)
    data = read_capped(source, max_bytes=max_bytes, subject=subject)
    notices: list[str] = []
    with _opened(data, subject=subject, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes) as im:
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        _note_frames(im, fmt, notices, subject)
        deep = _guarded(lambda: _read_deep(data, im, fmt), subject) if _is_deep_colour(im) else None
        if deep is not None:  # 16 bits per channel: read here at full precision (Pillow keeps 8)
            array = _guarded(lambda: _deep_to_rgb(deep, _orientation(im), notices), subject)
        else:
            if _is_deep_colour(im):
                notices.append("This image has 16 bits per channel in a layout read at 8 bits per channel.")
            upright = _decode_upright(im, subject=subject, notices=notices)
            array = _guarded(lambda: to_rgb_float(upright, notices=notices), subject)
    return LoadedImage(
        array=array,
        format=fmt,
        original_size=(array.shape[1], array.shape[0]),
        notices=tuple(notices),
        name=name,
    )


def load_mask(
    source: Source,
    *,
    size: tuple[int, int] | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> np.ndarray:
    """Read a mask image: a pixel belongs to the object where it is nonzero.

    A pixel counts as object when any colour channel is nonzero and, for images with
    transparency, it is not fully transparent. The same safety checks as :func:`load_image`
    apply; EXIF orientation is applied.

    Parameters
    ----------
    size:
        (height, width) to resize the mask to with nearest-neighbour sampling, or ``None``.

    Returns
    -------
    np.ndarray
        (H, W) bool.
    """
    subject = _subject(source, name)
    data = read_capped(source, max_bytes=max_bytes, subject=subject)
    with _opened(data, subject=subject, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes) as im:
        upright = _decode_upright(im, subject=subject, notices=[])
        mask = _guarded(lambda: _nonzero(upright), subject)
    if size is not None:
        mask = resize_mask(mask, size)
    return mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) bool mask to ``size`` = (height, width)."""
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ImageLoadError(f"A mask cannot be resized to {height}x{width}; both sides must be at least 1.")
    src_h, src_w = mask.shape
    if (src_h, src_w) == (height, width):
        return mask.astype(bool, copy=True)
    rows = np.minimum(((np.arange(height) + 0.5) * src_h / height).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * src_w / width).astype(np.int64), src_w - 1)
    return np.ascontiguousarray(mask[rows[:, None], cols[None, :]], dtype=bool)


def image_hash(array: np.ndarray) -> str:
    """sha256 (hex) of an image array's shape and float32 bytes: names an image in caches."""
    values = np.ascontiguousarray(array, dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(str(tuple(values.shape)).encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def read_capped(source: Source, *, max_bytes: int, subject: str = "The file") -> bytes:
    """The bytes of ``source``, refusing more than ``max_bytes`` before reading them all."""
    limit = _mb(max_bytes)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if not path.is_file():
                raise ImageLoadError(f"No image file was found at {str(path)!r}.")
            if path.stat().st_size > max_bytes:
                raise ImageLoadError(f"{subject} is larger than the {limit} limit for images.")
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageLoadError(f"{subject} could not be read from disk ({exc.strerror or exc}).") from exc
    elif hasattr(source, "read"):
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read(max_bytes + 1)
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"{subject} could not be read ({exc}).") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(f"{subject} must be opened in binary mode to be read as an image.")
        data = bytes(data)
    else:
        raise ImageLoadError(f"An image must be given as bytes, a path or a binary file, not {type(source).__name__}.")
    if len(data) > max_bytes:
        raise ImageLoadError(f"{subject} is larger than the {limit} limit for images.")
    if not data:
        raise ImageLoadError(f"{subject} is empty.")
    return data


def to_rgb_float(im: Image.Image, *, notices: list[str] | None = None) -> np.ndarray:
    """A decoded Pillow image of any mode as an (H, W, 3) float32 array in [0, 1].

    Alpha (and palette or single-colour transparency) is composited on white; CMYK goes
    through its embedded ICC profile when it has one, else the plain ink formula; 16-bit
    integers are divided by 65535 (or by their bit depth's maximum); other integer and float
    data outside [0, 1] are rescaled from their own minimum and maximum, with a notice.
    """
    notes = notices if notices is not None else []
    mode = im.mode
    if mode in _HIGH_BIT_MODES:
        gray = _scaled_gray(im, notes)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2), dtype=np.float32)
    if mode == "CMYK":
        return _rgb8(_cmyk_to_rgb(im, notes))
    if mode in ("RGBa", "La"):
        im = im.convert(mode[0] + "A" if mode == "La" else "RGBA")
        mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    if has_alpha:
        rgba8 = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        out = np.empty(rgba8.shape[:2] + (3,), dtype=np.float32)
        transparent = False
        rows = max(1, _BLOCK_PIXELS // max(1, rgba8.shape[1]))
        for start in range(0, rgba8.shape[0], rows):  # row blocks: float64 temporaries stay small
            rgba = rgba8[start : start + rows].astype(np.float64) / 255.0
            alpha = rgba[:, :, 3:4]
            transparent = transparent or bool(np.any(alpha < 1.0))
            out[start : start + rows] = np.clip(rgba[:, :, :3] * alpha + (1.0 - alpha), 0.0, 1.0)
        if transparent:
            notes.append("Transparent areas were composited on white.")
        return out
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageLoadError(f"Images in the colour mode {mode!r} cannot be converted to RGB.") from exc
    return _rgb8(im)


# ----------------------------------------------------------------------------------------
# internals

_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


@contextmanager
def _opened(
    data: bytes, *, subject: str, max_pixels: int, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
) -> Iterator[Image.Image]:
    """A Pillow image opened from bytes with the format, pixel and memory checks done; closed after."""
    im = _open_checked(data, subject=subject, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)
    try:
        yield im
    finally:
        im.close()


def check_header(
    data: bytes,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> None:
    """Every check :func:`load_image` makes before decoding, from the header alone (milliseconds).

    Raises :class:`ImageLoadError` for what :func:`load_image` would refuse before decoding.
    """
    with _opened(bytes(data), subject=_subject(data, name), max_pixels=max_pixels, max_decode_bytes=max_decode_bytes):
        pass


# Bytes per pixel Pillow keeps for a decoded image of each mode (multi-band modes use 4).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
# Peak bytes per pixel of each conversion path of :func:`to_rgb_float`, beyond the decoded image:
# high-bit gray: float64 values, the scaled copy, the 3-channel float64 repeat, the float32 result;
# alpha: the RGBA copy, its uint8 array and the float32 result (the float64 compositing runs
# in blocks of _BLOCK_PIXELS pixels, at most _BLOCK_BYTES);
# the rest: the RGB copy, its uint8 array, the float32 result (divided in place); CMYK adds
# its converted image.
_BLOCK_PIXELS = 1 << 18
_BLOCK_BYTES = _BLOCK_PIXELS * (32 + 32 + 24 + 8 + 24 + 24)
_HIGH_BIT_PATH = 8 + 8 + 24 + 12
_ALPHA_PATH = 4 + 4 + 12
_PLAIN_PATH = 4 + 3 + 12
_CMYK_PATH = 4 + _PLAIN_PATH  # the colour-managed or ink-formula RGB image, then the plain path


def _rawmode(im: Image.Image) -> str:
    try:
        tile = getattr(im, "tile", None)  # files read from disk (ImageFile) have one, other images none
        args = tile[0].args if tile else ""
    except (AttributeError, IndexError):
        return ""
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _is_deep_colour(im: Image.Image) -> bool:
    """16 bits per channel of colour or gray + alpha, which Pillow would read at 8 bits."""
    return im.mode in ("RGB", "RGBA", "LA") and ";16" in _rawmode(im)


def _read_deep(data: bytes, im: Image.Image, fmt: str) -> np.ndarray | None:
    from xaicore.data.deep_colour import read_deep_colour

    return read_deep_colour(data, fmt, _rawmode(im))


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF: keep the picture as stored
        return 1
    return value if value in range(1, 9) else 1


# EXIF orientation -> the array operation of Pillow's exif_transpose.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _deep_to_rgb(values: np.ndarray, orientation: int, notes: list[str]) -> np.ndarray:
    """(H, W, C) float64 in [0, 1] (gray + alpha, RGB or RGBA) as upright RGB float32, on white."""
    if orientation != 1:
        notes.append("The picture was turned upright following its EXIF orientation tag.")
        values = _ORIENT[orientation](values)
    if values.shape[2] == 2:
        values = np.concatenate([np.repeat(values[:, :, :1], 3, axis=2), values[:, :, 1:]], axis=2)
    if values.shape[2] == 4:
        alpha = values[:, :, 3:4]
        if np.any(alpha < 1.0):
            notes.append("Transparent areas were composited on white.")
        return np.ascontiguousarray(np.clip(values[:, :, :3] * alpha + (1.0 - alpha), 0.0, 1.0), dtype=np.float32)
    return np.ascontiguousarray(values[:, :, :3], dtype=np.float32)


def decode_cost(im: Image.Image) -> int:
    """Estimated peak bytes of decoding ``im`` (opened, not loaded) and converting it to RGB float.

    Counts the decoded picture twice (an EXIF rotation makes a copy) and the temporaries of
    the conversion path its mode takes in :func:`to_rgb_float`: palette or any image with
    transparency, LA and RGBA go through an RGBA copy composited in float64 row blocks;
    16-bit and 32-bit gray through float64 gray; CMYK, RGB, L and P through 8-bit RGB.
    """
    width, height = im.size
    pixels = int(width) * int(height)
    mode = im.mode
    stored = _STORED_BYTES.get(mode, 4)
    extra = 0
    if _is_deep_colour(im):  # read by xaicore.data.deep_colour, never by Pillow
        channels = {"RGB": 3, "RGBA": 4, "LA": 2}[mode]
        alpha = channels in (2, 4)
        # inflated bytes, int16 filtered and unfiltered bytes, uint8, float64 twice, compositing, result
        per_pixel = 2 * channels * (1 + 2 + 2 + 1) + 16 * max(channels, 3) + (80 if alpha else 0) + 12
        return pixels * per_pixel
    if mode in _HIGH_BIT_MODES:
        path = _HIGH_BIT_PATH
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        path = _ALPHA_PATH
        extra = min(pixels, _BLOCK_PIXELS) * (_BLOCK_BYTES // _BLOCK_PIXELS)
    elif mode == "CMYK":
        path = _CMYK_PATH
    else:
        path = _PLAIN_PATH
    return pixels * (2 * stored + path) + extra


def _open_checked(
    data: bytes, *, subject: str, max_pixels: int, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(
            f"{subject} declares more pixels than can be decoded safely; it looks like a decompression bomb."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(_unidentified_message(data, subject)) from exc
    except Exception as exc:  # Pillow raises many types on damaged headers
        raise ImageLoadError(f"{subject} is damaged: its header could not be read ({_short(exc)}).") from exc
    try:
        width, height = im.size
        if width < 1 or height < 1:
            raise ImageLoadError(f"{subject} has no pixels ({width}x{height}).")
        if width * height > max_pixels:
            raise ImageLoadError(
                f"{subject} is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} pixels; make it smaller and try again."
            )
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise ImageLoadError(
                f"{subject} is {width}x{height} pixels, a strip more than {MAX_ASPECT_RATIO} times longer than "
                "it is wide, which cannot be shown or fitted to a model's input; crop it and try again."
            )
        cost = decode_cost(im)
        if cost > max_decode_bytes:
            per_pixel = max(1, cost // (width * height))
            raise ImageLoadError(
                f"{subject} ({width}x{height}, {_kind_of(im)}) would take about {_gb(cost)} of memory to decode, "
                f"over the {_gb(max_decode_bytes)} limit for one image; images of this kind can have at most "
                f"{max_decode_bytes // per_pixel:,} pixels, so make it smaller and try again."
            )
    except ImageLoadError:
        im.close()
        raise
    return im


def _note_frames(im: Image.Image, fmt: str, notices: list[str], subject: str) -> None:
    title = FORMAT_TITLES.get(fmt, fmt)
    unit = "pages" if fmt == "TIFF" else "pictures" if fmt == "JPEG" else "frames"
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a damaged later frame does not spoil the first one
        frames = 0
    if frames != 1:
        _guarded(lambda: im.seek(0), subject)
    if frames > 1:
        notices.append(f"{title} has {frames} {unit}; the first is used.")
    elif frames == 0:
        notices.append(f"Only the first of the {title}'s {unit} was read; the others could not be counted.")


def _decode_upright(im: Image.Image, *, subject: str, notices: list[str]) -> Image.Image:
    def decode() -> Image.Image:
        im.load()
        try:
            orientation = int(im.getexif().get(0x0112, 1))
        except Exception:  # noqa: BLE001 - unreadable EXIF: keep the picture as stored
            orientation = 1
            notices.append("The EXIF data is damaged, so the orientation tag was ignored.")
        if orientation in range(2, 9):
            notices.append("The picture was turned upright following its EXIF orientation tag.")
            return ImageOps.exif_transpose(im)
        return im

    return _guarded(decode, subject)


def _guarded(fn: Callable[[], T], subject: str) -> T:
    """Run ``fn`` and turn anything but our own error into an ImageLoadError."""
    try:
        return fn()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(
            f"{subject} decodes to more pixels than is safe; it looks like a decompression bomb."
        ) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"{subject} is too large to decode in the memory available.") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError ...
        text = _short(exc)
        if "truncated" in text.lower():
            raise ImageLoadError(f"{subject} is truncated: the image data ends early.") from exc
        raise ImageLoadError(f"{subject} is damaged and could not be decoded ({text}).") from exc


def _rgb8(im: Image.Image) -> np.ndarray:
    values = np.ascontiguousarray(np.asarray(im, dtype=np.uint8), dtype=np.float32)
    values /= np.float32(255.0)  # in place: the same float32 division, without a second copy
    return values


def _scaled_gray(im: Image.Image, notes: list[str]) -> np.ndarray:
    values = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        bad = ~np.isfinite(values)
        if bad.any():
            notes.append(f"{int(bad.sum()):,} pixels held no valid number and are shown as black.")
            values = np.where(bad, 0.0, values)
        if values.min() >= 0.0 and values.max() <= 1.0:
            return values
        return _stretch(values, notes)
    if values.min() >= 0.0:
        top = _integer_top(im, values)
        if top is not None:
            return values / top
    return _stretch(values, notes)


def _integer_top(im: Image.Image, values: np.ndarray) -> float | None:
    """The largest value the image's integer format can hold, when it is knowable."""
    if im.mode.startswith("I;16"):
        return 65535.0
    bits = None
    tags = getattr(im, "tag_v2", None)
    if tags is not None:
        try:
            raw = tags.get(258)
            bits = int(raw[0] if isinstance(raw, tuple) else raw) if raw is not None else None
        except (TypeError, ValueError):
            bits = None
    if bits is not None and 1 <= bits <= 16:
        top = float(2**bits - 1)
        return top if values.max() <= top else None
    return 65535.0 if values.max() <= 65535.0 else None


def _stretch(values: np.ndarray, notes: list[str]) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high > low:
        notes.append(f"Pixel values from {low:.6g} to {high:.6g} were rescaled to the range 0 to 1.")
        return (values - low) / (high - low)
    notes.append(f"Every pixel has the value {low:.6g}, outside 0 to 1; it was clipped.")
    return np.clip(values, 0.0, 1.0)


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    profile = im.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            target = ImageCms.createProfile("sRGB")
            # typed Optional for inPlace=True; without it the converted image is always returned
            return ImageCms.profileToProfile(im, source, target, outputMode="RGB")  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - a broken profile falls back to the ink formula
            notes.append("The image's colour profile could not be used; CMYK was converted with the plain formula.")
    return im.convert("RGB")


def _nonzero(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _HIGH_BIT_MODES:
        values = np.asarray(im)
        return np.ascontiguousarray(np.isfinite(values) & (values != 0))
    if mode == "P" or mode == "PA" or "transparency" in im.info or mode in ("RGBa", "La"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "CMYK":
        im = im.convert("RGB")
        mode = "RGB"
    values = np.asarray(im)
    if values.ndim == 2:
        return np.ascontiguousarray(values != 0)
    if mode in ("RGBA", "LA"):
        return np.ascontiguousarray(np.any(values[:, :, :-1] != 0, axis=2) & (values[:, :, -1] != 0))
    return np.ascontiguousarray(np.any(values != 0, axis=2))


def _unidentified_message(data: bytes, subject: str) -> str:
    lowered = data[:64].lstrip().lower()
    if b"<svg" in data[:4096].lower() and lowered.startswith((b"<svg", b"<?xml", b"<!--", b"<!doctype")):
        return f"{subject} is an SVG drawing, which is not supported; use {SUPPORTED_TEXT}."
    for magic, what in _KNOWN_OTHERS:
        if lowered.startswith(magic.lower()):
            return f"{subject} is {what}, which is not supported; use {SUPPORTED_TEXT}."
    if data[4:8] == b"ftyp":
        return f"{subject} is a HEIC/AVIF or video file, which is not supported; use {SUPPORTED_TEXT}."
    return f"{subject} is not an image in a supported format ({SUPPORTED_TEXT}) or is damaged."


def _subject(source: object, name: str | None) -> str:
    if name:
        return f"The file {name!r}"
    if isinstance(source, (str, Path)):
        return f"The file {Path(source).name!r}"
    return "The file"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _kind_of(im: Image.Image) -> str:
    if im.mode == "P":
        return "palette colours with transparency" if "transparency" in im.info else "palette colours"
    if "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return f"{im.mode} with transparency"
    if im.mode in _HIGH_BIT_MODES:
        return "16- or 32-bit values" if im.mode != "F" else "floating-point values"
    return f"{im.mode} colours"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n:,} bytes"
