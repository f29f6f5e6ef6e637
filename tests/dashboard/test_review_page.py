"""The Review page in AppTest (cases, navigation, a saved verdict) and the launcher's review options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dashboard import launch
from tests.dashboard import apptest_support as support
from xaicore.data.shapes import generate
from xaicore.review.config import CASES_ROOT_ENV, DB_ENV
from xaicore.review.verdicts import ReviewStore


@pytest.fixture
def review_env(tmp_path, monkeypatch):
    root = tmp_path / "cases"
    root.mkdir()
    pictures, _ = generate(2, seed=4, size=64)
    for k, picture in enumerate(pictures, start=1):
        Image.fromarray((picture * 255).round().astype(np.uint8)).save(root / f"case-{k}.png")
    (root / "notes.txt").write_text("not a case")
    monkeypatch.setenv(CASES_ROOT_ENV, str(root))
    monkeypatch.setenv(DB_ENV, str(tmp_path / "reviews.sqlite3"))
    return tmp_path


def _case_box(at):
    return next(box for box in at.selectbox if box.label == "Case")


def test_the_review_page_steps_through_cases_and_saves_a_verdict(review_env):
    at = support.open_page(support.start(), "pages/review.py")
    assert not at.exception and support.errors(at) == []
    assert at.title[0].value == "Review"
    box = _case_box(at)
    assert box.options == ["1 of 2: case-1.png", "2 of 2: case-2.png"]
    assert any("notes.txt" in c for c in support.captions(at))
    next_button = next(b for b in at.button if b.label == "Next")
    next_button.click().run()
    assert _case_box(at).value == 1
    at.text_input[0].input("Ada").run()
    for _ in range(3):  # the maps start by themselves, or after Explain on a busy machine
        if at.radio(key="review.act.verdict.gradcam") is not None or not any(
            b.label.startswith("Explain (") for b in at.button
        ):
            break
        next(b for b in at.button if b.label.startswith("Explain (")).click().run()
    at.radio(key="review.act.verdict.gradcam").set_value("not plausible")
    at.text_area(key="review.act.note.gradcam").input("misses the object")
    form_button = next(b for b in at.button if b.label == "Save verdict")
    form_button.click().run()
    assert not at.exception and support.errors(at) == []
    (verdict,) = ReviewStore(review_env / "reviews.sqlite3").history()
    assert (verdict.case.name, verdict.reviewer, verdict.judgement.value, verdict.note) == (
        "case-2.png",
        "Ada",
        "not plausible",
        "misses the object",
    )
    assert any("Ada" in m.value and "not plausible" in m.value and "misses the object" in m.value for m in at.markdown)
    assert _case_box(at).options[1].endswith("✓")


def test_without_a_case_root_the_page_says_how_to_set_one(monkeypatch, tmp_path):
    monkeypatch.delenv(CASES_ROOT_ENV, raising=False)
    monkeypatch.setenv(DB_ENV, str(tmp_path / "r.sqlite3"))
    at = support.open_page(support.start(), "pages/review.py")
    assert not at.exception
    assert any("--cases-root" in i.value for i in at.info)


def test_the_launcher_hands_the_review_options_to_the_server(tmp_path, monkeypatch):
    monkeypatch.delenv(DB_ENV, raising=False)
    monkeypatch.delenv(CASES_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cases").mkdir()
    launch.review_environment("r.sqlite3", "cases")
    import os

    assert os.environ[DB_ENV] == str(tmp_path / "r.sqlite3")
    assert os.environ[CASES_ROOT_ENV] == str(tmp_path / "cases")
    with pytest.raises(SystemExit, match="not a folder"):
        launch.review_environment(None, "missing")


def test_an_uploaded_zip_is_a_case_list_without_its_unsafe_entries(review_env):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("b/scan-10.png", "b/scan-9.png", "../escape.png"):
            archive.writestr(name, (review_env / "cases" / "case-1.png").read_bytes())
    at = support.open_page(support.start(), "pages/review.py")
    at.radio(key="review.w.source").set_value("Upload a zip").run()
    at.file_uploader(key="review.act.zip").set_value(("ward.zip", buffer.getvalue(), "application/zip"))
    at.run()
    assert not at.exception and support.errors(at) == []
    assert _case_box(at).options == ["1 of 2: b/scan-9.png", "2 of 2: b/scan-10.png"]
    assert any("unsafe paths" in c and "escape.png" in c for c in support.captions(at))
