"""DICOM files written with pydicom for the tests: any photometric interpretation, bit depth,
signedness, window, VOI LUT and frame count, with identifying tags planted to prove they never leak."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import cast

import numpy as np

PATIENT_NAME = "Doe^Jane^Quincy"
PATIENT_ID = "PID-7731-XQ"
BIRTH_DATE = "19610203"
INSTITUTION = "St Example Hospital"
IDENTIFYING = (PATIENT_NAME, "Doe", PATIENT_ID, BIRTH_DATE, INSTITUTION, "Dr^Who")


def write_dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    window: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    window_names: Sequence[str] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: tuple[int, int, np.ndarray] | None = None,
    modality: str = "DX",
    body_part: str | None = "CHEST",
    study_date: str = "20240115",
    pixel_spacing: tuple[float, float] | None = (0.2, 0.25),
) -> bytes:
    """A DICOM file (Explicit VR Little Endian) holding ``pixels``.

    ``pixels``: (H, W) or (frames, H, W) for gray, (H, W, 3) or (frames, H, W, 3) for RGB, of an
    integer dtype matching ``signed``; ``bits_stored`` defaults to the dtype's bits.
    ``voi_lut`` = (first value mapped, bits per entry, table).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    arr = np.asarray(pixels)
    colour = photometric == "RGB"
    frames = arr.shape[0] if arr.ndim == (4 if colour else 3) else 1
    rows, columns = arr.shape[-3:-1] if colour else arr.shape[-2:]
    allocated = arr.dtype.itemsize * 8
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = "Dr^Who"
    ds.Modality = modality
    if body_part:
        ds.BodyPartExamined = body_part
    ds.StudyDate = study_date
    if pixel_spacing:
        ds.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    ds.Rows, ds.Columns = int(rows), int(columns)
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
    if window is not None:
        pairs: list[tuple[float, float]] = (
            [cast(tuple[float, float], window)] if isinstance(window[0], (int, float)) else list(window)  # type: ignore[arg-type]
        )
        ds.WindowCenter = [f"{c:g}" for c, _ in pairs] if len(pairs) > 1 else f"{pairs[0][0]:g}"
        ds.WindowWidth = [f"{w:g}" for _, w in pairs] if len(pairs) > 1 else f"{pairs[0][1]:g}"
        if window_names:
            ds.WindowCenterWidthExplanation = list(window_names) if len(window_names) > 1 else window_names[0]
    if voi_function:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        first, bits, table = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(table), first, bits]
        item.LUTExplanation = "test LUT"
        item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data, as 16-bit words
        ds.VOILUTSequence = [item]
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def chest_like(size: int = 64, *, dtype: type = np.uint16, top: int = 4095, seed: int = 0) -> np.ndarray:
    """A smooth gray picture with a bright blob, as integers up to ``top``: something to window."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.3 + 0.4 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1)
    base += 0.3 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.3) ** 2) / 0.005)
    base += rng.normal(0.0, 0.01, base.shape)
    return np.clip(base * top, 0, top).astype(dtype)
