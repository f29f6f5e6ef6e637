"""The Clever-Hans lab in a real Chromium: find, locate, fix (P-ClArC and A-ClArC, quick
setting) and verify, with every figure in the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard.render.clever_hans import FIGURES

pytestmark = pytest.mark.browser


def test_the_lab_walks_find_locate_fix_verify(app):
    app.open_page("Clever-Hans lab")
    main = app.main()
    app.number_input("Images per test set", "80")
    main.get_by_text("Quick setting").click()
    app.wait_idle()

    app.click_button("Measure the model")
    main.get_by_text("Flip rate when the stamp is pasted").wait_for()
    assert main.get_by_text("Flip rate when the stamp is pasted").count() == 1
    assert main.get_by_text("may be using the stamp").count() == 1

    # Locate: the grid of eight maps with the box's share in each caption.
    main.get_by_text("x the box's share of the image").wait_for()
    assert main.get_by_text("in the box", exact=False).count() >= 8
    assert main.get_by_text("x the box's share of the image").count() == 1

    app.click_button("Correct with P-ClArC")
    main.get_by_role("radiogroup", name="Method").get_by_text("A-ClArC", exact=True).click()
    app.wait_idle()
    app.click_button("Correct with A-ClArC")
    main.get_by_text("+ A-ClArC", exact=False).first.wait_for()
    assert main.get_by_text("Corrected models kept for this session").count() == 1

    app.click_button("Verify the original and the corrected models")
    table = main.locator('[data-testid="stDataFrame"]')
    table.wait_for()  # a busy machine may start the run late
    main.locator('[data-testid="stPlotlyChart"]').wait_for()
    assert table.count() == 1  # drawn on a canvas: its figures are checked in the record below
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Record (JSON)").click()
    record = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [r["method"] for r in record["rows"]] == ["original", "p-clarc", "a-clarc"]
    assert all(set(FIGURES) <= set(r["figures"]) for r in record["rows"])
    assert app.errors() == []
    app.screenshot("clever-hans-lab")
