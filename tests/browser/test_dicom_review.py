"""A DICOM file in a real Chromium: uploaded through the real file input, windowed with a slider
(the picture shown changes, the model's input does not), explained with the grayscale X-ray
teaching model, heatmaps drawn. The file is written here with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dashboard.dicom_panel import CUSTOM
from tests.browser.conftest import SCREENSHOTS
from tests.helpers.dicom_files import IDENTIFYING, write_dicom
from xaicore.data import xray
from xaicore.explainers.registry import list_methods

pytestmark = pytest.mark.browser
pytest.importorskip("pydicom")

SHOWN = ".st-key-dicom-shown img"
TILE = ".st-key-model-input-sidebar"
MAIN_IMAGES = '[data-testid="stMain"] [data-testid="stImage"] img'


@pytest.fixture(scope="module")
def chest_file(tmp_path_factory) -> Path:
    """A 12-bit MONOCHROME2 radiograph-like file with a nodule, its window covering the full range."""
    case = xray.make_case(xray.case_seed(77, 1), size=128, finding=True, kind="nodule")
    pixels = np.round(case.image * 4095).astype(np.uint16)
    path = tmp_path_factory.mktemp("dicom") / "chest.dcm"
    path.write_bytes(
        write_dicom(pixels, bits_stored=12, window=[(2048, 4096), (1200, 800)], window_names=["full", "soft"])
    )
    return path


def _choose(app, label: str, option: str) -> None:
    box = app.sidebar().locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.scroll_into_view_if_needed()  # a box at the sidebar's lower edge opens its list off screen
    box.click()
    app.page.get_by_role("option", name=option).first.click()
    app.wait_idle()


def test_a_dicom_file_is_windowed_and_explained_with_the_grayscale_model(app, chest_file):
    _choose(app, "Model", "Grayscale X-ray teaching CNN")
    app.upload_image(chest_file)
    assert app.errors() == []
    sidebar = app.sidebar()
    sidebar.locator(SHOWN).wait_for()
    text = sidebar.inner_text()
    assert "CHEST" in text and "2024-01-15" in text and "128 x 128" in text
    assert "turned to gray (one channel)" in text
    assert not any(identifying in app.page.content() for identifying in IDENTIFYING)
    first = sidebar.locator(SHOWN).get_attribute("src")
    model_input = sidebar.locator(f"{TILE} img").nth(1).get_attribute("src")

    _choose(app, "Window", CUSTOM)
    width = sidebar.get_by_role("slider", name="Window width")
    width.focus()
    width.press("Home")  # the narrowest window: a very different picture
    app.wait_idle(settle_ms=800)
    changed = sidebar.locator(SHOWN).get_attribute("src")
    assert changed != first
    assert sidebar.locator(f"{TILE} img").nth(1).get_attribute("src") == model_input  # same model input
    sidebar.locator(SHOWN).scroll_into_view_if_needed()
    app.screenshot("dicom-window-narrow")
    sidebar.locator(".st-key-dicom-shown").screenshot(path=str(SCREENSHOTS / "dicom-shown.png"))
    table = sidebar.locator('[data-testid="stTable"]').first
    table.scroll_into_view_if_needed()
    table.screenshot(path=str(SCREENSHOTS / "dicom-tags.png"))

    app.open_page("Explain")
    app.run_waiting_methods()
    methods = len(list_methods())  # every method runs on the one-channel model
    app.page.wait_for_function(f"document.querySelectorAll('{MAIN_IMAGES}').length >= {methods + 2}")
    statuses = app.main().get_by_text(" ms · ").all_inner_texts()
    assert len(statuses) == methods and all(" · ok" in s for s in statuses), statuses
    assert app.errors() == []
    tile = app.page.locator(MAIN_IMAGES).nth(2)
    tile.scroll_into_view_if_needed()
    app.page.screenshot(path=str(SCREENSHOTS / "dicom-explained-tiles.png"))
