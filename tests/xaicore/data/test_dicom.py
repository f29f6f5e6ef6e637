"""Reading DICOM: the files shipped inside pydicom's wheel (read from the package, never
downloaded) and files written here with pydicom, each checked against values computed
independently from the stored pixels and the DICOM formulas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.dicom_files import IDENTIFYING, chest_like, write_dicom
from xaicore.data.dicom import Window, is_dicom, load_dicom_image, read_dicom
from xaicore.errors import ImageLoadError, ParameterError

pydicom = pytest.importorskip("pydicom")


def wheel_file(name: str) -> Path:
    """A test file that ships inside pydicom's wheel; skip (never download) when it is not local."""
    from pydicom.data import get_testdata_files

    found = [Path(p) for p in get_testdata_files(name) if Path(p).name == name]
    if not found:
        pytest.skip(f"{name} is not in this pydicom installation")
    return found[0]


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), written out, scaled to [0, 1]."""
    c, w = center - 0.5, width - 1.0
    return np.clip((x - c) / w + 0.5, 0.0, 1.0)


# ---------------------------------------------------------------------------- wheel files


def test_ct_small_values_are_hounsfield_units_from_the_rescale():
    path = wheel_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = read_dicom(path)
    np.testing.assert_allclose(image.values, expected, atol=1e-3)
    assert image.tags.modality == "CT" and image.tags.units == "HU"
    assert (image.tags.rows, image.tags.columns) == (128, 128)
    assert image.tags.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert image.tags.signed and image.tags.bits_stored == 16
    # no window in this file: the full range, with a notice
    assert image.default is not None and image.default.name == "full range"
    shown = image.display()
    assert float(shown.min()) == 0.0 and float(shown.max()) == pytest.approx(1.0)
    assert any("no window" in n for n in image.notices)


def test_mr_small_uses_the_window_of_the_file():
    path = wheel_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_dicom(path)
    assert image.default == Window(600.0, 1600.0, name="file window 1")
    np.testing.assert_allclose(image.display(), linear_window(ds.pixel_array.astype(np.float64), 600, 1600), atol=1e-6)
    assert image.tags.modality == "MR"


def test_a_lung_window_chosen_by_the_user_changes_what_is_shown():
    image = read_dicom(wheel_file("CT_small.dcm"))
    lung, bone = Window(-600, 1500), Window(300, 1500)
    a, b = image.display(lung), image.display(bone)
    np.testing.assert_allclose(a, linear_window(image.values.astype(np.float64), -600, 1500), atol=1e-6)
    assert float(np.abs(a - b).mean()) > 0.2


def test_multi_frame_wheel_file_reads_the_chosen_frame():
    path = wheel_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    scale = float(ds.RescaleSlope) if "RescaleSlope" in ds else 1.0  # the dose grid scaling is not a rescale
    first, last = read_dicom(path, frame=0), read_dicom(path, frame=14)
    assert first.tags.frames == 15 and last.frame == 14
    np.testing.assert_allclose(
        last.values, ds.pixel_array[14].astype(np.float64) * (scale if "RescaleSlope" in ds else 1)
    )
    assert not np.array_equal(first.values, last.values)
    with pytest.raises(ImageLoadError, match="15 frames; frame 15 does not exist"):
        read_dicom(path, frame=15)


def test_rgb_wheel_file_is_read_as_colour():
    path = wheel_file("examples_rgb_color.dcm")
    ds = pydicom.dcmread(path)
    image = read_dicom(path)
    assert image.is_colour and image.presets == ()
    np.testing.assert_allclose(image.display(), ds.pixel_array / 255.0, atol=1e-6)


def test_truncated_wheel_file_is_a_clear_error():
    with pytest.raises(ImageLoadError, match="truncated"):
        read_dicom(wheel_file("MR_truncated.dcm"), name="scan.dcm")


def test_a_dicom_file_without_pixels_is_refused():
    with pytest.raises(ImageLoadError, match="without pixel data"):
        read_dicom(wheel_file("rtplan.dcm"))


# ---------------------------------------------------------------------------- written files


@pytest.mark.parametrize(
    ("dtype", "bits", "signed"),
    [(np.uint8, 8, False), (np.uint16, 12, False), (np.uint16, 16, False), (np.int16, 12, True), (np.int16, 16, True)],
)
def test_bit_depths_and_signedness_without_a_window(dtype, bits, signed):
    top = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    low = -(2 ** (bits - 1)) if signed else 0
    pixels = np.linspace(low, top, 32 * 32).reshape(32, 32).astype(dtype)
    image = read_dicom(write_dicom(pixels, bits_stored=bits, signed=signed))
    np.testing.assert_array_equal(image.values, pixels.astype(np.float32))
    assert image.tags.bits_stored == bits and image.tags.signed == signed
    assert image.value_range == (float(low), float(top))
    expected = (pixels.astype(np.float64) - low) / (top - low)  # the full range, exactly
    np.testing.assert_allclose(image.display(), expected, atol=1e-6)


def test_signed_pixels_through_rescale_slope_and_intercept():
    pixels = np.array([[-1000, 0], [500, 2000]], dtype=np.int16).repeat(8, 0).repeat(8, 1)
    image = read_dicom(write_dicom(pixels, signed=True, rescale=(0.5, -1024.0), modality="CT", window=(-500, 400)))
    np.testing.assert_allclose(image.values, pixels * 0.5 - 1024.0)
    np.testing.assert_allclose(image.display(), linear_window(pixels * 0.5 - 1024.0, -500, 400), atol=1e-6)
    assert image.tags.units == "HU"


def test_monochrome1_is_inverted():
    pixels = chest_like(32)
    plain = read_dicom(write_dicom(pixels, bits_stored=12, window=(2000, 1500)))
    inverted = read_dicom(write_dicom(pixels, bits_stored=12, window=(2000, 1500), photometric="MONOCHROME1"))
    np.testing.assert_array_equal(plain.values, inverted.values)
    np.testing.assert_allclose(inverted.display(), 1.0 - plain.display(), atol=1e-6)
    chosen = Window(1000, 800)
    np.testing.assert_allclose(inverted.display(chosen), 1.0 - plain.display(chosen), atol=1e-6)


def test_several_windows_with_their_names_and_the_sigmoid_function():
    pixels = chest_like(32)
    data = write_dicom(
        pixels,
        bits_stored=12,
        window=[(2000, 1000), (1200, 3000)],
        window_names=["soft", "wide"],
        voi_function="SIGMOID",
    )
    image = read_dicom(data)
    assert [(w.name, w.center, w.width, w.function) for w in image.presets] == [
        ("soft", 2000.0, 1000.0, "SIGMOID"),
        ("wide", 1200.0, 3000.0, "SIGMOID"),
    ]
    expected = 1.0 / (1.0 + np.exp(-4.0 * (pixels.astype(np.float64) - 2000.0) / 1000.0))  # PS3.3 C.11.2.1.3.1
    np.testing.assert_allclose(image.display(), expected, atol=1e-5)


def test_a_voi_lut_is_applied_before_the_window():
    pixels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    table = (255 - np.arange(256)).astype(np.uint16)  # an inverting LUT, 8 bits per entry
    image = read_dicom(write_dicom(pixels, bits_stored=8, voi_lut=(0, 8, table), window=(100, 50)))
    assert image.default is not None and image.default.is_lut
    np.testing.assert_allclose(image.display(), (255 - pixels) / 255.0, atol=1e-6)
    window = image.presets[1]
    np.testing.assert_allclose(image.display(window), linear_window(pixels.astype(np.float64), 100, 50), atol=1e-6)


def test_written_rgb_and_multiframe_rgb():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 8, 12, 3), dtype=np.uint8)
    image = read_dicom(write_dicom(frames, photometric="RGB"), frame=2)
    np.testing.assert_allclose(image.values, frames[2] / 255.0, atol=1e-6)
    assert image.tags.frames == 3
    loaded = load_dicom_image(write_dicom(frames[0], photometric="RGB"))
    assert loaded.format == "DICOM" and loaded.array.shape == (8, 12, 3)


def test_multi_frame_gray_with_a_frame_chosen():
    stack = np.stack([chest_like(16, seed=s) for s in range(4)])
    image = read_dicom(write_dicom(stack, bits_stored=12), frame=3)
    np.testing.assert_array_equal(image.values, stack[3].astype(np.float32))
    assert "4 frames; frame 4 is shown" in " ".join(image.notices)
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(ImageLoadError, match="does not exist"):
            read_dicom(write_dicom(stack, bits_stored=12), frame=bad)


def test_reviewer_tags_are_kept_and_identifying_tags_never_are():
    data = write_dicom(chest_like(16), bits_stored=12, window=(2000, 1000))
    raw = data.decode("latin-1")
    assert all(text in raw for text in IDENTIFYING)  # the file does hold them
    image = read_dicom(data, name="x.dcm")
    rows = dict(image.tags.rows_for_display())
    assert rows["Modality"] == "DX" and rows["Body part"] == "CHEST" and rows["Study date"] == "2024-01-15"
    assert rows["Rows x columns"] == "16 x 16" and rows["Pixel spacing"].startswith("0.2 x 0.25")
    shown = " ".join(
        [repr(image), json.dumps(image.record()), repr(image.to_loaded_image()), str(rows), *image.notices]
    )
    for text in IDENTIFYING:
        assert text not in shown


def test_window_validation():
    with pytest.raises(ParameterError, match="positive width"):
        Window(0, 0)
    with pytest.raises(ParameterError, match="VOI LUT function"):
        Window(0, 10, function="CUBIC")


# ---------------------------------------------------------------------------- bad files and caps


def test_damaged_and_foreign_files_give_typed_errors():
    good = write_dicom(chest_like(32), bits_stored=12)
    assert is_dicom(good) and not is_dicom(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(ImageLoadError, match="not a DICOM file"):
        read_dicom(b"\x89PNG\r\n\x1a\n" + bytes(200), name="a.png")
    with pytest.raises(ImageLoadError, match="empty"):
        read_dicom(b"")
    with pytest.raises(ImageLoadError, match="truncated"):
        read_dicom(good[: len(good) - 100])
    with pytest.raises(ImageLoadError, match="not a valid DICOM|damaged|truncated|without pixel data"):
        read_dicom(good[:132] + bytes(range(256)) * 4)
    for cut in (140, 200, 400):
        with pytest.raises(ImageLoadError):
            read_dicom(good[:cut])


def test_caps_are_checked_before_decoding():
    data = write_dicom(chest_like(64), bits_stored=12)
    with pytest.raises(ImageLoadError, match="over the limit of 1,000 pixels"):
        read_dicom(data, max_pixels=1000)
    with pytest.raises(ImageLoadError, match="larger than"):
        read_dicom(data, max_bytes=1000)
    with pytest.raises(ImageLoadError, match="to decode"):
        read_dicom(data, max_decode_bytes=10_000)
    strip = write_dicom(np.zeros((1, 500), dtype=np.uint16))
    with pytest.raises(ImageLoadError, match="strip"):
        read_dicom(strip)


def test_a_compressed_wheel_file_decodes_to_the_same_values_as_its_uncompressed_twin():
    pytest.importorskip("libjpeg", reason="the optional DICOM decoders (the dicom extra) are not installed")
    lossless = read_dicom(wheel_file("MR_small_jpeg_ls_lossless.dcm"))
    plain = read_dicom(wheel_file("MR_small.dcm"))
    np.testing.assert_array_equal(lossless.values, plain.values)
    assert lossless.presets == plain.presets


def test_the_child_process_check_passes_good_files_and_refuses_bad_ones_with_the_same_sentence():
    from xaicore.data.decode_worker import check_dicom_isolated

    good = write_dicom(chest_like(32), bits_stored=12)
    check_dicom_isolated(good, name="good.dcm")
    with pytest.raises(ImageLoadError, match="truncated") as caught:
        check_dicom_isolated(good[:-100], name="cut.dcm")
    with pytest.raises(ImageLoadError) as direct:
        read_dicom(good[:-100], name="cut.dcm")
    assert str(caught.value) == str(direct.value)
    with pytest.raises(ImageLoadError, match="longer than 0.01 seconds"):
        check_dicom_isolated(good, name="slow.dcm", timeout_s=0.01)


def test_the_command_line_reads_a_dicom_file_with_its_own_window(tmp_path):
    from xaicore.cli.common import read_image_arg

    path = tmp_path / "chest.dcm"
    path.write_bytes(write_dicom(chest_like(32), bits_stored=12, window=(2000, 1000)))
    arg = read_image_arg(str(path))
    expected = read_dicom(path).display()
    assert arg.array.shape == (32, 32, 3)
    np.testing.assert_allclose(arg.array[:, :, 1], expected, atol=1e-6)
