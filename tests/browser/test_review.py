"""The Review page in a real Chromium against a real server: verdicts survive a SIGKILLed server
and a restart, two sessions judging one case lose nothing, and the downloaded report has one PDF
page per case with the maps visible."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import App, Server, started_server
from tests.helpers.pdf_pages import is_visible_map, map_area, page_count, rendered_pages
from xaicore.data.shapes import generate
from xaicore.review.config import CASES_ROOT_ENV, DB_ENV
from xaicore.review.verdicts import ReviewStore

pytestmark = pytest.mark.browser

CASE_NAMES = ("ward/case-1.png", "ward/case-2.png", "ward/case-10.png")
METHOD = "Grad-CAM"


@pytest.fixture
def review_env(tmp_path: Path) -> dict[str, str]:
    """A folder of three generated cases under a case root, and a fresh review database."""
    root = tmp_path / "cases"
    (root / "ward").mkdir(parents=True)
    pictures, _ = generate(3, seed=11, size=64)
    for name, picture in zip(CASE_NAMES, pictures):
        Image.fromarray((picture * 255).round().astype(np.uint8)).save(root / name)
    return {CASES_ROOT_ENV: str(root), DB_ENV: str(tmp_path / "reviews.sqlite3")}


@contextmanager
def _tab(browser, server: Server, name: str) -> Iterator[App]:
    """A fresh browser context on the Review page; fails on console errors and exception boxes."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    tab = App(page=page, server=server)
    page.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: tab.problems.append(str(exc)))
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    try:
        page.goto(server.url + "/")
        tab.wait_idle()
        tab.open_page("Review")
        yield tab
        if server.pid:  # a server the test killed (pid 0) has nothing more to say
            tab.wait_idle()
            assert tab.exception_boxes() == [] and tab.errors() == []
            problems = tab.problems
            if missing and all("/media/" in url for url in missing):  # a replaced run's image (see conftest)
                problems = [p for p in problems if "status of 404" not in p and "Image source error" not in p]
            assert problems == [], (problems, missing)
    finally:
        try:
            tab.screenshot(f"review-{name}")
        finally:
            context.close()


def _sign_in(tab: App, reviewer: str) -> None:
    box = tab.page.get_by_label("Your name (reviewer)")
    box.fill(reviewer)
    box.press("Enter")
    tab.wait_idle()
    _explain(tab)


def _explain(tab: App) -> None:
    """Press Explain when the maps wait for it (a busy machine can make them look slow)."""
    if tab.main().get_by_role("button", name=re.compile(r"^Explain \(")).count():
        tab.main().get_by_role("button", name=re.compile(r"^Explain \(")).click()
        tab.wait_idle()
    tab.page.wait_for_selector('[data-testid="stForm"]')  # the maps are drawn, with their forms


def _cell(tab: App, title: str):
    """The column of one method's map (the innermost column holding its title and a form)."""
    main = tab.main()
    return (
        main.locator('[data-testid="stColumn"]')
        .filter(has=tab.page.get_by_text(title, exact=True))
        .filter(has=tab.page.locator('[data-testid="stForm"]'))
        .last
    )


def _judge(tab: App, judgement: str, note: str, *, wait: bool = True) -> None:
    cell = _cell(tab, METHOD)
    cell.get_by_text(judgement, exact=True).click()
    cell.get_by_label("Note").fill(note)
    cell.get_by_role("button", name="Save verdict").click()
    if wait:
        tab.wait_idle()


def _press(tab: App, label: str) -> None:
    """Click the page's button whose text holds ``label`` (its icon and key shortcut are text too)."""
    tab.main().get_by_role("button").filter(has_text=label).first.click()
    tab.wait_idle()


def _current_case(tab: App) -> str:
    """The case selectbox's label and shown value ("1 of 3: ward/case-1.png", a ✓ when judged)."""
    box = tab.main().locator('[data-testid="stSelectbox"]').filter(has=tab.page.get_by_text("Case", exact=True))
    inputs = box.locator("input")
    value = inputs.first.input_value() if inputs.count() else ""
    return f"{box.inner_text()} {value} {box.get_attribute('title') or ''} {box.text_content()}"


def _stored(db: str) -> list[tuple[str, str, str, str]]:
    return [(v.case.name, v.reviewer, v.judgement.value, v.note) for v in ReviewStore(db).history()]


def test_verdicts_survive_a_killed_server_and_a_restart_and_make_the_report(browser, review_env, tmp_path):
    db = review_env[DB_ENV]
    given: list[tuple[str, str, str, str]] = []
    with started_server("browser-review-server.log", env=review_env) as server:
        with _tab(browser, server, "before-kill") as tab:
            _sign_in(tab, "Dr Ada")
            assert "1 of 3: ward/case-1.png" in _current_case(tab)
            _judge(tab, "Plausible", "covers the shape; nothing on the background")
            given.append((CASE_NAMES[0], "Dr Ada", "plausible", "covers the shape; nothing on the background"))
            assert _cell(tab, METHOD).get_by_text("Dr Ada: plausible", exact=False).count() == 1
            _press(tab, "Next")
            _explain(tab)
            assert "2 of 3: ward/case-2.png" in _current_case(tab)
            _judge(tab, "Not plausible", "lights up the corner, not the object")
            given.append((CASE_NAMES[1], "Dr Ada", "not plausible", "lights up the corner, not the object"))
            tab.page.keyboard.press("n")  # the keyboard: N is the Next button
            tab.wait_idle()
            _explain(tab)
            assert "3 of 3: ward/case-10.png" in _current_case(tab)
            assert _stored(db) == given
            os.killpg(server.pid, signal.SIGKILL)  # in the middle of the review, the tab still open
            server.pid = 0
        assert _stored(db) == given, "a verdict given before the kill is missing"

    with (
        started_server("browser-review-server-2.log", env=review_env) as server,
        _tab(browser, server, "after-restart") as tab,
    ):
        _sign_in(tab, "Dr Ada")
        assert _cell(tab, METHOD).get_by_text("Dr Ada: plausible", exact=False).count() == 1
        assert "✓" in _current_case(tab)
        _press(tab, "Next")
        _explain(tab)
        assert _cell(tab, METHOD).get_by_text("lights up the corner", exact=False).count() == 1
        _press(tab, "Next")
        _explain(tab)
        _judge(tab, "Unsure", "faint; ask a colleague")
        given.append((CASE_NAMES[2], "Dr Ada", "unsure", "faint; ask a colleague"))
        assert _stored(db) == given
        with tab.page.expect_download() as download:
            _press(tab, "Report (PDF)")
        pdf = tmp_path / "review-report.pdf"
        download.value.save_as(pdf)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and page_count(data) == 3
    _maps_are_visible(pdf, tmp_path)


def _maps_are_visible(pdf: Path, folder: Path) -> None:
    """On every page, the Grad-CAM map (the picture after the model input) is drawn: many
    distinct, tinted colours where the layout puts it."""
    pages = rendered_pages(pdf, folder)
    assert len(pages) == 3
    for number, page in enumerate(pages, start=1):
        assert is_visible_map(map_area(page, 1, 2)), f"page {number}"


def test_two_sessions_judging_one_case_at_once_lose_nothing(browser, review_env):
    db = review_env[DB_ENV]
    with (
        started_server("browser-review-server-3.log", env=review_env) as server,
        _tab(browser, server, "ada") as ada,
        _tab(browser, server, "bob") as bob,
    ):
        _sign_in(ada, "Ada")
        _sign_in(bob, "Bob")
        _judge(ada, "Plausible", "ada's view", wait=False)
        _judge(bob, "Not plausible", "bob's view", wait=False)
        ada.wait_idle()
        bob.wait_idle()
        assert sorted(_stored(db)) == [
            (CASE_NAMES[0], "Ada", "plausible", "ada's view"),
            (CASE_NAMES[0], "Bob", "not plausible", "bob's view"),
        ]
        bob.page.goto(server.url + "/")  # a new session of the same browser
        bob.wait_idle()
        bob.open_page("Review")
        _sign_in(bob, "Bob")
        cell = _cell(bob, METHOD)
        assert cell.get_by_text("Ada: plausible", exact=False).count() == 1
        assert cell.get_by_text("Bob: not plausible", exact=False).count() == 1
