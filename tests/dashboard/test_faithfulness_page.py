"""The Faithfulness page in Streamlit's AppTest: curves, AUC table, step preview, reuse, downloads.

A hand-built model is made the session's model through the sidebar's checkpoint choice (see
``apptest_support``), so the page runs the same with or without the trained default model.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from dashboard import state
from tests.dashboard import apptest_support as support
from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.metrics.faithfulness import RANDOM, FaithfulnessResult

PAGE = "pages/faithfulness.py"
METHODS = "faith.w.methods"
STEP = "faith.w.step"
CHOSEN = ["saliency", "gradcam"]


def _stored(at, kind: str) -> list:
    store = at.session_state[state._STORE_KEY]
    return [value for key, value in store._items.items() if key[0] == kind]


def _open(bundle, methods: list[str]):
    """A session on the Faithfulness page with ``bundle`` and ``methods`` chosen beforehand."""
    at = support.use_model(support.start(), bundle)
    at.session_state[METHODS] = methods
    at.session_state["faith.w.methods_model"] = bundle.fingerprint
    return support.open_page(at, PAGE)


def _values(encoded) -> np.ndarray:
    """Plotly's JSON array: a plain list, or a base64 typed array {"dtype", "bdata"}."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=np.dtype(encoded["dtype"]))
    return np.asarray(encoded, dtype=np.float64)


def _chart_data(at) -> dict[str, list[dict]]:
    charts = at.get("plotly_chart")
    return {
        json.loads(c.proto.spec)["layout"]["title"]["text"].split(":")[0]: json.loads(c.proto.spec)["data"]
        for c in charts
    }


@pytest.fixture(scope="module")
def page():
    return _open(tiny_bundle(seed=0, size=16), CHOSEN)


def test_page_draws_both_curves_the_auc_table_and_the_preview(page):
    at = page
    assert not at.exception and support.errors(at) == []
    (result,) = _stored(at, "faithfulness")
    assert isinstance(result, FaithfulnessResult)
    assert [c.method for c in result.curves] == [*CHOSEN, RANDOM]
    assert result.params["background"] == "blur" and result.params["step_pixels"] == 3  # 1 % of 256
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Saliency", "Grad-CAM", "Random order (control)"]
    np.testing.assert_allclose(table["insertion AUC"], [c.insertion_auc[0] for c in result.curves])
    np.testing.assert_allclose(table["deletion AUC"], [c.deletion_auc[0] for c in result.curves])
    assert table["vs random"].iloc[-1] == "control"
    charts = _chart_data(at)
    assert sorted(charts) == ["Deletion", "Insertion"]
    for kind, traces in charts.items():
        assert len(traces) == 3
        assert traces[-1]["line"]["dash"] == "dash" and "dash" not in (traces[0].get("line") or {})
        for trace, curves in zip(traces, result.curves):
            np.testing.assert_allclose(_values(trace["y"]), getattr(curves, kind.lower())[0])
            np.testing.assert_allclose(_values(trace["x"]), result.fractions * 100)
    image_captions = [img.proto.imgs[0].caption for img in at.main.image]
    assert image_captions[0] == "image"
    p0 = result.get("saliency").insertion[0][0]
    assert image_captions[1] == (
        f"insertion: 0 pixels (0%) of the image put onto the blurred image (Gaussian, sigma 2 px), p = {p0:.3f}"
    )


def test_moving_the_step_redraws_from_the_stored_ranks(page):
    at = page
    (before,) = _stored(at, "faithfulness")
    at.selectbox(key="faith.w.preview").set_value("gradcam")
    at.slider(key=STEP).set_value(10).run()
    assert not at.exception
    (after,) = _stored(at, "faithfulness")
    assert after is before  # nothing recomputed
    k = int(before.steps[10])
    captions = [img.proto.imgs[0].caption for img in at.main.image]
    deletion = before.get("gradcam").deletion[0][10]
    assert captions[2] == (
        f"deletion: {k} pixels ({100 * k / 256:.0f}%) replaced by the blurred image "
        f"(Gaussian, sigma 2 px), p = {deletion:.3f}"
    )
    lines = [s for c in at.get("plotly_chart") for s in json.loads(c.proto.spec)["layout"]["shapes"]]
    assert all(s["x0"] == pytest.approx(100 * k / 256) for s in lines) and len(lines) == 2


def test_maps_are_shared_with_the_explain_page(page):
    at = page
    explained = {r.methods[0].method: r for r in _stored(at, "explain")}
    assert sorted(explained) == sorted(CHOSEN)
    at.session_state["explain.w.auto"] = True
    at = support.open_page(at, "pages/explain.py")
    at.multiselect(key="explain.w.methods").set_value(CHOSEN).run()
    assert not at.exception
    again = {r.methods[0].method: r for r in _stored(at, "explain")}
    assert all(again[m] is explained[m] for m in CHOSEN)  # same keys: not run a second time


def test_downloads_and_the_record_name_the_model(page):
    at = support.open_page(page, PAGE)
    (result,) = _stored(at, "faithfulness")
    assert [b.label for b in at.download_button] == ["Curves (CSV)", "Record (JSON)"]
    bundle = at.session_state[state.MODEL_KEY]
    assert result.provenance.model_fingerprint == bundle.fingerprint
    assert result.target[0] == at.session_state[state.TARGET_KEY]
    image = at.session_state[state.IMAGE_KEY]
    np.testing.assert_allclose(result.images[0], bundle.to_input(image.array)[0].permute(1, 2, 0).numpy())


def test_no_signal_and_numerical_errors_are_reported_not_ranked():
    at = _open(support.degenerate_bundle(), ["saliency", "gradcam"])
    at.selectbox(key="xai.w.target").set_value(0).run()  # class 0: every attribution is zero
    assert not at.exception and support.errors(at) == []
    table = at.dataframe[0].value
    assert list(table["vs random"]) == ["control"]  # the zero maps are not ranked
    left_out = [c for c in support.captions(at) if "is left out" in c]
    assert len(left_out) == 2 and all("no signal" in c for c in left_out)
    at.selectbox(key="xai.w.target").set_value(1).run()  # class 1: NaN gradients
    assert not at.exception and support.errors(at) == []
    left_out = [c for c in support.captions(at) if "is left out" in c]
    assert any("Saliency" in c and "numerical error" in c for c in left_out)
    methods = [c.method for c in _stored(at, "faithfulness")[-1].curves]
    assert "saliency" not in methods and RANDOM in methods
