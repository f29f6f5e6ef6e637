"""The Class discriminativeness page in a real Chromium on the default model: one image's figures
are labelled as a single example, and a button sets them against the mean and 95% interval over
generated scenes (the same numbers the core function gives)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SAMPLE = "scene: cross + ring"
SCENES = 20  # few scenes: the page's default is 200, the figures are tested in tests/xaicore


def _choose_sample(app, name: str) -> None:
    box = app.sidebar().locator('[data-testid="stSelectbox"]').filter(has_text="Sample image")
    box.click()
    app.page.get_by_role("option", name=name, exact=True).click()
    app.wait_idle()


def _table(app) -> list[list[str]]:
    """The cells of the scenes table, header first."""
    table = app.main().locator('[data-testid="stTable"] table').last
    table.wait_for()
    return table.evaluate(
        """t => Array.from(t.querySelectorAll('tr')).map(
            tr => Array.from(tr.querySelectorAll('th, td')).map(c => c.innerText.trim()))"""
    )


def test_single_image_figures_are_set_against_many_scenes(app):
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
    from xaicore.data.shapes import generate_scenes
    from xaicore.explainers.registry import single_pass_methods
    from xaicore.models.loading import load_model

    _choose_sample(app, SAMPLE)
    app.open_page("Class discriminativeness")
    main = app.main()
    main.get_by_text("Figures for this one image: a single example", exact=False).wait_for()
    app.screenshot("classes-single-example")
    assert main.get_by_text("this one image", exact=False).count() == 2  # by the figures and in the section below
    app.number_input("Generated two-object scenes", str(SCENES))
    app.click_button(f"Measure over {SCENES} scenes")
    rows = _table(app)
    app.screenshot("classes-over-scenes")
    header = rows[0]
    assert header[-4:] == ["this image", f"mean over {SCENES} scenes", "95% interval", "lowest on"], header
    expected = discriminativeness_over_scenes(
        load_model("default", device="cpu"), generate_scenes(SCENES, seed=0), methods=single_pass_methods()
    )
    body = [r[-5:] for r in rows[1:]]
    assert [r[0] for r in body] == [expected.titles[expected.methods.index(m)] for m in expected.ordered()]
    for row, method in zip(body, expected.ordered(), strict=True):
        interval = expected.interval(method)
        assert row[2] == f"{interval.mean:.2f}"
        assert row[3] == f"{interval.low:.2f} to {interval.high:.2f}"
