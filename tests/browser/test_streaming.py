"""Results as they come, in a real Chromium on the default model: a new image's grid never shows
the previous image's maps beside its own, slow methods wait for Run with their estimate, and
Stop ends a run after the method in flight, keeping what finished."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_choices import chosen_methods, remove_method
from xaicore.explainers.registry import get_method, list_methods

pytestmark = pytest.mark.browser

TILE_TITLES = tuple(get_method(name).title for name in list_methods())  # every method runs on the default model
# The sources of the tile images (a tile: an image whose caption is a method's title), read in the page.
TILE_SOURCES = """(titles) => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]'))
    .filter(box => titles.includes(box.innerText.trim()))
    .map(box => box.querySelector('img').getAttribute('src'))"""


def _choose_sample(app, name: str) -> None:
    box = app.sidebar().locator('[data-testid="stSelectbox"]').filter(has_text="Sample image")
    box.click()
    app.page.get_by_role("option", name=name, exact=True).click()


def _tile_sources(app) -> list[str]:
    return app.page.evaluate(TILE_SOURCES, list(TILE_TITLES))


def test_a_new_image_never_shows_the_previous_images_maps_as_its_own(app):
    _choose_sample(app, "shape: star")
    app.wait_idle()
    app.open_page("Explain")
    app.run_waiting_methods()
    app.page.wait_for_function(f"({TILE_SOURCES})({list(TILE_TITLES)!r}).length >= {len(TILE_TITLES)}")
    before = _tile_sources(app)
    # Watch every change of the page from now on: the moment the first map of the new image
    # appears, how many maps of the old image are still on screen.
    app.page.evaluate(
        """([sources, titles]) => {
            const old = new Set(sources);
            window.__mixed = null;
            window.__fresh = 0;
            const look = () => {
                const now = (TILE_SOURCES)(titles);
                const fresh = now.filter(s => !old.has(s)).length;
                if (fresh > 0 && window.__mixed === null) window.__mixed = now.filter(s => old.has(s)).length;
                window.__fresh = Math.max(window.__fresh, fresh);
            };
            new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
        }""".replace("TILE_SOURCES", TILE_SOURCES),
        [before, list(TILE_TITLES)],
    )
    _choose_sample(app, "shape: circle")
    app.run_waiting_methods()
    app.page.wait_for_function(f"({TILE_SOURCES})({list(TILE_TITLES)!r}).length >= {len(TILE_TITLES)}")
    after = _tile_sources(app)
    assert not set(after) & set(before)  # every map is the new image's
    assert app.page.evaluate("window.__fresh") == len(TILE_TITLES)
    assert app.page.evaluate("window.__mixed") == 0  # the old maps were gone before the first new one came


def test_slow_methods_wait_with_their_estimate_and_stop_keeps_what_finished(app):
    slow = ("Integrated Gradients", "SmoothGrad", "GradientShap")
    app.open_page("Explain")
    for title in chosen_methods(app):
        if title not in ("Saliency",) + slow:
            remove_method(app, title)
    assert chosen_methods(app) == ["Saliency", "Integrated Gradients", "SmoothGrad", "GradientShap"]
    app.main().get_by_text("Method parameters", exact=True).click()
    # about 1,000 passes each: well over what the default model runs by itself
    app.number_input("Integrated Gradients: steps", "1024")
    app.number_input("SmoothGrad: samples", "1024")
    app.number_input("GradientShap: samples", "1024")
    waiting = app.main().get_by_text("wait for you")
    waiting.wait_for()
    note = waiting.inner_text()
    assert all(f"{title} (about" in note for title in slow), note
    for title in slow:
        card = app.main().get_by_text(re.compile(f"^{title}: waits for Run \\((about|under)"))
        assert card.count() == 1, title
    assert len(_tile_sources(app)) == 1  # Saliency ran by itself
    app.screenshot("streaming-waiting-with-estimates")

    app.page.get_by_role("button", name="Run", exact=True).click()
    # ours (not Streamlit's own Stop in the toolbar), the one on screen (not one an earlier run left hidden)
    stop = app.main().locator(".st-key-explain-act-stop button:visible")
    stop.wait_for()
    app.page.wait_for_function(f"({TILE_SOURCES})({list(TILE_TITLES)!r}).length >= 2")  # the first slow one
    app.screenshot("streaming-running-with-stop")
    stop.click()
    app.wait_idle()
    stopped = app.main().get_by_text(re.compile("^Stopped. Not run yet: "))
    stopped.wait_for()
    text = stopped.inner_text()
    shown = app.page.evaluate(
        """(titles) => Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]'))
            .map(box => box.innerText.trim()).filter(t => titles.includes(t))""",
        list(TILE_TITLES),
    )
    finished = [t for t in slow if t in shown]
    not_run = [t for t in slow if f"{t} (about" in text]
    # the one that finished before Stop stays (and the one in flight, when there was one); at least one
    # never started, and each slow method is either on screen or named as not run
    assert 1 <= len(finished) <= 2 and not_run, (shown, text)
    assert sorted(finished + not_run) == sorted(slow), (shown, text)
    assert app.page.get_by_role("button", name="Run", exact=True).is_visible()
    app.screenshot("streaming-stopped")
