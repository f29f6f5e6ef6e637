"""The Report card page in Streamlit's AppTest: run, table against the core, interruption and
resuming, downloads, and results of the other pages joining the card.

A hand-built 16x16 model with the shape classes is the session's model (see ``apptest_support``),
so the page runs the same with or without the trained default model.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import xaicore.evaluation.rows as evaluate_module
from dashboard import state
from tests.dashboard import apptest_support as support
from tests.helpers.explain_models import TinyConvNet, make_bundle
from xaicore.checks.sanity import run_sanity
from xaicore.data import shapes
from xaicore.data.evalsets import scene_set
from xaicore.evaluation.rows import Evaluation, evaluate, make_settings
from xaicore.metrics.faithfulness import RANDOM

PAGE = "pages/report.py"
W = "report.w."
SCENES = "Generated scenes (with masks)"
METHODS = ["saliency", "gradcam"]


def shapes_bundle(seed: int = 4):
    return make_bundle(
        TinyConvNet(seed=seed, classes=len(shapes.CLASSES)),
        input_size=(16, 16),
        cam_layer="net.features.3",
        labels=shapes.CLASSES,
    )


BUNDLE = shapes_bundle()


def _open(bundle=BUNDLE, *, scenes: int = 2, batch: int = 8):
    """A session on the Report card page with two generated scenes (four items) chosen."""
    at = support.use_model(support.start(), bundle)
    at.session_state[W + "source"] = SCENES
    at.session_state[W + "n"] = scenes
    at.session_state[W + "methods"] = METHODS
    at.session_state[W + "step"] = 0.25
    at.session_state[W + "batch"] = batch
    return support.open_page(at, PAGE)


def _press_run(at):
    return at.button(key="report.act.run").click().run()


def _evaluations(at) -> list[Evaluation]:
    return [value for key, value in at.session_state[state._STORE_KEY].items() if key[0] == "evaluation"]


def _reference(**kwargs):
    image_set = scene_set(2, seed=0)
    settings = make_settings(BUNDLE, image_set, methods=METHODS, step_fraction=0.25, **kwargs)
    return evaluate(BUNDLE, image_set, settings)


def test_nothing_runs_before_the_button_is_pressed():
    at = _open()
    assert not at.exception and support.errors(at) == []
    assert len(at.dataframe) == 0
    assert any("Press Run to evaluate 2 methods on 4 images" in i.value for i in at.info)


@pytest.fixture(scope="module")
def finished():
    return _press_run(_open())


def test_a_run_shows_the_summary_the_table_and_downloads(finished):
    at = finished
    assert not at.exception and support.errors(at) == []
    (evaluation,) = _evaluations(at)
    assert evaluation.summary.complete and len(evaluation.rows) == 4 * 3
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Saliency", "Grad-CAM", "Random control"]
    reference = _reference().summary.by_method()
    for method, (_, line) in zip([*METHODS, RANDOM], table.iterrows(), strict=True):
        expected = reference[method].metrics
        assert line["insertion AUC"] == pytest.approx(expected["insertion"].mean, abs=1e-9)
        assert line["relevance mass"] == pytest.approx(expected["mass"].mean, abs=1e-9)
        assert line["data-set images"] == 4
    assert set(table.columns) >= {
        "faithfulness (over 4 images)",
        "localization (over 4 images)",
        "insertion AUC 95% interval",
    }
    assert not [c for c in table.columns if "verdict" in c or "_" in c or c.endswith(" CI")]  # no raw names
    control = table.iloc[-1]
    assert control["faithfulness (over 4 images)"] == "—"  # the control has no verdict: a dash, not None
    text = "\n".join(m.value for m in at.markdown)
    assert "Data-set evaluation of test model on 4 images." in text
    assert "On faithfulness" in text or "On localization" in text
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert list(buttons) == ["Report (CSV)", "Report (JSON)", "Rows (CSV)"]
    assert not buttons["Rows (CSV)"].disabled


def test_a_finished_evaluation_is_reused(finished, monkeypatch):
    calls = []
    monkeypatch.setattr(evaluate_module, "attribute", lambda *a, **k: calls.append(1))
    at = _press_run(finished)
    assert calls == [] and not at.exception and len(_evaluations(at)) == 1


class Broken(Exception):
    pass


def test_an_interrupted_run_keeps_its_rows_and_continues(monkeypatch):
    at = _open(batch=2)
    real = evaluate_module.insertion_deletion
    seen = []

    def second_batch_breaks(*args, **kwargs):
        seen.append(1)
        if len(seen) == 2:
            raise Broken("the connection dropped")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "insertion_deletion", second_batch_breaks)
    at = _press_run(at)
    assert support.errors(at) == [state.UNEXPECTED] and _evaluations(at) == []
    at = at.run()  # the next rerun (Stop, a widget) shows the partial card
    warnings = [w.value for w in at.warning]
    assert any("2 of 4 images are done" in w for w in warnings)
    assert list(at.dataframe[0].value["data-set images"]) == [2, 2, 2]

    monkeypatch.setattr(evaluate_module, "insertion_deletion", real)
    counted: list[int] = []
    real_attribute = evaluate_module.attribute

    def counting(b, inputs, **kwargs):
        counted.append(int(inputs.shape[0]))
        return real_attribute(b, inputs, **kwargs)

    monkeypatch.setattr(evaluate_module, "attribute", counting)
    at = _press_run(at)
    assert not at.exception and support.errors(at) == [] and not at.warning
    assert counted == [2, 2]  # the second batch only, once per method
    (evaluation,) = _evaluations(at)
    reference = _reference(batch_size=2)
    assert evaluation.rows == tuple(
        r if r.runtime_s is None else type(r)(**{**r.__dict__, "runtime_s": e.runtime_s})
        for r, e in zip(reference.rows, evaluation.rows, strict=True)
    )


def test_results_of_the_other_pages_join_the_card():
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    sanity = run_sanity(BUNDLE, image, methods=["saliency", "guided_backprop"], seeds=(0,), keep_maps="none")
    foreign = run_sanity(shapes_bundle(seed=6), image, methods=["deconvolution"], seeds=(0,), keep_maps="none")
    at = support.use_model(support.start(), BUNDLE)
    store = state.ResultStore()
    store.put(("sanity", "a"), sanity)
    store.put(("sanity", "b"), foreign)  # another model's check: not on this card
    at.session_state[state._STORE_KEY] = store
    at.session_state[W + "methods"] = METHODS
    at = support.open_page(at, PAGE)
    assert not at.exception and support.errors(at) == []
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Saliency", "Guided Backprop"]
    for title, method in (("Saliency", "saliency"), ("Guided Backprop", "guided_backprop")):
        line = table[table["method"] == title].iloc[0]
        verdict = sanity.verdict(method)
        assert line["sanity: SSIM after randomizing the output layer"] == pytest.approx(verdict.value)
        assert line["sanity: images"] == 1
        shown = line["sanity check (from one image, 1 seed)"]
        assert shown == {"pass": "pass", "fail": "fail"}.get(verdict.status, "inconclusive")
    text = "\n".join(m.value for m in at.markdown)
    assert "On the sanity check" in text
    assert any("sanity check from the Sanity checks page" in c for c in support.captions(at))


def _zip_with_labels_and_masks() -> bytes:
    """Two labelled images (circle, star) and one unlabelled; the circle has an object mask."""
    rng = np.random.default_rng(3)

    def picture() -> bytes:
        return support.png_bytes(rng.integers(0, 256, (20, 20, 3)))

    mask = np.zeros((20, 20, 3), dtype=np.uint8)
    mask[5:15, 5:15] = 255
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("circle/a.png", picture())
        archive.writestr("circle/a.mask.png", support.png_bytes(mask))
        archive.writestr("star/b.png", picture())
        archive.writestr("c.png", picture())
    return buffer.getvalue()


def test_an_uploaded_zip_with_labels_and_a_mask():
    at = support.use_model(support.start(), BUNDLE)
    at.session_state[W + "source"] = "Upload a zip"
    at.session_state[W + "methods"] = ["saliency"]
    at.session_state[W + "step"] = 0.25
    at = support.open_page(at, PAGE)
    assert any("Upload a zip" in i.value for i in at.info)
    at.file_uploader(key="report.act.zip").set_value(("set.zip", _zip_with_labels_and_masks(), "application/zip"))
    at = _press_run(at.run())
    assert not at.exception and support.errors(at) == []
    (evaluation,) = _evaluations(at)
    rows = {(r.name, r.method): r for r in evaluation.rows}
    assert rows[("circle/a.png", "saliency")].label == 0 and rows[("star/b.png", "saliency")].label == 3
    assert (
        rows[("c.png", "saliency")].label is None
        and rows[("c.png", "saliency")].target == rows[("c.png", "saliency")].predicted
    )
    assert rows[("circle/a.png", "saliency")].relevance_mass is not None
    assert rows[("star/b.png", "saliency")].relevance_mass is None
    table = at.dataframe[0].value
    assert list(table["data-set images"]) == [3, 3]
