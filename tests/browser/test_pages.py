"""The dashboard in a real Chromium: real clicks, real files through the real file input.

Each test starts on the Home page of a fresh browser context (``app`` fixture in conftest):
it fails on any console error, page error, Streamlit exception box or server traceback, and
saves a screenshot under ``test-output/screenshots/``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard.navigation import PAGES
from xaicore.data.shapes import generate
from xaicore.explainers.registry import list_methods
from xaicore.models.loading import load_model

pytestmark = pytest.mark.browser

IMAGES = '[data-testid="stMain"] [data-testid="stImage"] img'  # image, model input and tiles


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A generated shape as PNG and another as JPEG, and a PNG that is not an image."""
    folder = tmp_path_factory.mktemp("uploads")
    pictures, _ = generate(2, seed=7, size=64)
    png, jpeg = folder / "shape.png", folder / "shape.jpg"
    Image.fromarray((pictures[0] * 255).round().astype(np.uint8)).save(png)
    Image.fromarray((pictures[1] * 255).round().astype(np.uint8)).save(jpeg, quality=90)
    bad = folder / "holiday.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return {"png": png, "jpeg": jpeg, "bad": bad}


def _wait_for_images(app, count: int) -> None:
    app.page.wait_for_function(f"document.querySelectorAll('{IMAGES}').length >= {count}")


def _image_src(app, index: int) -> str:
    return app.page.locator(IMAGES).nth(index).get_attribute("src")


def test_every_page_loads_without_an_exception(app):
    titles = app.nav_links()
    assert titles == [spec.title for spec in PAGES]
    for title in reversed(titles):  # Explain last: it runs every method on the sample on arrival
        app.open_page(title)
        assert app.exception_boxes() == [], title
        assert app.errors() == [], title
        heading = app.main().locator("h1").first.inner_text()
        assert heading, title
        app.screenshot(f"page-{title}")


def test_uploaded_png_and_jpeg_are_explained(app, images):
    app.upload_image(images["png"])
    assert app.errors() == []
    assert app.sidebar().get_by_text("shape.png").count() >= 1
    app.open_page("Explain")
    # Every method of the default model runs (automatically, unless a busy machine made one look
    # slow): one tile per method plus the image and the model input.
    bundle = load_model("default")
    methods = len([m for m in list_methods() if m not in bundle.unavailable])
    app.run_waiting_methods()
    _wait_for_images(app, methods + 2)
    statuses = app.main().get_by_text(" ms · ").all_inner_texts()
    assert len(statuses) == methods and all(" · ok" in s or " · no signal" in s for s in statuses), statuses
    first_png = _image_src(app, 2)
    app.screenshot("explain-png")

    app.upload_image(images["jpeg"])
    app.run_waiting_methods()
    _wait_for_images(app, methods + 2)
    assert app.errors() == []
    assert app.main().get_by_text("shape.jpg").count() >= 1
    assert _image_src(app, 2) != first_png
    app.screenshot("explain-jpeg")

    # Downloads: the JSON record names every method shown; the .npz holds one map per method.
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Record (JSON)").click()
    record = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert {"provenance", "methods"} <= set(record)
    assert len(record["methods"]) == methods
    assert len(record["provenance"]["model_fingerprint"]) == 64
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Attributions (.npz)").click()
    with np.load(io.BytesIO(Path(info.value.path()).read_bytes())) as npz:
        names = sorted(npz.files)
        assert names == sorted(m["method"] for m in record["methods"] if m["status"] != "failed")
        assert all(npz[name].shape == (3, 64, 64) for name in names)


def test_a_bad_upload_shows_one_sentence(app, images):
    app.upload_image(images["png"])
    app.upload_image(images["bad"])
    (message,) = app.errors()
    assert "holiday.png" in message
    assert "Traceback" not in message and "Error" not in message.split(":")[0]
    assert message.rstrip(".").count(". ") == 0  # one sentence
    assert app.exception_boxes() == []
    # The previous image stays the current one.
    assert app.sidebar().get_by_text("shape.png").count() >= 1


def test_gax_slider_scrubs_the_stored_history(app):
    app.open_page("GAX")
    app.number_input("Target CO score", "100000")  # out of reach: the run stops at the step cap
    app.number_input("Step cap", "12")
    app.click_button("Run GAX")
    slider = app.main().get_by_role("slider")
    slider.wait_for()
    caption = app.main().get_by_text("CO score ").filter(has_text="Step ")

    def frame() -> tuple[str, str]:
        text = caption.first.inner_text()
        src = _image_src(app, 0)
        return text, src

    last = frame()
    assert last[0].startswith("Step 12 of 12")
    slider.focus()
    slider.press("Home")
    app.wait_idle()
    first = frame()
    assert first[0].startswith("Step 0 of 12") and first[1] != last[1]
    slider.press("ArrowRight")
    app.wait_idle()
    second = frame()
    assert second[0] != first[0] and second[1] != first[1]
    assert not second[0].startswith("Step 0 ")
    assert app.main().locator('[data-testid="stPlotlyChart"] .js-plotly-plot').count() == 1
    app.screenshot("gax-scrubbed")


def test_a_short_sanity_check_draws_its_chart(app):
    app.open_page("Sanity checks")
    app.number_input("Seeds", "1")
    app.main().get_by_text("Cascading", exact=True).click()
    app.wait_idle()
    app.click_button("Run the check")
    chart = app.main().locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    chart.first.wait_for()
    assert chart.count() == 1
    assert app.main().get_by_role("heading", name="Verdicts").count() == 1
    # The chart holds one line per method (its traces are drawn in SVG).
    assert app.main().locator('[data-testid="stPlotlyChart"] .scatterlayer .trace').count() >= 1
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="All values (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert rows and {r["mode"] for r in rows} == {"cascading"} and {r["seed"] for r in rows} == {"0"}
    metrics = {r["metric"] for r in rows}
    assert any(m.startswith("ssim") for m in metrics) and any(m.startswith("spearman") for m in metrics)
    assert all(np.isfinite(float(r["value"])) or r["value"] == "nan" for r in rows)
    app.screenshot("sanity-chart")
