"""Choices that stay: the sidebar's model, image and class, each page's selections and settings,
and each page's finished results survive fragment reruns, page switches and in-app links.

Real ``streamlit run`` server, real Chromium, a real ResNet-18 state dict (random weights) and a
real photo (scikit-image's ``chelsea``) sent through the real file inputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data as skdata

from xaicore.models.bundle import fingerprint
from xaicore.models.loading import load_checkpoint_model

pytestmark = pytest.mark.browser

CLASSES = ("tabby", "fox", "owl")
CKPT_NAME = "resnet18-random.pt"
CKPT_SIZE = 64  # input side of the checkpoint: keeps every run short on a CPU
METHODS = '[data-testid="stMultiSelect"]'
TILES = '[data-testid="stMain"] [data-testid="stImage"] img'


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A ResNet-18 state dict with random weights (3 classes) and the chelsea photo as PNG."""
    folder = tmp_path_factory.mktemp("choices")
    torch.manual_seed(0)
    checkpoint = folder / CKPT_NAME
    torch.save(torchvision.models.resnet18(num_classes=len(CLASSES)).state_dict(), checkpoint)
    photo = folder / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(photo)
    return {"checkpoint": checkpoint, "photo": photo}


@pytest.fixture(scope="module")
def checkpoint_fingerprint(files) -> str:
    bundle = load_checkpoint_model(
        files["checkpoint"], arch="resnet18", class_names=CLASSES, input_size=CKPT_SIZE, file_name=CKPT_NAME
    )
    assert bundle.fingerprint == fingerprint(bundle.model)
    return bundle.fingerprint[:12]


# --- moves ---------------------------------------------------------------------------------


def _choose(app, box, option: str) -> None:
    """Open the select box ``box`` and click ``option``."""
    box.click()
    app.page.get_by_role("option", name=option, exact=True).click()
    app.wait_idle()


def _select(app, where, label: str):
    return where.locator('[data-testid="stSelectbox"]').filter(has=app.page.get_by_text(label, exact=True))


def load_checkpoint(app, path: Path, *, classes=CLASSES, size: int = CKPT_SIZE, arch: str = "resnet18") -> None:
    """Choose *Upload a checkpoint* in the sidebar, fill its form and load ``path``."""
    sidebar = app.sidebar()
    _choose(app, _select(app, sidebar, "Model"), "Upload a checkpoint")
    form = sidebar.locator('[data-testid="stForm"]')
    form.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    app.wait_idle(settle_ms=800)
    if arch != "resnet18":
        _choose(app, _select(app, form, "Architecture"), arch)
    form.get_by_label("Class names, one per line").fill("\n".join(classes))
    form.get_by_label("Input size (pixels)").fill(str(size))
    form.get_by_role("button", name="Load checkpoint").click()
    app.wait_idle(settle_ms=800)


def upload_photo(app, path: Path) -> None:
    """Choose *Upload* as the image source and send ``path`` through the image uploader."""
    sidebar = app.sidebar()
    sidebar.locator('[data-testid="stRadio"]').get_by_text("Upload", exact=True).click()
    app.wait_idle()
    uploader = sidebar.locator('[data-testid="stFileUploader"]').filter(has_text="Upload an image")
    uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    app.wait_idle(settle_ms=800)


def chosen_methods(app) -> list[str]:
    """The items chosen in the main area's *Methods* multiselect."""
    box = app.main().locator(METHODS).filter(has=app.page.get_by_text("Methods", exact=True)).first
    box.wait_for()
    return [t.strip() for t in box.locator("[data-tag]").all_inner_texts()]


def remove_method(app, title: str) -> None:
    box = app.main().locator(METHODS).filter(has=app.page.get_by_text("Methods", exact=True)).first
    box.get_by_role("button", name=f"Remove {title}", exact=True).click()
    app.wait_idle()


def model_caption(app) -> str:
    return app.sidebar().get_by_text("fingerprint").first.inner_text()


def image_caption(app) -> str:
    """The name of the sidebar's current image (its caption without the crop-box note)."""
    caption = app.sidebar().locator('[data-testid="stImage"]').first.inner_text().strip()
    return caption.split(" (the box")[0]


def nudge_slider(app, label: str, key: str = "ArrowLeft") -> None:
    slider = app.main().get_by_role("slider", name=label) if label else app.main().get_by_role("slider").first
    slider.focus()
    slider.press(key)
    app.wait_idle()


def slider_value(app, label: str) -> str:
    return app.main().get_by_role("slider", name=label).get_attribute("aria-valuetext")


def wait_for_tiles(app, count: int) -> None:
    app.page.wait_for_function(f"document.querySelectorAll('{TILES}').length >= {count}")


# --- tests ---------------------------------------------------------------------------------


def test_checkpoint_and_photo_survive_fragment_sliders_and_page_switches(app, files, checkpoint_fingerprint):
    load_checkpoint(app, files["checkpoint"])
    assert app.errors() == []
    caption = model_caption(app)
    assert f"resnet18 from {CKPT_NAME}" in caption and checkpoint_fingerprint in caption, caption
    upload_photo(app, files["photo"])
    assert image_caption(app) == "chelsea.png"
    app.screenshot("choices-checkpoint-loaded")

    app.open_page("Explain")
    assert f"resnet18 from {CKPT_NAME}" in model_caption(app)
    methods = chosen_methods(app)
    wait_for_tiles(app, len(methods) + 1)
    remove_method(app, "Occlusion")
    remove_method(app, "Integrated Gradients")
    kept = chosen_methods(app)
    assert "Occlusion" not in kept and "Integrated Gradients" not in kept and len(kept) == len(methods) - 2
    opacity = slider_value(app, "Heatmap opacity")
    nudge_slider(app, "Heatmap opacity")  # the grid's fragment reruns alone
    moved = slider_value(app, "Heatmap opacity")
    assert moved != opacity
    app.wait_idle()
    tiles_before = app.page.locator(TILES).count()
    waiting_before = app.main().get_by_text("wait for you").count()  # slow methods may wait for Run
    app.screenshot("choices-explain-after-slider")

    app.open_page("Sanity checks")
    main = app.main().inner_text()
    assert model_caption(app).count(checkpoint_fingerprint) == 1
    assert f"resnet18 from {CKPT_NAME}" in model_caption(app)
    assert image_caption(app) == "chelsea.png"
    assert "Default shapes CNN" not in main and "shape: circle" not in app.sidebar().inner_text()
    assert f"on resnet18 from {CKPT_NAME}" in main, main
    app.number_input("Seeds", "1")
    app.main().get_by_text("Cascading", exact=True).click()
    app.wait_idle()
    app.click_button("Run the check")
    app.main().get_by_role("heading", name="Verdicts").wait_for()
    app.screenshot("choices-sanity-checkpoint")

    app.open_page("GAX")
    app.number_input("Step cap", "6")
    app.click_button("Run GAX")
    app.main().get_by_role("slider").wait_for()
    nudge_slider(app, "", "Home")  # the viewer's fragment reruns alone
    app.open_page("Faithfulness")
    assert f"resnet18 from {CKPT_NAME}" in model_caption(app) and image_caption(app) == "chelsea.png"
    app.main().get_by_role("slider", name="Step").wait_for()
    nudge_slider(app, "Step", "ArrowRight")

    app.open_page("Explain")
    assert f"resnet18 from {CKPT_NAME}" in model_caption(app) and checkpoint_fingerprint in model_caption(app)
    assert image_caption(app) == "chelsea.png"
    assert chosen_methods(app) == kept
    wait_for_tiles(app, len(kept) + 1)
    assert slider_value(app, "Heatmap opacity") == moved
    app.wait_idle()
    assert app.page.locator(TILES).count() == tiles_before  # the finished maps are all back
    assert app.main().get_by_text("wait for you").count() == waiting_before
    app.screenshot("choices-explain-back")


def test_explain_sanity_explain_keeps_methods_settings_and_results(app):
    app.open_page("Explain")
    before = chosen_methods(app)
    wait_for_tiles(app, len(before) + 1)
    remove_method(app, "Occlusion")
    remove_method(app, "Guided Grad-CAM")
    explain_methods = chosen_methods(app)
    assert len(explain_methods) == len(before) - 2
    tiles = app.main().locator(TILES).count()

    app.open_page("Sanity checks")
    sanity_methods = chosen_methods(app)
    remove_method(app, sanity_methods[-1])
    sanity_methods = chosen_methods(app)
    app.number_input("Seeds", "1")
    app.main().get_by_text("Cascading", exact=True).click()
    app.wait_idle()
    threshold = app.main().get_by_role("slider", name="Fail threshold (SSIM)")
    threshold.focus()
    for _ in range(5):
        threshold.press("ArrowLeft")
    app.wait_idle()
    chosen_threshold = threshold.get_attribute("aria-valuetext")
    app.click_button("Run the check")
    app.main().get_by_role("heading", name="Verdicts").wait_for()
    verdicts = app.main().locator('[data-testid="stDataFrame"]').first.inner_text()

    app.open_page("Explain")
    assert chosen_methods(app) == explain_methods
    wait_for_tiles(app, tiles)
    assert app.main().locator(TILES).count() == tiles
    assert app.main().get_by_text("Choose at least one method").count() == 0

    app.open_page("Sanity checks")
    assert chosen_methods(app) == sanity_methods
    assert (
        app.main().get_by_role("slider", name="Fail threshold (SSIM)").get_attribute("aria-valuetext")
        == chosen_threshold
    )
    assert app.main().get_by_label("Seeds", exact=True).input_value() == "1"
    app.main().get_by_role("heading", name="Verdicts").wait_for()  # shown again without pressing Run
    assert app.main().locator('[data-testid="stDataFrame"]').first.inner_text() == verdicts
    app.screenshot("choices-sanity-back")

    # In-app links (the Home page's page links) and the browser's Back button keep them too.
    app.open_page("Home")
    app.main().get_by_role("link", name="Explain").click()
    app.wait_idle()
    app.page.wait_for_selector("h1")
    assert chosen_methods(app) == explain_methods
    wait_for_tiles(app, tiles)
    app.page.go_back()
    app.wait_idle()
    app.page.go_back()
    app.wait_idle()
    app.page.get_by_role("heading", name="Sanity checks").wait_for()
    assert chosen_methods(app) == sanity_methods
    app.main().get_by_role("heading", name="Verdicts").wait_for()
    app.screenshot("choices-after-links-and-back")


def test_a_real_resnet50_checkpoint_of_98_mb_goes_through_the_browser(app, tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "resnet50-random.pt"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    assert path.stat().st_size > 95 * 2**20  # over the old 50 MB server cap, under the 600 MB checkpoint cap
    classes = [f"class {i}" for i in range(1000)]
    load_checkpoint(app, path, classes=classes, size=224, arch="resnet50")
    assert app.errors() == []
    caption = model_caption(app)
    assert caption.startswith("resnet50 from resnet50-random.pt · 1000 classes · input 224×224"), caption
    app.screenshot("choices-resnet50-checkpoint")
