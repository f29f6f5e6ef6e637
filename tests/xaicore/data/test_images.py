"""Reading images: real files in real formats written with Pillow, bad files, property tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xaicore.data.images import image_hash, load_image, load_mask, resize_mask
from xaicore.errors import ImageLoadError

# ---------------------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def blocky_rgb(h_blocks: int, w_blocks: int, *, block: int = 16, seed: int = 0) -> np.ndarray:
    """Large flat blocks of random colours: survives JPEG with small error."""
    small = random_rgb(h_blocks, w_blocks, seed)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size that compresses to a few kilobytes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def check_valid(loaded, shape: tuple[int, int]) -> None:
    a = loaded.array
    assert a.dtype == np.float32
    assert a.shape == (*shape, 3)
    assert np.all(np.isfinite(a))
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert loaded.original_size == (shape[1], shape[0])


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_lossless_formats_round_trip_exactly(fmt, options):
    pixels = random_rgb(13, 21, seed=1)
    loaded = load_image(encode(Image.fromarray(pixels), fmt, **options))
    assert loaded.format == fmt
    check_valid(loaded, (13, 21))
    np.testing.assert_array_equal(loaded.array, pixels.astype(np.float32) / 255)
    assert loaded.notices == ()


def test_gif_with_few_colours_round_trips_exactly():
    pixels = blocky_rgb(3, 4, block=5, seed=2)  # 12 colours: fits the GIF palette
    loaded = load_image(encode(Image.fromarray(pixels), "GIF"))
    assert loaded.format == "GIF"
    np.testing.assert_array_equal(loaded.array, pixels.astype(np.float32) / 255)


def test_jpeg_is_close_to_the_original():
    pixels = blocky_rgb(4, 6, seed=3)
    loaded = load_image(encode(Image.fromarray(pixels), "JPEG", quality=95, subsampling=0))
    assert loaded.format == "JPEG"
    check_valid(loaded, pixels.shape[:2])
    error = np.abs(loaded.array - pixels / 255.0)
    assert error.mean() < 0.01
    assert np.median(error) < 0.01


def test_format_is_judged_by_content_not_the_name(tmp_path):
    data = encode(Image.fromarray(random_rgb(4, 5)), "PNG")
    path = tmp_path / "holiday.jpg"
    path.write_bytes(data)
    assert load_image(path).format == "PNG"
    assert load_image(str(path)).format == "PNG"
    assert load_image(data, name="photo.gif").format == "PNG"
    with pytest.raises(ImageLoadError, match="supported format"):
        load_image(b"GIF89a" + b"\x00" * 4, name="looks_like.png")


def test_file_objects_are_read_from_the_start():
    data = encode(Image.fromarray(random_rgb(6, 7)), "PNG")
    handle = io.BytesIO(data)
    handle.read(10)
    assert load_image(handle).array.shape == (6, 7, 3)


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    loaded = load_image(encode(Image.fromarray(gray), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(loaded.array[:, :, c], gray / np.float32(255))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_one_bit_images_are_black_and_white(fmt):
    bits = np.random.default_rng(4).random((9, 11)) > 0.5
    im = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
    loaded = load_image(encode(im, fmt))
    np.testing.assert_array_equal(loaded.array, np.repeat(bits[:, :, None], 3, axis=2).astype(np.float32))


# ---------------------------------------------------------------------------- colour modes


def test_rgba_is_composited_on_white_with_exact_values():
    rgba = np.array([[[200, 100, 50, 128], [10, 20, 30, 255]], [[90, 180, 250, 0], [255, 0, 0, 64]]], dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    alpha = rgba[:, :, 3:4] / 255.0
    expected = rgba[:, :, :3] / 255.0 * alpha + (1.0 - alpha)
    np.testing.assert_allclose(loaded.array, expected, atol=1e-6)
    np.testing.assert_allclose(loaded.array[1, 0], [1.0, 1.0, 1.0])  # fully transparent -> white
    np.testing.assert_allclose(loaded.array[0, 1], [10 / 255, 20 / 255, 30 / 255], atol=1e-7)  # opaque kept
    assert "Transparent areas were composited on white." in loaded.notices


def test_opaque_rgba_needs_no_notice():
    rgba = np.dstack([random_rgb(3, 3), np.full((3, 3), 255, np.uint8)])
    loaded = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert loaded.notices == ()
    np.testing.assert_array_equal(loaded.array, rgba[:, :, :3] / np.float32(255))


def test_gray_with_alpha_is_composited_on_white():
    la = np.array([[[0, 0], [0, 255], [100, 51]]], dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(la, "LA"), "PNG"))
    expected_gray = np.array([1.0, 0.0, 100 / 255 * 0.2 + 0.8])
    np.testing.assert_allclose(loaded.array[0], np.repeat(expected_gray[:, None], 3, axis=1), atol=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 17, 34, 51]
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette(palette)
    loaded = load_image(encode(im, fmt, transparency=1))
    colours = np.array(palette, dtype=np.float64).reshape(-1, 3) / 255
    colours[1] = 1.0  # the transparent entry shows white
    np.testing.assert_allclose(loaded.array, colours[indices], atol=1e-7)
    assert "Transparent areas were composited on white." in loaded.notices


def test_rgb_with_a_transparent_colour_shows_white_there():
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(rgb), "PNG", transparency=(1, 2, 3)))
    np.testing.assert_allclose(loaded.array[0], [[1.0, 1.0, 1.0], [4 / 255, 5 / 255, 6 / 255]], atol=1e-7)


def test_palette_without_transparency_uses_the_palette_colours():
    im = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    im.putpalette([12, 34, 56, 200, 150, 100])
    loaded = load_image(encode(im, "PNG"))
    np.testing.assert_allclose(loaded.array[0, 0], np.array([12, 34, 56]) / 255, atol=1e-7)
    np.testing.assert_allclose(loaded.array[0, 1], np.array([200, 150, 100]) / 255, atol=1e-7)


CMYK_CASES = np.array(
    [
        [[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255]],
        [[0, 0, 0, 0], [128, 64, 32, 0], [0, 0, 0, 100], [50, 100, 150, 60]],
    ],
    dtype=np.uint8,
)


def cmyk_reference(cmyk: np.ndarray) -> np.ndarray:
    """The plain ink formula: each colour channel is (1 - ink) * (1 - black)."""
    values = cmyk.astype(np.float64) / 255
    return (1.0 - values[..., :3]) * (1.0 - values[..., 3:4])


def test_cmyk_tiff_converts_with_the_ink_formula():
    loaded = load_image(encode(Image.frombytes("CMYK", (4, 2), CMYK_CASES.tobytes()), "TIFF"))
    np.testing.assert_allclose(loaded.array, cmyk_reference(CMYK_CASES), atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(loaded.array[0, 0], [0, 1, 1], atol=1e-6)  # pure cyan


def test_cmyk_jpeg_keeps_its_colours():
    blocks = np.repeat(np.repeat(CMYK_CASES, 16, axis=0), 16, axis=1)
    im = Image.frombytes("CMYK", (blocks.shape[1], blocks.shape[0]), np.ascontiguousarray(blocks).tobytes())
    loaded = load_image(encode(im, "JPEG", quality=95, subsampling=0))
    centres = loaded.array[8::16, 8::16]
    np.testing.assert_allclose(centres, cmyk_reference(CMYK_CASES), atol=0.04)


def sixteen_bit_ramp(width: int = 512, height: int = 4) -> np.ndarray:
    return np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (height, 1))


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_tiff_keeps_its_contrast(mode):
    ramp = sixteen_bit_ramp()
    raw = ramp.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    loaded = load_image(encode(Image.frombytes(mode, (ramp.shape[1], ramp.shape[0]), raw), "TIFF"))
    gray = loaded.array[:, :, 0]
    assert gray.min() == 0.0 and gray.max() == 1.0
    np.testing.assert_allclose(gray, ramp / 65535.0, atol=1e-7)
    np.testing.assert_array_equal(loaded.array[:, :, 0], loaded.array[:, :, 2])


def test_sixteen_bit_png_keeps_its_contrast():
    ramp = sixteen_bit_ramp(300, 3)
    loaded = load_image(encode(Image.frombytes("I;16", (300, 3), ramp.astype("<u2").tobytes()), "PNG"))
    np.testing.assert_allclose(loaded.array[:, :, 1], ramp / 65535.0, atol=1e-7)


def test_32_bit_integer_tiff_in_16_bit_range_is_divided_by_65535():
    values = np.array([[0, 1000, 30000, 65535]], dtype=np.int32)
    loaded = load_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_allclose(loaded.array[0, :, 0], values[0] / 65535.0, atol=1e-7)
    assert loaded.notices == ()


def test_32_bit_integer_tiff_outside_16_bit_range_is_rescaled_with_a_notice():
    values = np.array([[-500, 0, 1500, 100000]], dtype=np.int32)
    loaded = load_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_allclose(loaded.array[0, :, 0], (values[0] + 500) / 100500.0, atol=1e-6)
    assert any("rescaled" in n for n in loaded.notices)


def test_float_tiff_in_unit_range_is_kept_as_is():
    values = np.array([[0.0, 0.25, 0.5], [0.125, 0.75, 1.0]], dtype=np.float32)
    loaded = load_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_array_equal(loaded.array[:, :, 0], values)
    assert loaded.notices == ()


def test_float_tiff_out_of_range_and_nan_is_made_finite():
    values = np.array([[-2.0, 0.0, np.nan], [6.0, np.inf, 2.0]], dtype=np.float32)
    loaded = load_image(encode(Image.fromarray(values), "TIFF"))
    expected = (np.array([[-2.0, 0.0, 0.0], [6.0, 0.0, 2.0]]) + 2.0) / 8.0
    np.testing.assert_allclose(loaded.array[:, :, 0], expected, atol=1e-7)
    assert any("no valid number" in n for n in loaded.notices)
    assert any("rescaled" in n for n in loaded.notices)


# ---------------------------------------------------------------------------- EXIF orientation

# What a viewer does to the stored pixels to show them upright, per EXIF orientation
# (written from the EXIF specification, independently of Pillow's table).
UPRIGHT_FROM_STORED = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise
    7: lambda a: np.rot90(np.fliplr(a), -1),
    8: lambda a: np.rot90(a, 1),
}
STORED_FROM_UPRIGHT = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.fliplr(np.rot90(a, 1)),
    8: lambda a: np.rot90(a, -1),
}


def with_orientation(pixels: np.ndarray, orientation: int, fmt: str, **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(STORED_FROM_UPRIGHT[orientation](pixels))
    return encode(Image.fromarray(stored), fmt, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_reference_tables_are_inverse(orientation):
    pixels = random_rgb(3, 5, seed=orientation)
    restored = UPRIGHT_FROM_STORED[orientation](STORED_FROM_UPRIGHT[orientation](pixels))
    np.testing.assert_array_equal(restored, pixels)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_png_is_turned_upright(orientation):
    upright = random_rgb(5, 8, seed=10 + orientation)  # 5x8: every transform is distinguishable
    loaded = load_image(with_orientation(upright, orientation, "PNG"))
    np.testing.assert_array_equal(loaded.array, upright / np.float32(255))
    assert loaded.original_size == (8, 5)
    assert any("EXIF orientation" in n for n in loaded.notices)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_jpeg_is_turned_upright(orientation):
    upright = blocky_rgb(3, 5, seed=20 + orientation)
    loaded = load_image(with_orientation(upright, orientation, "JPEG", quality=95, subsampling=0))
    assert loaded.array.shape == upright.shape
    assert np.abs(loaded.array - upright / 255.0).mean() < 0.01


def test_exif_orientation_of_a_sixteen_bit_tiff():
    ramp = sixteen_bit_ramp(7, 3).astype(np.uint16)
    ramp[0, 0] = 123  # asymmetric
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.ascontiguousarray(np.rot90(ramp, 1))
    im = Image.frombytes("I;16", (stored.shape[1], stored.shape[0]), stored.astype("<u2").tobytes())
    loaded = load_image(encode(im, "TIFF", exif=exif))
    np.testing.assert_allclose(loaded.array[:, :, 0], ramp / 65535.0, atol=1e-7)


def test_orientation_one_changes_nothing():
    pixels = random_rgb(4, 6, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 1
    loaded = load_image(encode(Image.fromarray(pixels), "PNG", exif=exif))
    np.testing.assert_array_equal(loaded.array, pixels / np.float32(255))
    assert loaded.notices == ()


# ---------------------------------------------------------------------------- frames and sizes


def three_frames() -> list[Image.Image]:
    return [Image.new("RGB", (6, 4), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize("fmt, title", [("GIF", "GIF"), ("WEBP", "WebP"), ("TIFF", "TIFF"), ("PNG", "PNG")])
def test_animated_or_multipage_files_use_the_first_frame(fmt, title):
    first, *rest = three_frames()
    options = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(encode(first, fmt, save_all=True, append_images=rest, **options))
    np.testing.assert_allclose(loaded.array, np.broadcast_to([1.0, 0.0, 0.0], (4, 6, 3)), atol=1e-6)
    unit = "pages" if fmt == "TIFF" else "frames"
    assert f"{title} has 3 {unit}; the first is used." in loaded.notices


def test_one_pixel_image():
    loaded = load_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    check_valid(loaded, (1, 1))
    np.testing.assert_allclose(loaded.array[0, 0], np.array([10, 20, 30]) / 255, atol=1e-7)


def test_extreme_aspect_ratio_under_the_pixel_cap():
    im = Image.linear_gradient("L").resize((20000, 50))
    loaded = load_image(encode(im, "PNG"))
    check_valid(loaded, (50, 20000))


# ---------------------------------------------------------------------------- bad files


def test_empty_file():
    with pytest.raises(ImageLoadError, match="is empty"):
        load_image(b"")


def test_random_bytes_named_png():
    data = np.random.default_rng(6).bytes(4096)
    with pytest.raises(ImageLoadError, match=r"'noise\.png' is not an image in a supported format"):
        load_image(data, name="noise.png")


def test_truncated_jpeg():
    data = encode(Image.fromarray(random_rgb(64, 64, seed=7)), "JPEG")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_eps_is_refused_by_name():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    with pytest.raises(ImageLoadError, match="EPS/PostScript file, which is not supported"):
        load_image(eps, name="figure.png")


@pytest.mark.parametrize("prefix", [b"", b'<?xml version="1.0" encoding="UTF-8"?>\n'])
def test_svg_is_refused_by_name(prefix):
    svg = prefix + b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>'
    with pytest.raises(ImageLoadError, match="SVG drawing, which is not supported"):
        load_image(svg)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    bomb = bilevel_png(10_000, 10_000)
    assert len(bomb) < 100_000  # small file, 100 megapixels
    decoded = []
    original = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    with pytest.raises(ImageLoadError, match=r"10000x10000 = 100,000,000 pixels, over the limit"):
        load_image(bomb)
    assert decoded == []


def test_pixel_cap_is_a_parameter():
    data = encode(Image.new("RGB", (30, 20)), "PNG")
    with pytest.raises(ImageLoadError, match="600 pixels, over the limit of 599"):
        load_image(data, max_pixels=599)
    assert load_image(data, max_pixels=600).array.shape == (20, 30, 3)


def test_pillows_own_bomb_guard_is_wrapped():
    # Over twice Pillow's MAX_IMAGE_PIXELS: Pillow itself raises while opening.
    header = struct.pack(">IIBBBBB", 15_000, 15_000, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(data, max_pixels=10**9)


def test_byte_cap_for_bytes_and_paths(tmp_path):
    data = encode(Image.fromarray(random_rgb(32, 32)), "PNG")
    with pytest.raises(ImageLoadError, match="larger than the"):
        load_image(data, max_bytes=len(data) - 1)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match="'big.png' is larger than the"):
        load_image(path, max_bytes=len(data) - 1)
    assert load_image(path, max_bytes=len(data)).array.shape == (32, 32, 3)


def test_missing_path_and_wrong_source_type(tmp_path):
    with pytest.raises(ImageLoadError, match="No image file was found"):
        load_image(tmp_path / "nothing.png")
    with pytest.raises(ImageLoadError, match="bytes, a path or a binary file"):
        load_image(12345)  # type: ignore[arg-type]


def test_damaged_png_body_is_reported():
    data = bytearray(encode(Image.fromarray(random_rgb(40, 40, seed=8)), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = b"\xff" * 40
    with pytest.raises(ImageLoadError, match="damaged|truncated"):
        load_image(bytes(data))


# ---------------------------------------------------------------------------- masks and hashes


def test_load_mask_from_gray_and_rgba():
    gray = np.zeros((4, 6), dtype=np.uint8)
    gray[1:3, 2:5] = 7
    np.testing.assert_array_equal(load_mask(encode(Image.fromarray(gray), "PNG")), gray > 0)
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 255, 255, 0]  # transparent: background even though white
    rgba[2, 3] = [0, 0, 9, 255]
    expected = np.zeros((4, 6), dtype=bool)
    expected[2, 3] = True
    np.testing.assert_array_equal(load_mask(encode(Image.fromarray(rgba, "RGBA"), "PNG")), expected)


def test_resize_mask_matches_a_slow_nearest_neighbour_loop():
    mask = np.random.default_rng(9).random((7, 5)) > 0.5
    out_h, out_w = 11, 3
    expected = np.zeros((out_h, out_w), dtype=bool)
    for i in range(out_h):
        for j in range(out_w):
            src_i = min(int((i + 0.5) * 7 / out_h), 6)
            src_j = min(int((j + 0.5) * 5 / out_w), 4)
            expected[i, j] = mask[src_i, src_j]
    np.testing.assert_array_equal(resize_mask(mask, (out_h, out_w)), expected)
    data = encode(Image.fromarray(mask.astype(np.uint8) * 255), "PNG")
    np.testing.assert_array_equal(load_mask(data, size=(out_h, out_w)), expected)


def test_mask_upscaled_by_an_integer_factor_repeats_pixels():
    mask = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(resize_mask(mask, (4, 6)), np.repeat(np.repeat(mask, 2, 0), 3, 1))


def test_image_hash_names_values_and_shape():
    a = np.random.default_rng(10).random((4, 6, 3)).astype(np.float32)
    assert image_hash(a) == image_hash(a.copy())
    assert image_hash(a) == image_hash(a.astype(np.float64))
    assert image_hash(a) != image_hash(a.reshape(6, 4, 3))
    b = a.copy()
    b[0, 0, 0] += 1e-3
    assert image_hash(a) != image_hash(b)
    assert len(image_hash(a)) == 64


# ---------------------------------------------------------------------------- property tests

MODES = ("L", "LA", "RGB", "RGBA", "P", "CMYK", "I;16", "I", "F", "1")
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
BYTES_PER_PIXEL = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "CMYK": 4, "I;16": 2, "I": 4, "F": 4}


def random_image(mode: str, width: int, height: int, seed: int, *, transparent: bool) -> Image.Image:
    """Random pixels (random raw bytes: float images may hold NaN and inf)."""
    rng = np.random.default_rng(seed)
    if mode == "1":
        im = Image.frombytes("1", (width, height), rng.bytes(((width + 7) // 8) * height))
    else:
        im = Image.frombytes(mode, (width, height), rng.bytes(BYTES_PER_PIXEL[mode] * width * height))
    if mode == "P":
        im.putpalette(rng.bytes(768))
        if transparent:
            im.info["transparency"] = int(rng.integers(0, 256))
    return im


def _writable_pairs() -> list[tuple[str, str]]:
    pairs = []
    for mode in MODES:
        for fmt in FORMATS:
            try:
                encode(random_image(mode, 3, 2, 0, transparent=False), fmt)
            except (OSError, ValueError, KeyError):
                continue
            pairs.append((mode, fmt))
    return pairs


WRITABLE = _writable_pairs()


def test_every_mode_is_writable_in_some_format():
    assert {mode for mode, _ in WRITABLE} == set(MODES)
    assert {fmt for _, fmt in WRITABLE} == set(FORMATS)


@st.composite
def encoded_images(draw):
    mode, fmt = draw(st.sampled_from(WRITABLE))
    width = draw(st.integers(1, 40))
    height = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    transparent = draw(st.booleans())
    im = random_image(mode, width, height, seed, transparent=transparent)
    return encode(im, fmt), (height, width), mode, fmt


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(encoded_images())
def test_property_valid_files_load_as_finite_rgb_in_unit_range(case):
    data, shape, mode, fmt = case
    loaded = load_image(data)
    check_valid(loaded, shape)
    assert loaded.format == fmt
    if mode in ("L", "RGB") and fmt in ("PNG", "BMP", "TIFF"):  # lossless 8-bit: exact values
        with Image.open(io.BytesIO(data)) as reference:
            expected = np.asarray(reference.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(loaded.array, expected)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damage it finds
@PROPERTY_SETTINGS
@given(
    encoded_images(),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
    st.one_of(st.none(), st.floats(0, 1)),
)
def test_property_damaged_files_load_or_raise_our_error_only(case, flips, keep):
    data, _shape, _mode, _fmt = case
    damaged = bytearray(data)
    for where, value in flips:
        damaged[int(where * len(damaged))] = value
    if keep is not None:
        damaged = damaged[: int(keep * len(damaged))]
    try:
        loaded = load_image(bytes(damaged))
    except ImageLoadError as exc:
        assert str(exc).strip()
        return
    a = loaded.array
    assert a.dtype == np.float32 and a.ndim == 3 and a.shape[2] == 3
    assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0
    assert loaded.original_size == (a.shape[1], a.shape[0])
