"""The Sanity, AX / CO and Report card pages in a real Chromium on the default model: what a
person reads there (the seeds band, the missing wrong predictions, how many images are behind
each figure). Screenshots go to ``test-output/screenshots/``."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

CHARTS = '[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot'


def _text(app) -> str:
    return app.main().inner_text()


def test_sanity_ax_co_and_report_pages_say_what_their_figures_rest_on(app):
    app.open_page("Sanity checks")
    app.number_input("Seeds", "2")
    app.main().get_by_text("Cascading", exact=True).click()
    app.wait_idle()
    app.click_button("Run the check")
    app.page.locator(CHARTS).first.wait_for()
    names = app.page.evaluate(f"() => document.querySelector('{CHARTS}')._fullData.map(t => t.name)")
    assert any(name.endswith(": ±1 std over 2 seeds") for name in names), names
    title = re.sub(
        r"<[^>]+>", "", app.page.evaluate(f"() => document.querySelector('{CHARTS}')._fullLayout.title.text")
    )
    assert "vs the trained model" in title and "2 seeds" in title
    app.page.locator(CHARTS).first.scroll_into_view_if_needed()
    app.screenshot("pages-sanity")

    app.open_page("AX / CO scores")
    app.number_input("Number of images", "16")
    app.click_button("Run")
    app.page.get_by_text("cannot be measured", exact=False).first.wait_for()
    assert "predicts every one of the 16 labelled images right" in _text(app)
    app.page.get_by_text("cannot be measured", exact=False).first.scroll_into_view_if_needed()
    app.screenshot("pages-co-all-right")
    app.click_button("Use the harder generated set")
    app.click_button("Run")
    app.page.locator(CHARTS).first.wait_for()
    assert "cannot be measured" not in _text(app)
    app.page.locator(CHARTS).first.scroll_into_view_if_needed()
    app.screenshot("pages-co-harder")

    app.open_page("Report card")
    app.number_input("Number of images", "8")
    app.click_button("Run")
    app.main().get_by_role("heading", name="Summary").wait_for()
    text = _text(app)
    assert "from one image: shape: circle, 2 seeds" in text
    assert "over 8 images" in text and "Figures of different scope" in text
    raw = [line for line in text.splitlines() if "co_gap" in line or "_verdict" in line or " verdict " in line]
    assert raw == []  # no raw column names
    app.main().get_by_role("heading", name="Per method").scroll_into_view_if_needed()
    app.screenshot("pages-report")
