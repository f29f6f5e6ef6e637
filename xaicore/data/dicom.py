"""Reading DICOM images safely: values as the file defines them, its windows, and safe tags only.

:func:`read_dicom` reads one frame of a DICOM file with pydicom under the same caps as every
other upload (a byte cap before reading, the pixel count, the aspect ratio and the memory the
decoding takes checked from the header before any pixel is decoded), and returns a frozen
:class:`DicomImage`:

* ``values``: the stored pixels through the Modality LUT or Rescale Slope/Intercept
  (``pydicom.pixels.apply_modality_lut``), as float32 in the file's own units (Hounsfield units
  for CT); for colour files the RGB pixels scaled to [0, 1];
* ``presets``: the windows the file gives (Window Center/Width with their explanations, and a
  VOI LUT as its own preset), and a full-range window when it gives none;
* ``tags``: the few tags a reviewer needs (:class:`DicomTags`: modality, body part, study
  date, rows and columns, pixel spacing, photometric interpretation, bits, frames). Nothing
  else of the file is kept: names, identifiers, birth dates and every other tag stay in the
  file and never reach a result, a log line or an export.

:meth:`DicomImage.display` turns ``values`` into what a person sees, in [0, 1]: the VOI LUT or
the window of a preset (``pydicom.pixels.apply_voi`` / ``apply_windowing``, so LINEAR,
LINEAR_EXACT and SIGMOID follow the file's VOI LUT Function), MONOCHROME1 inverted so that
higher values are darker, as the file says. Everything that goes wrong is an
:class:`~xaicore.errors.ImageLoadError` in one plain sentence.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xaicore.data.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT_RATIO,
    LoadedImage,
    Source,
    _subject,
    read_capped,
)
from xaicore.errors import ImageLoadError, ParameterError

FORMAT = "DICOM"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")
_DISPLAY_BITS = 16  # windowing writes display values over 0 .. 2**16 - 1, then scaled to [0, 1]
_COMPRESSED_HINT = (
    "install the optional decoders (pip install 'xaicore[dicom]') or save the file uncompressed "
    "(Explicit VR Little Endian)"
)
# Peak bytes per pixel and sample while one frame is decoded and windowed: the stored frame
# (up to 4 bytes), float64 values from the modality LUT, the float64 window and its boolean
# masks, the float32 values kept, and the (H, W, 3) float32 display.
_DECODE_BYTES_PER_SAMPLE = 4 + 8 + 8 + 3 + 4
_DISPLAY_BYTES_PER_PIXEL = 12 + 4


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM file: 128 bytes of preamble, then ``DICM``."""
    return len(data) >= 132 and bytes(data[128:132]) == b"DICM"


@dataclass(frozen=True)
class Window:
    """A display window: ``center`` and ``width`` in the units of ``values``, or a VOI LUT.

    Attributes
    ----------
    center, width:
        Window Center and Width (for a LUT: the range of the values it maps, for reference).
    name:
        What to call it (the file's Window Center & Width Explanation, ``"VOI LUT"``, ``"full range"``).
    function:
        The VOI LUT Function: ``"LINEAR"`` (the default), ``"LINEAR_EXACT"`` or ``"SIGMOID"``.
    lut_index:
        For the file's VOI LUT: which item of the VOI LUT Sequence; ``None`` for a window.
    """

    center: float
    width: float
    name: str = ""
    function: str = "LINEAR"
    lut_index: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width)) or self.width <= 0:
            raise ParameterError(
                f"A window needs a finite centre and a positive width, not centre {self.center!r}, "
                f"width {self.width!r}."
            )
        if self.function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise ParameterError(f"Unknown VOI LUT function {self.function!r}; use LINEAR, LINEAR_EXACT or SIGMOID.")

    @property
    def is_lut(self) -> bool:
        return self.lut_index is not None

    def label(self) -> str:
        """``"lung: centre -600, width 1500"``, or ``"VOI LUT from the file"``."""
        if self.is_lut:
            return self.name or "VOI LUT from the file"
        text = f"centre {self.center:g}, width {self.width:g}"
        return f"{self.name}: {text}" if self.name else text

    def record(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "width": self.width,
            "name": self.name,
            "function": self.function,
            "lut_index": self.lut_index,
        }


@dataclass(frozen=True)
class DicomTags:
    """The tags a reviewer needs, and no others. ``None`` where the file does not say."""

    modality: str | None
    body_part: str | None
    study_date: str | None
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    photometric: str
    bits_stored: int
    signed: bool
    frames: int
    units: str | None

    def rows_for_display(self) -> list[tuple[str, str]]:
        """(label, value) pairs in reading order, for a table."""
        spacing = (
            f"{self.pixel_spacing[0]:g} x {self.pixel_spacing[1]:g} mm (row x column)" if self.pixel_spacing else "-"
        )
        return [
            ("Modality", self.modality or "-"),
            ("Body part", self.body_part or "-"),
            ("Study date", _date_text(self.study_date)),
            ("Rows x columns", f"{self.rows} x {self.columns}"),
            ("Pixel spacing", spacing),
            ("Photometric interpretation", self.photometric),
            ("Bits stored", f"{self.bits_stored} ({'signed' if self.signed else 'unsigned'})"),
            ("Frames", str(self.frames)),
        ]

    def record(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "body_part": self.body_part,
            "study_date": self.study_date,
            "rows": self.rows,
            "columns": self.columns,
            "pixel_spacing": list(self.pixel_spacing) if self.pixel_spacing else None,
            "photometric": self.photometric,
            "bits_stored": self.bits_stored,
            "signed": self.signed,
            "frames": self.frames,
            "units": self.units,
        }


@dataclass(frozen=True)
class DicomImage:
    """One frame of a DICOM file, ready to be windowed and shown.

    Attributes
    ----------
    values:
        (H, W) float32 after the Modality LUT (or Rescale Slope/Intercept), in the file's units;
        (H, W, 3) float32 RGB in [0, 1] for colour files.
    presets:
        The file's windows in its order (a VOI LUT first when it has one), or one full-range
        window when it has none; empty for colour files.
    default:
        The window the file says to use (its first preset), ``None`` for colour files.
    tags:
        The safe tags (:class:`DicomTags`).
    frame:
        Which frame was read (0-based) of ``tags.frames``.
    notices:
        Plain sentences about what was done (frame chosen, no window in the file ...).
    """

    values: np.ndarray
    presets: tuple[Window, ...]
    tags: DicomTags
    frame: int = 0
    notices: tuple[str, ...] = ()
    name: str | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    _luts: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def default(self) -> Window | None:
        return self.presets[0] if self.presets else None

    @property
    def is_colour(self) -> bool:
        return self.values.ndim == 3

    def display(self, window: Window | None = None) -> np.ndarray:
        """What a person sees with ``window`` (default: the file's own), (H, W) float32 in [0, 1].

        Colour files give (H, W, 3) and ignore the window. MONOCHROME1 is inverted after the
        window, so that higher values are darker.
        """
        if self.is_colour:
            return self.values
        chosen = window if window is not None else self.default
        if chosen is None:  # no presets only for colour files, handled above
            raise ParameterError("This image has no window to show it with.")
        if chosen.is_lut:
            shown = self._apply_lut(int(chosen.lut_index or 0))
        else:
            shown = _windowed(self.values, chosen)
        if self.tags.photometric == "MONOCHROME1":
            shown = 1.0 - shown
        return np.ascontiguousarray(shown, dtype=np.float32)

    def rgb(self, window: Window | None = None) -> np.ndarray:
        """:meth:`display` as (H, W, 3) float32 in [0, 1]: gray copied to three channels."""
        shown = self.display(window)
        if shown.ndim == 2:
            shown = np.repeat(shown[:, :, None], 3, axis=2)
        return np.ascontiguousarray(shown, dtype=np.float32)

    def to_loaded_image(self, window: Window | None = None) -> LoadedImage:
        """The frame as a :class:`~xaicore.data.images.LoadedImage` with ``window`` (default: the file's)."""
        array = self.rgb(window)
        chosen = window if window is not None else self.default
        notices = list(self.notices)
        if chosen is not None:
            notices.append(f"Windowed as {chosen.label()}.")
        return LoadedImage(
            array=array,
            format=FORMAT,
            original_size=(array.shape[1], array.shape[0]),
            notices=tuple(notices),
            name=self.name,
        )

    def slider_range(self) -> tuple[float, float]:
        """Bounds for a centre slider: the values' range, widened to hold every preset's centre."""
        low, high = self.value_range
        for preset in self.presets:
            if not preset.is_lut:
                low, high = min(low, preset.center), max(high, preset.center)
        return (low, high) if high > low else (low - 0.5, low + 0.5)

    def record(self) -> dict[str, Any]:
        """Tags, frame, windows and notices, JSON-ready: nothing identifying is in it."""
        return {
            "format": FORMAT,
            "tags": self.tags.record(),
            "frame": self.frame,
            "presets": [w.record() for w in self.presets],
            "value_range": list(self.value_range),
            "notices": list(self.notices),
        }

    def _apply_lut(self, index: int) -> np.ndarray:
        from pydicom.pixels import apply_voi

        lut_ds, bits = self._luts[index]
        stored = np.rint(self.values).astype(np.int64)  # a VOI LUT maps whole numbers
        mapped = apply_voi(stored, lut_ds, index=0).astype(np.float64)
        return np.clip(mapped / float(2**bits - 1), 0.0, 1.0)


def read_dicom(
    source: Source,
    *,
    name: str | None = None,
    frame: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> DicomImage:
    """Read one frame of a DICOM file, safely.

    Parameters
    ----------
    source:
        The file's bytes, a path, or a binary file object.
    name:
        File name for messages only.
    frame:
        Which frame of a multi-frame file (0-based).
    max_pixels, max_bytes, max_decode_bytes:
        The caps of :func:`xaicore.data.images.load_image`: pixels of one frame, the file's
        size, and the memory decoding one frame may take, checked before decoding.

    Raises
    ------
    ImageLoadError
        Not DICOM, damaged or truncated, no pixel data, a frame that does not exist, over a
        cap, a compressed transfer syntax without its decoder, or a photometric interpretation
        that cannot be shown.
    """
    subject = _subject(source, name)
    data = read_capped(source, max_bytes=max_bytes, subject=subject)
    if not is_dicom(data):
        raise ImageLoadError(f"{subject} is not a DICOM file: it lacks the 'DICM' marker after the 128-byte preamble.")
    ds = _parse(data, subject)
    header = _header(ds, subject)
    _check_caps(header, subject, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)
    frames = header["frames"]
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= int(frame) < frames:
        raise ImageLoadError(f"{subject} has {frames} frame{'s' * (frames != 1)}; frame {frame!r} does not exist.")
    notices: list[str] = []
    if frames > 1:
        notices.append(f"This DICOM file has {frames} frames; frame {int(frame) + 1} is shown.")
    raw = _decode(ds, int(frame), frames, subject)
    tags = _tags(ds, header)
    photometric = header["photometric"]
    if photometric in MONOCHROME:
        values, presets, luts = _monochrome(ds, raw, subject, notices)
        finite = values[np.isfinite(values)]
        value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    else:
        values = _colour(ds, raw, header, subject)
        presets, luts, value_range = (), (), (0.0, 1.0)
        notices.append("Colour DICOM images are shown as stored; windows apply to grayscale images only.")
    return DicomImage(
        values=values,
        presets=presets,
        tags=tags,
        frame=int(frame),
        notices=tuple(notices),
        name=name,
        value_range=value_range,
        _luts=luts,
    )


def load_dicom_image(source: Source, *, name: str | None = None, frame: int = 0, **caps: int) -> LoadedImage:
    """:func:`read_dicom` then :meth:`DicomImage.to_loaded_image` with the file's own window."""
    return read_dicom(source, name=name, frame=frame, **caps).to_loaded_image()


# ----------------------------------------------------------------------------------------
# internals


def _parse(data: bytes, subject: str) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():  # odd elements of a damaged file: the outcome is what counts
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
            ds.get("PixelData")  # reading the element finds data that ends early
    except InvalidDicomError as exc:
        raise ImageLoadError(f"{subject} is not a valid DICOM file ({_short(exc)}).") from exc
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        raise ImageLoadError(_damaged(subject, exc)) from exc
    return ds


def _damaged(subject: str, exc: BaseException) -> str:
    text = _short(exc)
    lowered = text.lower()
    if any(word in lowered for word in ("truncat", "end of file", "eof", "expected", "buffer", "not enough")):
        return f"{subject} is truncated: the DICOM data ends early ({text}). Copy or export the file again."
    return f"{subject} is a damaged DICOM file that could not be read ({text})."


def _int_tag(ds: Any, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, default)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


def _header(ds: Any, subject: str) -> dict[str, Any]:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageLoadError(f"{subject} holds no image: it is a DICOM file without pixel data (a report or plan?).")
    rows, columns = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    if not rows or not columns or rows < 1 or columns < 1:
        raise ImageLoadError(f"{subject} does not say how many rows and columns its image has.")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in MONOCHROME + COLOUR:
        shown = photometric or "none"
        raise ImageLoadError(
            f"{subject} has the photometric interpretation {shown!r}, which cannot be shown; "
            "MONOCHROME1, MONOCHROME2, RGB, YBR and PALETTE COLOR images can."
        )
    return {
        "rows": rows,
        "columns": columns,
        "frames": max(1, _int_tag(ds, "NumberOfFrames", 1) or 1),
        "samples": max(1, _int_tag(ds, "SamplesPerPixel", 1) or 1),
        "bits_allocated": _int_tag(ds, "BitsAllocated", 16) or 16,
        "bits_stored": _int_tag(ds, "BitsStored", None) or _int_tag(ds, "BitsAllocated", 16) or 16,
        "signed": _int_tag(ds, "PixelRepresentation", 0) == 1,
        "photometric": photometric,
    }


def _check_caps(header: dict[str, Any], subject: str, *, max_pixels: int, max_decode_bytes: int) -> None:
    rows, columns = header["rows"], header["columns"]
    pixels = rows * columns
    if pixels > max_pixels:
        raise ImageLoadError(
            f"{subject} is {columns}x{rows} = {pixels:,} pixels per frame, over the limit of {max_pixels:,} "
            "pixels; make it smaller and try again."
        )
    if max(rows, columns) > MAX_ASPECT_RATIO * min(rows, columns):
        raise ImageLoadError(
            f"{subject} is {columns}x{rows} pixels, a strip more than {MAX_ASPECT_RATIO} times longer than it is "
            "wide, which cannot be shown or fitted to a model's input."
        )
    cost = pixels * (header["samples"] * _DECODE_BYTES_PER_SAMPLE + _DISPLAY_BYTES_PER_PIXEL)
    if cost > max_decode_bytes:
        raise ImageLoadError(
            f"{subject} ({columns}x{rows}, {header['samples']} sample(s) per pixel) would take about "
            f"{cost / 1e6:,.0f} MB to decode, over the {max_decode_bytes / 1e6:,.0f} MB limit for one image."
        )


def _decode(ds: Any, frame: int, frames: int, subject: str) -> np.ndarray:
    from pydicom.pixels import pixel_array

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = pixel_array(ds, index=frame if frames > 1 else None)
    except (NotImplementedError, RuntimeError) as exc:
        text = _short(exc)
        if "plugin" in text.lower() or "decod" in text.lower() or "no pixel data handler" in text.lower():
            what = getattr(syntax, "name", str(syntax))
            raise ImageLoadError(
                f"{subject} is compressed as {what}, which cannot be decoded here; {_COMPRESSED_HINT}."
            ) from exc
        raise ImageLoadError(_damaged(subject, exc)) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"{subject} is too large to decode in the memory available.") from exc
    except Exception as exc:  # short pixel data, bad lengths, codec errors
        raise ImageLoadError(_damaged(subject, exc)) from exc
    return np.asarray(arr)


def _tags(ds: Any, header: dict[str, Any]) -> DicomTags:
    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            if value is not None and len(value) == 2:
                spacing = (float(value[0]), float(value[1]))
                break
        except (TypeError, ValueError):
            continue
    units = ds.get("RescaleType") or ("HU" if str(ds.get("Modality", "")).upper() == "CT" else None)
    return DicomTags(
        modality=_text(ds.get("Modality")),
        body_part=_text(ds.get("BodyPartExamined")),
        study_date=_text(ds.get("StudyDate")),
        rows=header["rows"],
        columns=header["columns"],
        pixel_spacing=spacing,
        photometric=header["photometric"],
        bits_stored=header["bits_stored"],
        signed=header["signed"],
        frames=header["frames"],
        units=_text(units),
    )


def _monochrome(
    ds: Any, raw: np.ndarray, subject: str, notices: list[str]
) -> tuple[np.ndarray, tuple[Window, ...], tuple[Any, ...]]:
    from pydicom.pixels import apply_modality_lut

    if raw.ndim != 2:
        raise ImageLoadError(f"{subject} says it is grayscale but its frame has the shape {raw.shape}.")
    try:
        modality = apply_modality_lut(raw, ds)
    except Exception as exc:  # a damaged Modality LUT or rescale tags
        raise ImageLoadError(
            f"{subject} has a Modality LUT or rescale that cannot be applied ({_short(exc)})."
        ) from exc
    values = np.asarray(modality, dtype=np.float32)
    presets: list[Window] = []
    luts: list[Any] = []
    for index, item in enumerate(ds.get("VOILUTSequence") or ()):
        lut = _lut_dataset(ds, item)
        if lut is not None:
            luts.append(lut)
            explanation = _text(item.get("LUTExplanation"))
            presets.append(Window(*_lut_extent(item), name=explanation or "VOI LUT from the file", lut_index=index))
    presets.extend(_windows(ds))
    if not presets:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        width = high - low if high > low else 1.0
        presets.append(Window(center=(low + high) / 2.0, width=width, name="full range", function="LINEAR_EXACT"))
        notices.append(f"The file gives no window; the full range of values ({low:g} to {high:g}) is shown.")
    return values, tuple(presets), tuple(luts)


def _lut_dataset(ds: Any, item: Any) -> tuple[Any, int] | None:
    """A one-item dataset holding this VOI LUT for ``apply_voi``, and its bits per entry."""
    from pydicom.dataset import Dataset, FileMetaDataset

    descriptor = item.get("LUTDescriptor")
    if descriptor is None or item.get("LUTData") is None or len(descriptor) != 3:
        return None
    bits = int(descriptor[2])
    if bits != 8 and not 10 <= bits <= 16:
        return None
    lut_ds = Dataset()
    lut_ds.file_meta = FileMetaDataset()
    lut_ds.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    lut_ds.VOILUTSequence = [item]
    return lut_ds, bits


def _lut_extent(item: Any) -> tuple[float, float]:
    entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
    return first + entries / 2.0, float(max(entries, 1))


def _windows(ds: Any) -> list[Window]:
    centers, widths = _numbers(ds.get("WindowCenter")), _numbers(ds.get("WindowWidth"))
    names = [_text(v) or "" for v in _many(ds.get("WindowCenterWidthExplanation"))]
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    found = []
    for index, (center, width) in enumerate(zip(centers, widths)):
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0 or (function == "LINEAR" and width < 1):
            continue
        name = names[index] if index < len(names) and names[index] else f"file window {index + 1}"
        found.append(Window(center=center, width=width, name=name, function=function))
    return found


def _windowed(values: np.ndarray, window: Window) -> np.ndarray:
    """``values`` through ``window`` by pydicom's ``apply_windowing``, scaled to [0, 1]."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    view = Dataset()  # only what the windowing reads: the display range is 0 .. 2**16 - 1
    view.PhotometricInterpretation = "MONOCHROME2"
    view.BitsStored = _DISPLAY_BITS
    view.PixelRepresentation = 0
    view.WindowCenter = float(window.center)
    view.WindowWidth = float(max(window.width, 1.0) if window.function == "LINEAR" else window.width)
    view.VOILUTFunction = window.function
    shown = apply_windowing(np.asarray(values, dtype=np.float64), view)
    return np.clip(shown / float(2**_DISPLAY_BITS - 1), 0.0, 1.0)


def _colour(ds: Any, raw: np.ndarray, header: dict[str, Any], subject: str) -> np.ndarray:
    arr = raw
    if header["photometric"] == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(raw, ds)
        except Exception as exc:  # a damaged palette
            raise ImageLoadError(f"{subject} has a colour palette that cannot be applied ({_short(exc)}).") from exc
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "iu" else 1.0
    else:
        bits = header["bits_stored"]
        top = float(2**bits - 1) if arr.dtype.kind in "iu" else 1.0
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageLoadError(f"{subject} says it is a colour image but its frame has the shape {arr.shape}.")
    return np.ascontiguousarray(np.clip(arr.astype(np.float32) / np.float32(top), 0.0, 1.0), dtype=np.float32)


def _many(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _numbers(value: Any) -> list[float]:
    out = []
    for item in _many(value):
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _date_text(value: str | None) -> str:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
