"""16 bits per channel colour images keep their precision up to the model's input; 8-bit images
are read as before (Pillow)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.helpers.explain_models import tiny_bundle
from xaicore.data.images import decode_cost, load_image


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _predict(kind: int, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    if kind == 0:
        return np.zeros_like(a)
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def png16(samples: np.ndarray, colour: int, *, seed: int = 0, trns: bytes | None = None) -> bytes:
    """A 16-bit PNG written from the specification, each row with a random filter of the five."""
    height, width, channels = samples.shape
    bpp = 2 * channels
    data = samples.astype(">u2").reshape(height, width * channels).view(np.uint8).astype(np.int32)
    data = data.reshape(height, width * bpp)
    kinds = np.random.default_rng(seed).integers(0, 5, height)
    rows = []
    for y in range(height):
        x = data[y]
        up = data[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        filtered = (x - _predict(int(kinds[y]), left, up, upleft)) % 256
        rows.append(bytes([int(kinds[y])]) + filtered.astype(np.uint8).tobytes())
    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    extra = chunk(b"tRNS", trns) if trns else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def ramp(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, channels)).astype(np.uint16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_16_bit_rgb_png_with_every_filter_is_read_exactly(seed) -> None:
    samples = ramp(37, 23, 3, seed)
    data = png16(samples, 2, seed=seed)
    loaded = load_image(data)
    np.testing.assert_array_equal(loaded.array, (samples / 65535.0).astype(np.float32))
    with Image.open(io.BytesIO(data)) as im:  # Pillow (libpng's filters, high bytes only) agrees
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (samples >> 8).astype(np.uint8))


def test_16_bit_rgba_and_gray_alpha_are_composited_on_white() -> None:
    rgba = ramp(9, 11, 4, 5)
    loaded = load_image(png16(rgba, 6))
    values = rgba / 65535.0
    expected = np.clip(values[:, :, :3] * values[:, :, 3:] + (1 - values[:, :, 3:]), 0, 1).astype(np.float32)
    np.testing.assert_array_equal(loaded.array, expected)
    assert "Transparent areas were composited on white." in loaded.notices
    la = ramp(6, 7, 2, 6)
    values = la / 65535.0
    gray = np.repeat(values[:, :, :1], 3, axis=2)
    expected = np.clip(gray * values[:, :, 1:] + (1 - values[:, :, 1:]), 0, 1).astype(np.float32)
    np.testing.assert_array_equal(load_image(png16(la, 4)).array, expected)


def test_a_16_bit_transparent_colour_key_is_honoured() -> None:
    samples = ramp(4, 4, 3, 7)
    samples[1, 2] = (1000, 2000, 3000)
    loaded = load_image(png16(samples, 2, trns=struct.pack(">HHH", 1000, 2000, 3000)))
    np.testing.assert_array_equal(loaded.array[1, 2], np.ones(3, np.float32))
    np.testing.assert_array_equal(loaded.array[0, 0], (samples[0, 0] / 65535.0).astype(np.float32))


def test_a_16_bit_rgb_tiff_is_read_exactly() -> None:
    samples = ramp(13, 17, 3, 8)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, samples, photometric="rgb")
    loaded = load_image(buffer.getvalue())
    np.testing.assert_array_equal(loaded.array, (samples / 65535.0).astype(np.float32))


def test_the_precision_reaches_the_model_input() -> None:
    """Two pictures one 16-bit step apart give different model inputs (8 bits kept one value)."""
    base = np.full((16, 16, 3), 30000, np.uint16)
    other = base.copy()
    other[..., 0] += 1
    first, second = (load_image(png16(s, 2)).array for s in (base, other))
    assert not np.array_equal(first, second)
    bundle = tiny_bundle(seed=0)
    x1, x2 = bundle.to_input(first[None]), bundle.to_input(second[None])
    assert float((x2 - x1).abs().max()) == pytest.approx(1 / 65535, rel=1e-3)


def test_truncated_16_bit_png_is_a_sentence() -> None:
    data = png16(ramp(20, 20, 3), 2)
    cut = data[:60] + data[-12:]
    from xaicore.errors import ImageLoadError

    with pytest.raises(ImageLoadError, match="truncated|damaged"):
        load_image(cut)


def test_the_budget_counts_the_16_bit_path() -> None:
    data = png16(ramp(100, 100, 3), 2)
    with Image.open(io.BytesIO(data)) as im:
        assert decode_cost(im) == 100 * 100 * (2 * 3 * 6 + 16 * 3 + 12)


def test_8_bit_images_still_come_from_pillow_unchanged() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    np.testing.assert_array_equal(load_image(buffer.getvalue()).array, rgb.astype(np.float32) / np.float32(255))
