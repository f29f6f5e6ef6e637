"""The Explain page's CAM layer: choosing another layer changes the CAM tiles' maps, the tiles
name the layer, and the choice survives a page switch.

Real ``streamlit run`` server and Chromium, the default model and the sidebar's default sample.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

METHODS = '[data-testid="stMultiSelect"]'
DEFAULT_LAYER = "net.features.conv4"
EARLY_LAYER = "net.features.conv2"
EARLY_OPTION = "net.features.conv2 · 32 ch · 32x32"


def _methods_box(app):
    return app.main().locator(METHODS).filter(has=app.page.get_by_text("Methods", exact=True)).first


def _only(app, titles: list[str]) -> None:
    """Make ``titles`` the chosen methods: clear the multiselect, then type each one in."""
    box = _methods_box(app)
    box.wait_for()
    box.get_by_role("button", name="Clear all").click()
    app.wait_idle()
    for title in titles:
        box.locator("input").fill(title)
        app.page.get_by_role("option", name=title, exact=True).click()
        app.wait_idle()
    app.page.keyboard.press("Escape")
    app.wait_idle()


def _layer_box(app):
    return app.main().locator('[data-testid="stSelectbox"]').filter(has=app.page.get_by_text("CAM layer", exact=True))


def _chosen_layer(app) -> str:
    """The CAM layer select box's value as shown (its input, or the text beside it)."""
    box = _layer_box(app)
    field = box.locator("input")
    return str(field.input_value()) + " " + box.inner_text() if field.count() else box.inner_text()


def _tile_map(app, title: str) -> str:
    """The address of the map drawn in the tile captioned ``title`` (content-addressed by Streamlit)."""
    image = app.main().locator('[data-testid="stImage"]').filter(has=app.page.get_by_text(title, exact=True))
    image.first.wait_for()
    return str(image.first.locator("img").get_attribute("src"))


def _show_tiles(app) -> None:
    """Scroll the tiles into view for the screenshot (the main area scrolls inside the page)."""
    app.main().get_by_text("· layer").first.scroll_into_view_if_needed()


def _wait_for_layer_caption(app, layer: str) -> None:
    app.main().get_by_text(f"· layer {layer}").first.wait_for()


def test_a_chosen_cam_layer_changes_the_map_is_shown_and_stays(app) -> None:
    app.open_page("Explain")
    _only(app, ["Saliency", "LayerCAM"])
    app.run_waiting_methods()
    _wait_for_layer_caption(app, DEFAULT_LAYER)
    assert DEFAULT_LAYER in _chosen_layer(app), _chosen_layer(app)
    late = _tile_map(app, "LayerCAM")
    saliency = _tile_map(app, "Saliency")
    assert app.main().get_by_text("· layer").count() == 1  # only the CAM method names a layer

    _layer_box(app).click()
    app.page.get_by_role("option", name=EARLY_OPTION, exact=True).click()
    app.wait_idle()
    app.run_waiting_methods()
    _wait_for_layer_caption(app, EARLY_LAYER)
    early = _tile_map(app, "LayerCAM")
    assert early != late  # another layer, another map
    assert _tile_map(app, "Saliency") == saliency  # a method without a layer is not recomputed
    assert app.main().get_by_text(f"· layer {DEFAULT_LAYER}").count() == 0
    _show_tiles(app)
    app.screenshot("cam-layer-early")

    app.open_page("Sanity checks")
    app.open_page("Explain")
    assert EARLY_LAYER in _chosen_layer(app), _chosen_layer(app)
    _wait_for_layer_caption(app, EARLY_LAYER)
    assert _tile_map(app, "LayerCAM") == early
    assert app.exception_boxes() == [] and app.errors() == []
    _layer_box(app).scroll_into_view_if_needed()
    app.screenshot("cam-layer-after-page-switch")
