"""Report card rules on hand-made inputs, and the merge of real sanity / classes / CO results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.checks.discriminative import compare_classes
from xaicore.checks.sanity import run_sanity
from xaicore.confidence.co_sets import CoRow
from xaicore.confidence.co_sets import summarize as co_summarize
from xaicore.data import shapes
from xaicore.errors import ParameterError
from xaicore.evaluation.report import (
    OUTCOMES,
    SHORT_NAMES,
    TESTS,
    CardRow,
    Check,
    ClassesFigures,
    ReportRules,
    SanityFigures,
    build_report,
    classes_check,
    co_gap_check,
    co_gap_intervals,
    faithfulness_check,
    localization_check,
    sanity_check,
    summary_lines,
)
from xaicore.evaluation.rows import EvalRow, EvalSettings, MethodSummary, summarize
from xaicore.metrics.faithfulness import RANDOM
from xaicore.metrics.intervals import Interval

ABOVE = Interval(10, 0.1, 0.05, 0.15, 0.07, "t")
BELOW = Interval(10, -0.1, -0.15, -0.05, 0.07, "t")
OVERLAPS = Interval(10, 0.02, -0.03, 0.07, 0.07, "t")
ONE_VALUE = Interval(1, 0.2, None, None, None, "t")


def method_summary(method: str = "saliency", title: str = "Saliency", **vs_random: Interval) -> MethodSummary:
    return MethodSummary(method, title, 10, {"ok": 10}, {k: ABOVE for k in vs_random}, vs_random)


# ----------------------------------------------------------------------------- single rules


@pytest.mark.parametrize(
    ("vs", "outcome"),
    [
        ({"insertion": ABOVE, "deletion": BELOW}, "pass"),
        ({"insertion": BELOW, "deletion": BELOW}, "fail"),  # insertion worse than random pixels
        ({"insertion": ABOVE, "deletion": ABOVE}, "fail"),  # deletion worse than random pixels
        ({"insertion": ABOVE, "deletion": OVERLAPS}, "inconclusive"),
        ({"insertion": OVERLAPS, "deletion": OVERLAPS}, "inconclusive"),
        ({"insertion": ONE_VALUE, "deletion": BELOW}, "inconclusive"),
        ({"insertion": ABOVE}, "pass"),  # only what was measured counts
        ({"deletion": ABOVE}, "fail"),
        ({"mass": ABOVE}, "not measured"),
    ],
)
def test_faithfulness_rule(vs, outcome):
    check = faithfulness_check(method_summary(**vs))
    assert check.test == "faithfulness" and check.outcome == outcome and check.reason


def test_faithfulness_reasons_name_the_curves():
    assert "deletion AUC" in faithfulness_check(method_summary(insertion=ABOVE, deletion=ABOVE)).reason
    assert faithfulness_check(None).outcome == "not measured"


@pytest.mark.parametrize(
    ("vs", "outcome"),
    [
        ({"pointing": ABOVE, "mass": ABOVE, "rank": ABOVE}, "pass"),
        ({"pointing": OVERLAPS, "mass": ABOVE, "rank": ABOVE}, "inconclusive"),
        ({"pointing": ABOVE, "mass": BELOW, "rank": ABOVE}, "fail"),
        ({"mass": ABOVE}, "pass"),
        ({"insertion": ABOVE, "deletion": BELOW}, "not measured"),  # no masks: nothing to localize
    ],
)
def test_localization_rule(vs, outcome):
    assert localization_check(method_summary(**vs)).outcome == outcome


def test_sanity_rule_follows_the_verdict():
    assert sanity_check(SanityFigures("pass", 0.31, 0.9, "")).outcome == "pass"
    fail = sanity_check(SanityFigures("fail", 0.97, 0.9, ""))
    assert fail.outcome == "fail" and "0.97" in fail.reason and "at or above" in fail.reason
    undetermined = sanity_check(SanityFigures("undetermined", None, 0.9, "The trained map had no signal."))
    assert undetermined.outcome == "inconclusive" and "no signal" in undetermined.reason
    assert sanity_check(None).outcome == "not measured"


def test_classes_rule():
    assert classes_check(ClassesFigures(0.4, None, None, True), threshold=0.9).outcome == "pass"
    assert classes_check(ClassesFigures(0.95, None, None, True), threshold=0.9).outcome == "fail"
    assert classes_check(ClassesFigures(0.9, None, None, True), threshold=0.9).outcome == "fail"  # at the threshold
    assert classes_check(ClassesFigures(0.85, None, None, True), threshold=0.8).outcome == "fail"
    on_object = classes_check(ClassesFigures(0.4, 0.7, 0.1, True), threshold=0.9)
    assert on_object.outcome == "pass" and "70%" in on_object.reason
    assert classes_check(ClassesFigures(0.4, 0.1, 0.6, True), threshold=0.9).outcome == "fail"
    assert classes_check(ClassesFigures(0.4, None, None, False), threshold=0.9).outcome == "inconclusive"
    assert classes_check(None, threshold=0.9).outcome == "not measured"


def test_co_gap_rule():
    assert co_gap_check(ABOVE).outcome == "pass"
    assert co_gap_check(BELOW).outcome == "fail"
    assert co_gap_check(OVERLAPS).outcome == "inconclusive"
    assert co_gap_check(Interval(3, 1.0, None, None, None, "welch")).outcome == "inconclusive"
    assert co_gap_check(None).outcome == "not measured"


def test_co_gap_intervals_from_csv_like_rows_equal_scipy_welch():
    right = [12.0, 15.5, 9.0, 14.2]
    wrong = [3.0, 5.5, 1.0]
    rows = [{"method": "gradcam", "variant": "x+h", "co": str(v), "correct": "True"} for v in right]
    rows += [{"method": "gradcam", "variant": "x+h", "co": str(v), "correct": "False"} for v in wrong]
    rows += [
        {"method": "gradcam", "variant": "x*h", "co": "-100", "correct": "True"},  # other variant
        {"method": "gradcam", "variant": "x+h", "co": "50", "correct": ""},  # no true label
        {"method": "gradcam", "variant": "x+h", "co": "nan", "correct": "False"},
    ]
    gap = co_gap_intervals(rows)["gradcam"]
    ci = stats.ttest_ind(right, wrong, equal_var=False).confidence_interval(0.95)
    assert gap.mean == pytest.approx(np.mean(right) - np.mean(wrong))
    assert (gap.low, gap.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    other = co_gap_intervals(rows, variant="x*h")["gradcam"]
    assert other.mean is None  # one correct image, no wrong one


def test_co_gap_from_a_co_score_result():
    bundle = tiny_bundle()
    rows = [
        CoRow(
            image=f"i{k}",
            method="saliency",
            variant="x+h",
            co=float(v),
            predicted=0,
            true=t,
            correct=t == 0,
            status="ok",
        )
        for k, (v, t) in enumerate([(5, 0), (6, 0), (7, 0), (1, 1), (2, 1)])
    ]
    result = co_summarize(bundle, rows, methods=["saliency"], variants=["x+h"], n_images=5, complete=True)
    gap = co_gap_intervals(result)["saliency"]
    assert gap.mean == pytest.approx(6 - 1.5) and gap.side() == "above"


# ----------------------------------------------------------------------------- the card


def _hand_evaluation():
    """Two methods and the control on four images: Grad-CAM beats random, Guided Backprop does not."""
    settings = EvalSettings(
        model_name="hand model",
        model_fingerprint="f",
        data="hand",
        data_digest="d",
        n_images=4,
        methods=("gradcam", "guided_backprop"),
        metrics=("insertion", "deletion", "runtime"),
    )
    rows = []
    for i in range(4):
        common = dict(name=f"im{i}", status="ok", label=0, target=0, predicted=0, correct=True)
        rows.append(
            EvalRow(
                i, method="gradcam", insertion_auc=0.8 + 0.01 * i, deletion_auc=0.1 + 0.01 * i, runtime_s=0.01, **common
            )
        )
        rows.append(
            EvalRow(
                i,
                method="guided_backprop",
                insertion_auc=0.2 + 0.01 * i,
                deletion_auc=0.7 - 0.02 * i,
                runtime_s=0.02,
                **common,
            )
        )
        rows.append(
            EvalRow(i, method=RANDOM, insertion_auc=0.4 + 0.02 * (i % 2), deletion_auc=0.4 - 0.01 * i, **common)
        )
    return summarize(rows, settings)


SANITY_RECORD = {
    "methods": {
        "gradcam": {"verdict": {"status": "pass", "value": 0.21, "threshold": 0.9, "reason": ""}},
        "guided_backprop": {"verdict": {"status": "fail", "value": 0.96, "threshold": 0.9, "reason": ""}},
        "deconvolution": {"verdict": {"status": "fail", "value": 0.98, "threshold": 0.9, "reason": ""}},
    }
}
CLASSES_RECORD = {
    "methods": {
        "gradcam": {
            "mean_pair_ssim": 0.35,
            "status": {"circle": "ok", "star": "ok"},
            "relevance_share": {
                "circle": {"on_object": 0.8, "on_others": 0.05},
                "star": {"on_object": 0.6, "on_others": None},
            },
        },
        "guided_backprop": {"mean_pair_ssim": 0.97, "status": {"circle": "ok", "star": "ok"}},
    }
}


def test_the_card_merges_every_source_and_says_so_in_plain_words():
    card = build_report(
        _hand_evaluation(),
        sanity=SANITY_RECORD,
        classes=CLASSES_RECORD,
        image_names={"sanity": "shape: star", "classes": "scene: circle + star"},
    )
    rows = card.by_method()
    assert [r.method for r in card.rows] == ["gradcam", "guided_backprop", "deconvolution"]
    assert rows["gradcam"].outcome("faithfulness") == "pass"
    assert rows["guided_backprop"].outcome("faithfulness") == "fail"
    assert rows["deconvolution"].outcome("faithfulness") == "not measured"
    assert rows["gradcam"].classes.on_object == pytest.approx(0.7) and rows["gradcam"].classes.on_others == 0.05
    assert rows["guided_backprop"].outcome("classes") == "fail"
    assert [r.outcome("co_gap") for r in card.rows] == ["not measured"] * 3
    assert card.summary == (
        "Data-set evaluation of hand model on 4 images.",
        "On faithfulness (insertion/deletion against random pixels), over 4 images: Grad-CAM passes; "
        "Guided Backprop fails.",
        "On the sanity check (the map changes when the model's weights are randomized), from one image: "
        "shape: star: Grad-CAM passes; Guided Backprop and Deconvolution fail.",
        "On class-discriminativeness (different maps for different classes), from one image: scene: circle + star: "
        "Grad-CAM passes; Guided Backprop fails.",
        "Figures of different scope: faithfulness over 4 images; but the sanity check from one image: shape: star; "
        "class-discriminativeness from one image: scene: circle + star. A single image is an example, not a "
        "measurement over a data set.",
        "Passes every test that was measured: Grad-CAM (not measured: localization and the CO-score gap).",
        "Fails at least one test: Guided Backprop and Deconvolution.",
    )


def test_table_csv_and_record():
    card = build_report(_hand_evaluation(), sanity=SANITY_RECORD)
    table = card.table()
    assert [line["method"] for line in table] == ["gradcam", "guided_backprop", "deconvolution", RANDOM]
    first = table[0]
    assert first["faithfulness verdict"] == "pass" and first["SSIM after output layer randomized"] == 0.21
    assert first["insertion AUC"] == pytest.approx(0.815) and first["insertion AUC low"] < 0.815
    assert first["insertion AUC minus random"] == pytest.approx(0.815 - 0.41)
    assert "faithfulness verdict" not in table[-1]  # the control has figures, no verdicts
    lines = card.csv_text().splitlines()
    assert lines[0].startswith("method,title,images,ok,insertion AUC") and len(lines) == 5
    record = json.loads(json.dumps(card.record(), allow_nan=False))
    assert record["summary"] == list(card.summary) and set(record["rules"]) == set(TESTS)
    assert card.markdown().startswith("# Report card\n\n- Data-set evaluation")


def test_an_unfinished_evaluation_is_stated():
    evaluation = _hand_evaluation()
    partial = summarize([], evaluation.settings)
    card = build_report(partial, sanity=SANITY_RECORD)
    assert card.summary[0] == "Data-set evaluation of hand model on 0 of 4 images (the run is not finished)."


def test_nothing_to_report_is_refused():
    with pytest.raises(ParameterError, match="Nothing to report"):
        build_report()
    with pytest.raises(ParameterError):
        build_report(sanity=["not", "a", "record"])


def test_rules_are_checked():
    with pytest.raises(ParameterError):
        ReportRules(discriminative_threshold=0.0)
    card = build_report(classes=CLASSES_RECORD, rules=ReportRules(discriminative_threshold=0.3))
    assert card.by_method()["gradcam"].outcome("classes") == "fail"


# ----------------------------------------------------------------------------- real results


def test_real_sanity_and_classes_results_feed_the_card():
    bundle = tiny_bundle(num_classes=len(shapes.CLASSES), size=16)
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    sanity = run_sanity(bundle, image, methods=["saliency", "guided_backprop"], seeds=(0,), keep_maps="none")
    classes = compare_classes(bundle, image, methods=["saliency", "guided_backprop"], classes=(0, 1))
    card = build_report(sanity=sanity, classes=classes)
    for method in ("saliency", "guided_backprop"):
        verdict = sanity.verdict(method)
        row = card.by_method()[method]
        assert row.sanity.ssim_output_layer == pytest.approx(verdict.value)
        expected = {"pass": "pass", "fail": "fail"}.get(verdict.status, "inconclusive")
        assert row.outcome("sanity") == expected
        assert row.classes.pair_ssim == pytest.approx(classes.pair_ssim(method))
    assert card.by_method()["saliency"].title == "Saliency"


# ----------------------------------------------------------------------------- summary invariants


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(OUTCOMES), min_size=len(TESTS), max_size=len(TESTS)), min_size=1, max_size=5))
def test_summary_lists_each_method_where_its_outcomes_put_it(outcomes):
    rows = [
        CardRow(
            f"m{k}",
            f"Method {k}",
            None,
            None,
            None,
            None,
            {t: Check(t, o, "") for t, o in zip(TESTS, row, strict=True)},
        )
        for k, row in enumerate(outcomes)
    ]
    lines = summary_lines(rows)
    assert not any("the image" in line.lower() for line in lines)  # no scopes given: none invented
    measured = [r for r in rows if any(r.outcome(t) != "not measured" for t in TESTS)]
    if not measured:
        assert lines == ["No test has a result yet."]
        return
    trusted = [r for r in measured if all(r.outcome(t) in ("pass", "not measured") for t in TESTS)]
    failing = [r.title for r in measured if any(r.outcome(t) == "fail" for t in TESTS)]
    tested = [t for t in TESTS if any(r.outcome(t) != "not measured" for r in rows)]
    groups = {tuple(t for t in TESTS if r.outcome(t) == "not measured") for r in trusted}
    assert len(lines) == len(tested) + max(1, len(groups)) + bool(failing)
    for test, line in zip(tested, lines, strict=False):
        for r in rows:
            assert (r.title in line) == (r.outcome(test) != "not measured")
    overall = lines[len(tested) : len(lines) - bool(failing)]
    if trusted:
        for r in trusted:
            (line,) = [line for line in overall if r.title in line]
            missing = [SHORT_NAMES[t] for t in TESTS if r.outcome(t) == "not measured"]
            if missing:  # never "passes every test" while a test was not measured; name them
                assert "every test that was measured" in line and line.endswith(f"(not measured: {_listing(missing)}).")
            else:
                assert line.startswith(("Passes every test: ", "Pass every test: "))
    else:
        assert overall == ["No method passes every test that was measured."]
    if failing:
        assert lines[-1] == "Fails at least one test: " + _listing(failing) + "."


def _listing(names):
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def test_display_table_has_interval_text_and_numeric_means():
    card = build_report(_hand_evaluation())
    shown = card.table(interval_text=True)[0]
    numbers = card.table()[0]
    assert shown["insertion AUC"] == numbers["insertion AUC"]
    assert shown["insertion AUC 95% CI"] == f"[{numbers['insertion AUC low']:.3g}, {numbers['insertion AUC high']:.3g}]"
    assert "insertion AUC low" not in shown


def test_every_figure_says_how_many_images_it_comes_from():
    co_rows = [
        CoRow(
            image=f"img{i}",
            method="gradcam",
            variant="x+h",
            co=float(i),
            predicted=0,
            true=0 if i < 3 else 1,
            correct=i < 3,
            status="ok",
        )
        for i in range(5)
    ]
    co = co_summarize(tiny_bundle(), co_rows, methods=["gradcam"], variants=["x+h"], n_images=5, complete=True)
    card = build_report(_hand_evaluation(), sanity=SANITY_RECORD, co=co, image_names={"sanity": "photo: chelsea"})
    assert card.scopes == {
        "faithfulness": "over 4 images",
        "localization": "over 4 images",
        "sanity": "from one image: photo: chelsea",
        "co_gap": "over 5 images",
    }
    sentences = {line.split(":")[0]: line for line in card.summary}
    assert any(
        line.startswith("On the CO-score gap (confidence gain separates right from wrong predictions), over 5 images: ")
        for line in card.summary
    )
    assert "On the sanity check (the map changes when the model's weights are randomized), from one image" in sentences
    line = next(line for line in card.table() if line["method"] == "gradcam")
    assert line["images"] == 4 and line["sanity images"] == 1
    assert (line["CO images correct"], line["CO images wrong"]) == (3, 2)
    assert card.record()["methods"][0]["co_images"] == {"correct": 3, "wrong": 2}
    # a sanity record over several images and seeds says so
    over_two = {**SANITY_RECORD, "targets": [0, 1], "seeds": [0]}
    assert build_report(sanity=over_two).scopes == {"sanity": "over 2 images, 1 seed"}
