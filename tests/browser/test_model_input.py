"""What the model saw, in a real Chromium: the sidebar's model input tile and its crop notice.

A non-square photo (scikit-image's chelsea, 451x300) goes through the real file input; with
ResNet-18 (random weights, switched on in the sidebar) the tile shows the 224x224 centre crop and
the notice says so; the default model on a square sample shows the tile and no notice. Only the
Home page is used: it runs no explanation, so ResNet-18 costs one forward pass here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

TILE = ".st-key-model-input-sidebar"
NOTICE = '[data-testid="stAlertContentWarning"] [data-testid="stMarkdownContainer"]'  # the text, not the icon
CROP_NOTICE = (
    "The image was resized to 256 px on its shorter side and centre-cropped to 224x224: "
    "the model did not see the parts outside the box."
)


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    return path


def _tile(app):
    return app.sidebar().locator(TILE)


def _shoot(app, name: str) -> None:
    """A screenshot of the page with the sidebar scrolled to the tile, and a close-up of the tile."""
    tile = _tile(app)
    tile.scroll_into_view_if_needed()
    app.screenshot(name)
    tile.screenshot(path=str(SCREENSHOTS / f"{name}-tile.png"))


def _image_sizes(app) -> list[tuple[int, int]]:
    """Natural (width, height) of the two pictures in the sidebar's tile: the image, the model input."""
    images = _tile(app).locator('[data-testid="stImage"] img')
    images.nth(1).wait_for()
    return [
        tuple(images.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight]")) for i in range(images.count())
    ]


def _choose_model(app, menu_text: str) -> None:
    app.sidebar().locator('[data-testid="stSelectbox"]').filter(has_text="Model").first.click()
    app.page.get_by_role("option", name=menu_text).first.click()
    app.wait_idle()


def _random_resnet18(app) -> None:
    """Choose ResNet-18 and switch on its random weights (off in a fresh browser context)."""
    _choose_model(app, "ResNet-18")
    app.sidebar().get_by_test_id("stCheckbox").filter(has_text="Random weights").click()
    app.wait_idle()
    app.sidebar().get_by_text("ResNet-18 (random weights)", exact=False).first.wait_for()


def test_square_sample_on_the_default_model_has_no_crop_notice(app):
    tile = _tile(app)
    tile.get_by_text("Model input 64x64", exact=False).first.wait_for()  # drawn after the container
    assert tile.is_visible()
    assert "Model input 64x64: the image as it is." in tile.inner_text()
    assert tile.locator('[data-testid="stAlertContentWarning"]').count() == 0
    assert "crop" not in app.sidebar().inner_text().lower()
    (image_w, image_h), (tile_w, tile_h) = _image_sizes(app)
    assert (image_w, image_h) == (64, 64) and (tile_w, tile_h) == (256, 256)  # 4x, pixel for pixel
    _shoot(app, "model-input-default-square")


def test_photo_on_resnet18_shows_the_crop(app, chelsea):
    app.upload_image(chelsea)
    tile = _tile(app)
    tile.wait_for()
    # on the default model the photo is stretched to 64x64, which is said, and not called a crop
    stretched = tile.locator(NOTICE).inner_text()
    assert "without keeping its proportions" in stretched and "crop" not in stretched
    _shoot(app, "model-input-default-photo")

    _random_resnet18(app)
    tile.wait_for()
    assert tile.is_visible()
    notice = tile.locator(NOTICE)
    assert notice.is_visible() and notice.inner_text().strip() == CROP_NOTICE
    assert "Model input 224x224: the 451x300 image, shorter side to 256 px, centre crop." in tile.inner_text()
    (image_w, image_h), (tile_w, tile_h) = _image_sizes(app)
    assert (image_w, image_h) == (451, 300) and (tile_w, tile_h) == (448, 448)
    _shoot(app, "model-input-resnet18-photo")


def test_crop_notice_stays_on_other_pages(app, chelsea):
    app.upload_image(chelsea)
    _random_resnet18(app)
    for title in ("GAX", "Report card"):  # pages that run nothing heavy on arrival
        app.open_page(title)
        notice = _tile(app).locator(NOTICE)
        notice.wait_for()
        assert notice.inner_text().strip() == CROP_NOTICE, title
    _shoot(app, "model-input-resnet18-report")


def test_explain_page_shows_the_model_input_beside_the_image(app, chelsea):
    app.upload_image(chelsea)
    app.open_page("Explain")
    tile = app.main().locator(".st-key-model-input")
    tile.wait_for()
    assert "Model input 64x64: the 451x300 image resized to it." in tile.inner_text()
    assert "without keeping its proportions" in tile.locator(NOTICE).inner_text()
    sizes = [
        tuple(img.evaluate("img => [img.naturalWidth, img.naturalHeight]"))
        for img in tile.locator('[data-testid="stImage"] img').all()
    ]
    assert sizes == [(451, 300), (256, 256)]
    app.screenshot("model-input-explain-default-photo")
