"""Heatmaps a person can see: on the Explain page, in a real Chromium, at default settings.

For a generated shape and a photograph, the tiles of Saliency, Integrated Gradients, Guided
Backprop and Grad-CAM must each change at least 10% of their pixels by more than 10/255 (in
some channel) against the model's input image, and the page must carry a colour bar. The tile
pixels are the bytes the browser received (the ``<img src>`` of each tile), decoded with
Pillow; the input is the sample passed through the default model's own preprocessing and
resized to the tile. The shares measured are written to ``test-output/legibility.json``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import OUTPUT
from xaicore.data.samples import load_sample
from xaicore.models.loading import load_model
from xaicore.render import heatmaps

pytestmark = pytest.mark.browser

SAMPLES = ("shape: star", "photo: chelsea")
CHECKED = ("Saliency", "Integrated Gradients", "Guided Backprop", "Grad-CAM")
VISIBLE = 10  # levels of 255
SHARE = 0.10

_TILES_JS = """
() => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]')).map(el => {
  const img = el.querySelector('img');
  const cap = el.querySelector('[data-testid="stImageCaption"], [data-testid="caption"]');
  return {src: img ? img.getAttribute('src') : null, alt: img ? (img.getAttribute('alt') || '') : '',
          caption: cap ? cap.innerText.trim() : ''};
})
"""


def _choose_sample(app, name: str) -> None:
    box = app.sidebar().get_by_label("Sample image")
    box.click()
    app.page.get_by_role("option", name=name, exact=True).click()
    app.wait_idle(settle_ms=800)


def _fetch_png(app, src: str) -> np.ndarray:
    url = src if src.startswith(("http:", "https:")) else app.server.url + src
    response = app.page.request.get(url)
    assert response.ok, f"could not fetch the tile {url}: {response.status}"
    with Image.open(io.BytesIO(response.body())) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.int16)


def _model_input(name: str) -> np.ndarray:
    bundle = load_model("default")
    x = bundle.to_input(np.asarray(load_sample(name).image, dtype=np.float32))
    return x[0].permute(1, 2, 0).detach().cpu().numpy()


def visible_share(tile: np.ndarray, image: np.ndarray) -> float:
    """Share of the tile's pixels differing from ``image`` (floats in [0, 1], resized to the
    tile) by more than :data:`VISIBLE` levels in some channel."""
    reference = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8))
    reference = reference.resize((tile.shape[1], tile.shape[0]), Image.Resampling.BILINEAR)
    diff = np.abs(tile - np.asarray(reference, dtype=np.int16)).max(axis=-1)
    return float(np.mean(diff > VISIBLE))


def _tiles_by_title(app, titles) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in app.page.evaluate(_TILES_JS):
        if item["caption"] in titles and item["src"]:
            found.setdefault(item["caption"], item["src"])
    return found


def _wait_for_tiles(app, titles) -> dict[str, str]:
    app.page.wait_for_function(
        "titles => { const caps = Array.from(document.querySelectorAll("
        '\'[data-testid="stMain"] [data-testid="stImage"]\')).map(e => e.innerText.trim());'
        " return titles.every(t => caps.includes(t)); }",
        arg=list(titles),
    )
    app.wait_idle()
    return _tiles_by_title(app, titles)


def _record(sample: str, shares: dict[str, float]) -> None:
    path = OUTPUT / "legibility.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data[sample] = shares
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.mark.parametrize("sample", SAMPLES)
def test_explain_tiles_are_visibly_tinted_and_carry_a_colour_bar(app, sample):
    _choose_sample(app, sample)
    app.open_page("Explain")
    app.run_waiting_methods()
    everything = _wait_for_tiles(app, CHECKED)
    assert set(everything) == set(CHECKED), everything
    image = _model_input(sample)
    tiles = {title: _fetch_png(app, src) for title, src in everything.items()}
    shares = {title: visible_share(tile, image) for title, tile in tiles.items()}
    # The colours themselves, not only the greyscale base under them: the share of pixels the
    # map tints against the dimmed grey copy of the image it is drawn over.
    base = heatmaps.dimmed_grey(image)
    tinted = {title: visible_share(tile, base) for title, tile in tiles.items()}
    _record(sample, {"vs input": shares, "vs dimmed grey": tinted})
    app.page.set_viewport_size({"width": 1400, "height": 3200})  # the whole grid in one picture
    app.wait_idle()
    app.screenshot(f"explain-{sample}")
    low = {t: round(s, 3) for t, s in shares.items() if s < SHARE}
    assert not low, f"tiles with under {SHARE:.0%} visibly changed pixels on {sample}: {low}"
    faint = {t: round(s, 3) for t, s in tinted.items() if s < SHARE}
    assert not faint, f"tiles whose colours tint under {SHARE:.0%} of the pixels on {sample}: {faint}"

    # A colour bar with numbers is on the page: the legend says what the colours mean, and
    # every checked tile has its bar (a PNG, blue at the left end, red at the right).
    main = app.main()
    assert main.get_by_text("red: evidence for the class", exact=False).count() >= 1
    bars = [item for item in app.page.evaluate(_TILES_JS) if item["alt"].startswith("colour bar")]
    assert len(bars) >= len(CHECKED), [b["alt"] for b in bars]
    bar = _fetch_png(app, bars[0]["src"])
    row = bar[bar.shape[0] // 4]
    left, right = row[2], row[-3]
    assert left[2] > left[0] + 40 and right[0] > right[2] + 40, (left, right)
    assert any(ch.isdigit() for ch in bars[0]["alt"]), bars[0]["alt"]


def test_one_tile_enlarges_with_its_downloads_and_the_record_names_the_clip(app, tmp_path):
    _choose_sample(app, "shape: star")
    app.open_page("Explain")
    _wait_for_tiles(app, ("Saliency",))
    app.page.get_by_role("button", name="Enlarge").first.click()
    dialog = app.page.get_by_role("dialog")
    dialog.wait_for()
    app.wait_idle()
    assert dialog.get_by_text("Saliency", exact=True).count() >= 1
    assert dialog.locator('[data-testid="stImage"] img').count() >= 3  # map, its colour bar, the input
    assert dialog.get_by_text("colour bar: -", exact=False).count() == 1
    app.screenshot("explain-enlarged")
    with app.page.expect_download() as info:
        dialog.get_by_role("button", name="Attribution (.npy)").click()
    saliency = np.load(info.value.path())
    assert saliency.shape == (3, 64, 64) and np.abs(saliency).max() > 0
    with app.page.expect_download() as info:
        dialog.get_by_role("button", name="Tile (PNG)").click()
    with Image.open(info.value.path()) as tile:
        assert tile.width >= 320 and tile.height > tile.width  # the map enlarged, its colour bar under it
    app.page.keyboard.press("Escape")
    app.wait_idle()
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Record (JSON)").click()
    with open(info.value.path(), encoding="utf-8") as file:
        record = json.load(file)
    view = record["view"]
    assert view["clip_percentile"] == heatmaps.DEFAULT_PERCENTILE and view["view"] == "all"
    expected = np.percentile(np.abs(saliency.sum(axis=0, dtype=np.float64)), heatmaps.DEFAULT_PERCENTILE)
    assert view["clip_values"]["saliency"] == pytest.approx(expected, rel=1e-9)
