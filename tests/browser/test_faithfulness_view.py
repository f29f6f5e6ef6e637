"""The Faithfulness page in a real Chromium on the default model: the probability axis is fitted
to the curves (a toggle widens it to 0-1) and the step preview marks the pixels changed so far.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from dashboard.render.faithfulness import MARK_COLORS

pytestmark = pytest.mark.browser

CHARTS = '[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot'
SAMPLE = "scene: circle + square"  # the default model's class probability stays below 0.5 on its curves


def _choose_sample(app, name: str) -> None:
    box = app.sidebar().locator('[data-testid="stSelectbox"]').filter(has_text="Sample image")
    box.click()
    app.page.get_by_role("option", name=name, exact=True).click()
    app.wait_idle()


def _axes(app) -> list[dict]:
    """Each chart's y-axis range and the y values of its traces, read from Plotly's own figure."""
    return app.page.evaluate(
        f"""() => Array.from(document.querySelectorAll('{CHARTS}')).map(plot => ({{
            title: plot._fullLayout.title.text,
            range: plot._fullLayout.yaxis.range.slice(),
            values: plot._fullData.flatMap(trace => Array.from(trace.y || [])),
        }}))"""
    )


def _preview(app, kind: str) -> tuple[np.ndarray, str]:
    """The pixels and caption of the step preview of ``kind`` ("insertion" or "deletion")."""
    found = app.page.evaluate(
        """(kind) => {
            for (const img of document.querySelectorAll('[data-testid="stMain"] img')) {
                let box = img.parentElement;
                for (let i = 0; i < 4 && box && !box.innerText.trim(); i++) box = box.parentElement;
                const text = box ? box.innerText.trim() : "";
                if (text.startsWith(kind + ":")) return {src: img.getAttribute("src"), caption: text};
            }
            return null;
        }""",
        kind,
    )
    assert found is not None, f"no {kind} preview on the page"
    src = found["src"]
    url = src if src.startswith(("http", "data:")) else app.server.url + src
    body = app.page.request.get(url).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), found["caption"]


def _count(pixels: np.ndarray, rgb: tuple[float, float, float]) -> int:
    """Pixels of exactly the mark colour ``rgb`` (the PNG preview is lossless)."""
    return int((pixels == np.round(np.asarray(rgb) * 255).astype(np.uint8)).all(axis=-1).sum())


def test_faithfulness_axis_is_fitted_and_the_preview_marks_changed_pixels(app):
    _choose_sample(app, SAMPLE)
    app.open_page("Faithfulness")
    app.page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= 2")
    app.wait_idle()
    axes = _axes(app)
    titles = [re.sub(r"<[^>]+>", "", a["title"]) for a in axes]  # Streamlit's theme wraps titles in <b>
    assert [t.split(":")[0] for t in titles] == ["Insertion", "Deletion"]
    for axis in axes:
        low, high = axis["range"]
        values = np.array([v for v in axis["values"] if v is not None], dtype=float)
        pad = max(0.01, 0.05 * (values.max() - values.min()))
        assert low == pytest.approx(max(0.0, values.min() - pad), abs=1e-6)
        assert high == pytest.approx(min(1.02, values.max() + pad), abs=1e-6)
        assert high < 0.8, axis  # fitted to the curves, not 0-1
    assert "replaced by the blurred image (Gaussian, sigma 8 px)" in titles[1]

    # Ten steps into the curves (10% of the pixels at the default 1% step): the changed pixels are marked.
    slider = app.main().locator('[data-testid="stSlider"]').filter(has_text="Step").get_by_role("slider")
    slider.focus()
    for _ in range(10):
        # One run per step: a key press that interrupts a run still drawing its preview makes the
        # browser ask for that run's image after the server has dropped it (a 404 in the console).
        slider.press("ArrowRight")
        app.wait_idle()
    app.wait_idle(settle_ms=800)
    deletion, caption = _preview(app, "deletion")
    assert caption.startswith("deletion: 410 pixels (10%) replaced by the blurred image (Gaussian, sigma 8 px)")
    (note,) = [
        c
        for c in app.main().locator('[data-testid="stCaptionContainer"]').all_inner_texts()
        if c.startswith("Marked in ")
    ]
    name = note.removeprefix("Marked in ").split(":")[0]
    assert note.startswith(f"Marked in {name}: the 410 most relevant pixels of Saliency")
    rgb = MARK_COLORS[name]
    marked_pixels = _count(deletion, rgb)
    assert marked_pixels >= 20, marked_pixels  # the outline of the changed region, in the mark colour
    app.page.locator(CHARTS).first.scroll_into_view_if_needed()
    app.screenshot("faithfulness-chart")
    app.main().get_by_text("Mark the changed pixels", exact=True).scroll_into_view_if_needed()
    app.screenshot("faithfulness-marked-preview")

    app.main().get_by_text("Mark the changed pixels", exact=True).click()
    app.wait_idle(settle_ms=800)
    plain, _ = _preview(app, "deletion")
    assert _count(plain, rgb) < marked_pixels // 10

    app.main().get_by_text("Probability axis from 0 to 1", exact=True).click()
    app.wait_idle(settle_ms=800)
    assert [a["range"] for a in _axes(app)] == [[0, 1.02], [0, 1.02]]
