"""The issue's two small uploads through the real file inputs of a real server: each refused
within a second with a sentence, and the server's peak memory (VmHWM, reset before each try)
stays under 1.5 GB."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch

from tests.browser.conftest import started_server
from tests.xaicore.data.test_image_budget import palette_png

pytestmark = pytest.mark.browser

PEAK_LIMIT = 1.5e9


@pytest.fixture(scope="module")
def server():
    """A fresh server of its own: the peak is the cost of these uploads, not of the models that
    earlier browser tests loaded into the shared server."""
    with started_server("browser-server-upload-costs.log") as running:
        yield running


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} is not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident size (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    assert _status(pid, "VmHWM") <= _status(pid, "VmRSS") + 16 * 2**20


def _wait_for_error(app, start_count: int, timeout_s: float = 30.0) -> tuple[str, float]:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        errors = app.errors()
        if len(errors) > start_count:
            return errors[-1], time.monotonic() - began
        app.page.wait_for_timeout(50)
    raise AssertionError(f"no error appeared; errors on the page: {app.errors()}")


def test_the_40_kilobyte_palette_png_through_the_upload(app, tmp_path) -> None:
    picture = tmp_path / "bomb.png"
    picture.write_bytes(palette_png(6320, 6320))
    assert picture.stat().st_size < 41_000
    sidebar = app.sidebar()
    sidebar.get_by_text("Upload", exact=True).click()
    app.wait_idle()
    _reset_peak(app.server.pid)
    before = len(app.errors())
    sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(picture))
    message, seconds = _wait_for_error(app, before)
    app.wait_idle()
    peak = _status(app.server.pid, "VmHWM")
    assert message.startswith("The file 'bomb.png' (6320x6320, palette colours with transparency) would take about")
    assert "over the 0.5 GB limit for one image" in message
    assert seconds < 1.0 + 0.8, seconds  # the refusal itself takes milliseconds; the rest is the round trip
    print(f"refused in {seconds:.2f} s, server peak {peak / 1e9:.2f} GB")
    assert peak < PEAK_LIMIT, peak
    app.screenshot("upload_costs_palette_png_refused")


def test_the_1_kilobyte_stride_zero_checkpoint_through_the_upload(app, tmp_path) -> None:
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.arange(4.0).as_strided((40000, 40000), (0, 0))}, buffer)
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(buffer.getvalue())
    assert checkpoint.stat().st_size < 2000
    sidebar = app.sidebar()
    sidebar.locator('[data-testid="stSelectbox"]').first.click()
    app.page.get_by_role("option", name="Upload a checkpoint").click()
    app.wait_idle()
    sidebar.get_by_label("Class names, one per line").fill("cat\ndog")
    sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(checkpoint))
    app.page.wait_for_timeout(500)
    _reset_peak(app.server.pid)
    before = len(app.errors())
    started = time.monotonic()
    app.page.get_by_role("button", name="Load checkpoint").click()
    message, _ = _wait_for_error(app, before)
    seconds = time.monotonic() - started
    app.wait_idle()
    peak = _status(app.server.pid, "VmHWM")
    assert message.startswith("The weights 'fc.weight' are a view of shape (40000, 40000) with stride (0, 0)")
    assert seconds < 1.0 + 0.8, seconds
    print(f"refused in {seconds:.2f} s, server peak {peak / 1e9:.2f} GB")
    assert peak < PEAK_LIMIT, peak
    app.screenshot("upload_costs_stride_zero_checkpoint_refused")


def test_a_30000_by_1_strip_is_refused_and_later_reruns_stay_clean(app, tmp_path) -> None:
    """It used to be accepted and then break ``st.image`` on every rerun (tracebacks in the log)."""
    strip = tmp_path / "strip.png"
    strip.write_bytes(palette_png(30000, 1, transparency=False))
    app.upload_image(strip)
    assert app.errors()[-1].startswith("The file 'strip.png' is 30000x1 pixels, a strip more than 400 times longer")
    app.open_page("Explain")
    app.open_page("Home")
    assert app.exception_boxes() == []  # the fixture also fails on any server traceback
