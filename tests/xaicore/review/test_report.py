"""The review report: drawn again from the database alone, one page per case, text escaped."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.pdf_pages import is_visible_map, map_area, page_count, rendered_pages
from xaicore.cli.main import main as xai
from xaicore.explainers.results import Prediction
from xaicore.render import heatmaps
from xaicore.review.report import REVIEW_VIEW, build_review_report, html_text, pdf_bytes, write_report
from xaicore.review.verdicts import CaseRef, ReviewedMap, ReviewStore


def _map(method: str, k: int, *, attribution: np.ndarray | None) -> ReviewedMap:
    yy, xx = np.mgrid[:16, :16]
    image = np.stack([yy / 15, xx / 15, np.full((16, 16), 0.5)], axis=-1).astype(np.float32)
    return ReviewedMap(
        model_name="default",
        model_fingerprint=f"{k:02d}" * 32,
        method=method,
        title=method.replace("_", " ").title(),
        params={"steps": 4} if method == "integrated_gradients" else {},
        seed=k,
        baseline="black",
        target=1,
        target_label="square",
        predictions=(Prediction(1, "square", 0.875), Prediction(0, "circle", 0.0625)),
        status="ok" if attribution is not None else "unavailable",
        image=image,
        attribution=attribution,
        provenance={"versions": {"torch": "2.14.1", "xaicore": "0.2.0", "python": "3.11.2"}},
    )


def _blob(k: int) -> np.ndarray:
    yy, xx = np.mgrid[:16, :16]
    bump = np.exp(-((yy - 4 - k) ** 2 + (xx - 8) ** 2) / 8.0) - 0.3 * np.exp(-((yy - 12) ** 2 + (xx - 3) ** 2) / 4.0)
    return np.repeat(bump[None].astype(np.float32), 3, axis=0) / 3


@pytest.fixture
def store(tmp_path) -> ReviewStore:
    store = ReviewStore(tmp_path / "reviews.sqlite3")
    for k in range(3):
        case = CaseRef("/cases", f"case-{k}.png", f"{k:064x}")
        store.record(case, _map("saliency", k, attribution=_blob(k)), reviewer="Ada", judgement="plausible")
        store.record(case, _map("gradcam", k, attribution=_blob(k + 2)), reviewer="Ada", judgement="unsure")
        if k == 1:
            store.record(
                case,
                _map("gradcam", k, attribution=_blob(k + 2)),
                reviewer="Ada",
                judgement="not plausible",
                note="<script>alert(1)</script> costs $5 & more",
            )
            store.record(case, _map("lrp", k, attribution=None), reviewer="Bob", judgement="unsure")
    return store


def test_each_case_page_draws_its_stored_maps_again(store):
    report = build_review_report(store)
    assert [p.case.name for p in report.pages] == ["case-0.png", "case-1.png", "case-2.png"]
    page = report.pages[1]
    assert page.prediction == "square (87.5%)" and page.target == "class square (index 1)"
    assert [m.method for m in page.maps] == ["saliency", "gradcam", "lrp"]
    gradcam = page.maps[1]
    expected = heatmaps.heatmap_tile(_blob(3), mode="all", image=_map("gradcam", 1, attribution=None).image)
    assert np.array_equal(gradcam.tile, expected.rgb)
    assert np.array_equal(gradcam.colorbar, heatmaps.colorbar(expected.clip, mode="all", width=256, alpha=0.8))
    assert gradcam.colorbar_text == heatmaps.colorbar_text(expected.clip, percentile=REVIEW_VIEW.percentile)
    assert [(v.reviewer, v.judgement.value) for v in gradcam.latest] == [("Ada", "not plausible")]
    assert gradcam.earlier == 1 and len(gradcam.history) == 2
    lrp = page.maps[2]
    assert lrp.colorbar is None and lrp.colorbar_text == "unavailable"
    assert np.all(lrp.tile == heatmaps.NEUTRAL_GREY)
    assert page.models[0] == ("default", "01" * 32)
    assert page.versions == {"xaicore": "0.2.0", "torch": "2.14.1", "python": "3.11.2"}


def test_the_html_escapes_every_note_and_holds_every_picture(store):
    text = html_text(build_review_report(store))
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; costs $5 &amp; more" in text
    assert text.count("<section class='case'>") == 3
    assert text.count("data:image/png;base64,") == 3 + 7 + 6  # 3 inputs, 7 maps, 6 colour bars
    assert "01" * 32 in text and "1 earlier verdict in the history" in text


def test_the_pdf_has_one_page_per_case_and_is_the_same_when_made_again(store):
    first = pdf_bytes(build_review_report(store, created="2026-01-01T00:00:00+00:00"))
    again = pdf_bytes(build_review_report(store, created="2026-01-01T00:00:00+00:00"))
    assert first.startswith(b"%PDF") and page_count(first) == 3
    assert first == again
    one = build_review_report(store, cases=[CaseRef("/cases", "case-2.png", f"{2:064x}")])
    assert page_count(pdf_bytes(one)) == 1


def test_the_pdf_page_shows_the_maps_where_the_layout_puts_them(store, tmp_path):
    _, pdf = write_report(build_review_report(store), tmp_path)
    pages = rendered_pages(pdf, tmp_path)
    assert len(pages) == 3
    second = pages[1]  # the model input, then saliency, Grad-CAM and the unavailable LRP map
    assert is_visible_map(map_area(second, 1, 4)) and is_visible_map(map_area(second, 2, 4))
    assert not is_visible_map(map_area(second, 3, 4))  # the grey tile of a map without values


def test_the_command_writes_the_report_from_the_database(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert xai(["review-report", str(store.path), "--out", str(out)]) == 0
    assert "3 cases written" in capsys.readouterr().out
    assert page_count((out / "review-report.pdf").read_bytes()) == 3
    assert "case-1.png" in (out / "review-report.html").read_text()
    assert xai(["review-report", str(store.path), "--out", str(out), "--case", "case-1.png"]) == 0
    assert page_count((out / "review-report.pdf").read_bytes()) == 1


def test_the_command_refuses_a_missing_or_empty_database(tmp_path, capsys):
    assert xai(["review-report", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path)]) == 2
    assert "no review database" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite3").exists()
    ReviewStore(tmp_path / "empty.sqlite3")
    assert xai(["review-report", str(tmp_path / "empty.sqlite3"), "--out", str(tmp_path)]) == 2
    assert "holds no verdict" in capsys.readouterr().err
    assert xai(["review-report", str(tmp_path / "empty.sqlite3"), "--out", str(tmp_path), "--case", "x"]) == 2
