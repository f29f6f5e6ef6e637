"""CO scores over image sets (:mod:`xaicore.confidence.co_sets`): rows, gaps, stop, CSV and record,
hand-computed on the tiny linear model of the CO/AX tests."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from tests.helpers.co_models import BIAS, WEIGHT, grey, third_pixel
from tests.helpers.gax_models import linear_bundle, one_thread  # noqa: F401 (autouse)
from xaicore.confidence.co_sets import co_scores, iter_co_rows
from xaicore.errors import ParameterError


@pytest.fixture(scope="module")
def bundle():
    return linear_bundle(WEIGHT, BIAS, size=2)


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    array: np.ndarray
    label: int | None


ITEMS = [
    Item("a", grey(0.5), 0),  # predicted 0, correct, CO 3.75
    Item("b", grey(0.5), 1),  # predicted 0, wrong, CO 3.5 - 7 / 2 = 0
    Item("c", third_pixel(), 2),  # predicted 2, correct, CO 7.875
    Item("d", third_pixel(), None),  # predicted 2, no label
]


def test_co_scores_rows_and_gap(bundle):
    calls = []
    result = co_scores(
        bundle,
        ITEMS,
        methods=["saliency"],
        batch_size=3,
        progress=lambda done, total, m: calls.append((done, total, m)),
    )
    assert result.complete and result.n_images == 4
    assert calls == [(3, 4, "saliency"), (4, 4, "saliency")]
    assert len(result.rows) == 8
    add = {r.image: r for r in result.rows if r.variant == "x+h"}
    assert [add[k].co for k in "abcd"] == pytest.approx([3.75, 0.0, 7.875, 7.875], abs=1e-5)
    assert [add[k].correct for k in "abcd"] == [True, False, True, None]
    assert [add[k].predicted for k in "abcd"] == [0, 0, 2, 2]
    gap = next(g for g in result.gaps if g.variant == "x+h")
    assert (gap.n_correct, gap.n_wrong) == (2, 1)
    assert gap.mean_gap == pytest.approx((3.75 + 7.875) / 2 - 0.0, abs=1e-5)
    assert gap.median_gap == pytest.approx((3.75 + 7.875) / 2, abs=1e-5)
    times = next(g for g in result.gaps if g.variant == "x*h")
    mult = {r.image: r.co for r in result.rows if r.variant == "x*h"}
    assert times.mean_gap == pytest.approx((mult["a"] + mult["c"]) / 2 - mult["b"], abs=1e-9)


def test_gap_is_none_without_wrong_predictions(bundle):
    result = co_scores(bundle, ITEMS[:1], methods=["saliency"], variants=("x+h",))
    assert result.gaps[0].n_wrong == 0 and result.gaps[0].mean_gap is None and result.gaps[0].median_gap is None


def test_co_scores_stop_keeps_finished_rows(bundle):
    result = co_scores(bundle, ITEMS, methods=["saliency", "input_x_gradient"], batch_size=2, should_stop=lambda: True)
    assert not result.complete
    assert len(result.rows) == 4  # first two images, first method, both variants
    assert {r.method for r in result.rows} == {"saliency"}
    # the lazily iterated rows give the same, batch by batch
    first = next(iter_co_rows(bundle, ITEMS, methods=["saliency"], batch_size=2))
    assert first.rows == result.rows and (first.start, first.stop) == (0, 2)


def test_unavailable_method_is_skipped_with_its_reason(bundle):
    limited = dataclasses.replace(bundle, unavailable={"input_x_gradient": "not on this model"})
    result = co_scores(limited, ITEMS, methods=["saliency", "input_x_gradient"], batch_size=2)
    assert result.complete
    assert "not on this model" in result.skipped["input_x_gradient"]
    assert {r.method for r in result.rows} == {"saliency"}


def test_bad_labels_and_empty_sets_are_refused(bundle):
    with pytest.raises(ParameterError):
        co_scores(bundle, [Item("x", grey(0.5), 7)], methods=["saliency"])
    with pytest.raises(ParameterError):
        co_scores(bundle, [], methods=["saliency"])
    with pytest.raises(ParameterError):
        co_scores(bundle, ITEMS, methods=[])


def test_csv_and_record(bundle, tmp_path):
    result = co_scores(bundle, ITEMS, methods=["saliency"], variants=("x+h",))
    path = tmp_path / "rows.csv"
    result.write_csv(path)
    with path.open() as handle:
        lines = list(csv.DictReader(handle))
    assert [row["image"] for row in lines] == ["a", "b", "c", "d"]
    assert float(lines[2]["co"]) == pytest.approx(7.875, abs=1e-5)
    assert lines[3]["true"] == "" and lines[3]["correct"] == ""
    record = json.loads(json.dumps(result.record()))
    assert record["n_rows"] == 4 and record["complete"] is True
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint
    assert math.isclose(record["gaps"][0]["mean_gap"], 5.8125, abs_tol=1e-5)
