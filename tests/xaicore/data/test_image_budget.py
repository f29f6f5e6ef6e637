"""What a small image may cost: a memory budget per decode path checked from the header, an
aspect-ratio limit, and decoding in a child process with a time limit."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from xaicore.data import decode_worker
from xaicore.data.decode_worker import load_image_isolated
from xaicore.data.images import DEFAULT_MAX_DECODE_BYTES, check_header, decode_cost, load_image, to_rgb_float
from xaicore.errors import ImageLoadError


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def palette_png(width: int, height: int, *, transparency: bool = True) -> bytes:
    """An all-zero palette PNG; 6320x6320 with transparency compresses to about 39 kB."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + width)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    chunks = [
        png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)),
        png_chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff"),
    ]
    if transparency:
        chunks.append(png_chunk(b"tRNS", b"\x00"))
    chunks += [png_chunk(b"IDAT", body), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def encode(im: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def palette_bomb() -> bytes:
    return palette_png(6320, 6320)


def test_the_40_kilobyte_palette_png_is_refused_in_a_second_with_a_sentence(palette_bomb) -> None:
    assert 38_000 < len(palette_bomb) < 41_000
    start = time.perf_counter()
    with pytest.raises(ImageLoadError) as info:
        load_image(palette_bomb, name="bomb.png")
    assert time.perf_counter() - start < 1.0
    assert str(info.value) == (
        "The file 'bomb.png' (6320x6320, palette colours with transparency) would take about 0.9 GB of memory to "
        "decode, over the 0.5 GB limit for one image; images of this kind can have at most 23,272,727 pixels, "
        "so make it smaller and try again."
    )


def test_the_refusal_costs_no_memory(palette_bomb, tmp_path) -> None:
    """In a fresh process: peak memory (VmHWM) stays at what the imports take."""
    path = tmp_path / "bomb.png"
    path.write_bytes(palette_bomb)
    script = textwrap.dedent(
        f"""
        from xaicore.data.images import load_image
        from xaicore.errors import ImageLoadError
        try:
            load_image({str(path)!r})
        except ImageLoadError:
            pass
        print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert int(done.stdout) < 200e6  # decoding would take 0.9 GB (4.6 GB before the budget)


def test_a_30000_by_1_strip_is_refused_with_a_sentence() -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(palette_png(30000, 1, transparency=False), name="strip.png")
    assert str(info.value) == (
        "The file 'strip.png' is 30000x1 pixels, a strip more than 400 times longer than it is wide, which cannot "
        "be shown or fitted to a model's input; crop it and try again."
    )
    check_header(palette_png(400, 1, transparency=False))  # 400:1 is still accepted


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _high_bit(width: int, height: int) -> Image.Image:
    ramp = np.linspace(0, 65535, width * height).astype("<u2").reshape(height, width)
    return Image.frombytes("I;16", (width, height), ramp.tobytes())


@pytest.mark.parametrize(
    "make,kind",
    [
        (lambda w, h: encode(Image.new("LA", (w, h), (10, 128)), "PNG"), "LA with transparency"),
        (lambda w, h: encode(Image.new("RGBA", (w, h), (1, 2, 3, 4)), "PNG"), "RGBA with transparency"),
        (lambda w, h: palette_png(w, h), "palette colours with transparency"),
        (lambda w, h: encode(_high_bit(w, h), "PNG"), "16- or 32-bit values"),
        (lambda w, h: encode(Image.new("CMYK", (w, h), (0, 50, 100, 0)), "TIFF"), "CMYK colours"),
        (lambda w, h: encode(Image.new("RGB", (w, h), (9, 8, 7)), "PNG"), "RGB colours"),
    ],
)
def test_every_decode_path_is_budgeted_and_refused_above_it(make, kind) -> None:
    data = make(300, 200)
    cost = decode_cost(_opened(data))
    assert cost > 300 * 200 * 19  # at least the RGB copy, its bytes and the float32 result
    load_image(data, max_decode_bytes=cost)  # exactly at the budget: decoded
    with pytest.raises(ImageLoadError, match=rf"\(300x200, {kind}\) would take about .* of memory to decode"):
        load_image(data, max_decode_bytes=cost - 1)


@pytest.mark.parametrize(
    "mode",
    ["P+transparency", "LA", "I;16", "CMYK", "RGB"],
)
def test_the_estimate_bounds_the_measured_peak(mode, tmp_path) -> None:
    """Peak resident memory of a fresh process decoding a 2000x2000 image, above its imports."""
    w = h = 2000
    if mode == "P+transparency":
        data = palette_png(w, h)
    elif mode == "I;16":
        data = encode(_high_bit(w, h), "PNG")
    else:
        fill = {"LA": (10, 128), "CMYK": (0, 50, 100, 0), "RGB": (9, 8, 7)}[mode]
        data = encode(Image.new(mode, (w, h), fill), "TIFF" if mode == "CMYK" else "PNG")
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    script = textwrap.dedent(
        f"""
        from xaicore.data.images import load_image
        def hwm():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
        before = hwm()
        load_image({str(path)!r})
        print(before, hwm())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    before, after = (int(v) for v in done.stdout.split())
    estimate = decode_cost(_opened(data))
    assert after - before <= estimate, (mode, after - before, estimate)
    assert after - before >= 0.3 * estimate, (mode, after - before, estimate)  # not a gross overestimate


def test_eight_bit_results_are_unchanged_by_the_blockwise_conversion() -> None:
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (700, 600, 4), dtype=np.uint8), "RGBA")  # > one block
    reference = np.asarray(rgba, dtype=np.float64) / 255.0
    alpha = reference[:, :, 3:4]
    expected = np.ascontiguousarray(np.clip(reference[:, :, :3] * alpha + (1.0 - alpha), 0.0, 1.0), dtype=np.float32)
    np.testing.assert_array_equal(to_rgb_float(rgba), expected)
    rgb = Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), "RGB")
    expected = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8), dtype=np.float32) / np.float32(255.0)
    np.testing.assert_array_equal(to_rgb_float(rgb), expected)


# ---------------------------------------------------------------------------- the worker


def test_the_worker_gives_what_load_image_gives() -> None:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA"), "PNG")
    isolated = load_image_isolated(data, name="photo.png")
    direct = load_image(data, name="photo.png")
    np.testing.assert_array_equal(isolated.array, direct.array)
    assert (isolated.format, isolated.original_size, isolated.notices, isolated.name) == (
        direct.format,
        direct.original_size,
        direct.notices,
        direct.name,
    )
    assert isolated.array.flags.writeable


def test_refusals_from_the_header_start_no_process(palette_bomb, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    with pytest.raises(ImageLoadError, match="would take about 0.9 GB of memory"):
        load_image_isolated(palette_bomb, name="bomb.png")


def test_a_decode_past_the_deadline_is_stopped_with_a_sentence() -> None:
    data = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(ImageLoadError) as info:
        load_image_isolated(data, name="slow.png", timeout_s=0.001)
    assert str(info.value) == (
        "The file 'slow.png' took longer than 0.001 seconds to decode and was stopped; save it again in a common "
        "format (PNG or JPEG) or make it smaller."
    )


def test_errors_found_while_decoding_come_back_as_the_same_sentence() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG"))
    truncated = bytes(data[: len(data) - 30])
    with pytest.raises(ImageLoadError) as direct:
        load_image(truncated, name="cut.png")
    with pytest.raises(ImageLoadError) as isolated:
        load_image_isolated(truncated, name="cut.png")
    assert str(isolated.value) == str(direct.value)


def test_a_crashed_worker_is_a_sentence(monkeypatch) -> None:
    monkeypatch.setattr(
        decode_worker,
        "_child_env",
        lambda: {
            "PYTHONPATH": "/nonexistent",
            "PATH": "/usr/bin",
            "PYTHONNOUSERSITE": "1",
            "PYTHONSAFEPATH": "1",
            "PYTHONHOME": "/nonexistent",
        },
    )
    data = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")
    with pytest.raises(ImageLoadError, match="the decoder stopped unexpectedly"):
        load_image_isolated(data, name="x.png")


def test_the_default_budget_is_half_a_gigabyte() -> None:
    assert DEFAULT_MAX_DECODE_BYTES == 512 * 10**6
