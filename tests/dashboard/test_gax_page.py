"""The GAX and AX / CO pages in Streamlit's AppTest.

GAX: run, the live line, the stored result, the slider (moving it changes the frame and
recomputes nothing), the downloads. AX / CO: a run over generated images, box plots and the
gap, the table, and a stopped run keeping its finished rows.

A hand-built model is made the session's model through the sidebar's checkpoint choice, so the
pages run the same with or without the trained default model.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import streamlit as st
import torch
from PIL import Image

import xaicore.confidence.co_sets
import xaicore.confidence.gax
from dashboard import state
from tests.dashboard import apptest_support as support
from tests.helpers.gax_models import conv_bundle, one_thread  # noqa: F401 (autouse)
from xaicore.confidence.gax import GaxResult
from xaicore.data import shapes
from xaicore.render import gax_view

GAX_PAGE = "pages/gax.py"
CO_PAGE = "pages/co_scores.py"
STEP = "gax.w.step"


def _stored(at, kind: str) -> list:
    store = at.session_state[state._STORE_KEY]
    return [value for key, value in store._items.items() if key[0] == kind]


def _bundle():
    bundle = conv_bundle(size=16, num_classes=len(shapes.CLASSES), seed=1, dtype=torch.float32)
    return dataclasses.replace(bundle, labels=tuple(shapes.CLASSES))


def _image_urls(at) -> list[str]:
    return [img.proto.imgs[0].url for img in at.main.image]


@pytest.fixture(scope="module")
def gax_page():
    """The GAX page after one run of 12 steps towards an unreachable target, counting runs."""
    calls = []
    original = xaicore.confidence.gax.run_gax

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    xaicore.confidence.gax.run_gax = counting
    try:
        at = support.use_model(support.start(), _bundle())
        at = support.open_page(at, GAX_PAGE)
        at.number_input(key="gax.w.target_co").set_value(1e6)
        at.number_input(key="gax.w.max_steps").set_value(12)
        at.button(key="gax.act.run").click()
        at.run()
        yield at, calls
    finally:
        xaicore.confidence.gax.run_gax = original


def test_run_stores_one_result_and_shows_the_last_step(gax_page):
    at, calls = gax_page
    assert not at.exception and support.errors(at) == []
    (result,) = _stored(at, "gax")
    assert isinstance(result, GaxResult) and len(calls) == 1
    assert calls[0]["target"] == at.session_state[state.TARGET_KEY] and calls[0]["max_steps"] == 12
    one = result[0]
    assert one.steps == 12 and not one.reached
    assert at.select_slider(key=STEP).value == 12
    assert f"Step 12 of 12 · CO score {one.co_curve[12]:.2f}" in support.captions(at)
    assert any("Did not reach CO 1e+06 within 12 steps" in w.value for w in at.warning)
    # R, G, B of the heatmap and of the change, each row with its colour bar
    assert len(at.main.image) == 8
    bars = [img.proto.imgs[0].alt for img in at.main.image if img.proto.imgs[0].alt.startswith("colour bar")]
    peak = float(np.abs(one.history.heatmap(len(one.history) - 1)).max())
    assert len(bars) == 2 and f"+{peak:.3g}" in bars[0]
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["data"][1]["x"] == [12]


def test_moving_the_slider_changes_the_frame_and_recomputes_nothing(gax_page):
    at, calls = gax_page
    (before,) = _stored(at, "gax")
    urls = _image_urls(at)
    at.select_slider(key=STEP).set_value(3).run()
    assert not at.exception and support.errors(at) == []
    (after,) = _stored(at, "gax")
    assert after is before and len(calls) == 1
    moved = _image_urls(at)
    assert moved[:3] != urls[:3] and moved[3:] != urls[3:]
    assert f"Step 3 of 12 · CO score {before[0].co_curve[3]:.2f}" in support.captions(at)
    heat = before[0].history.heatmap(3)
    peak = float(np.abs(heat).max())
    assert any(f"absolute maximum {peak:.3f}" in m.value for m in at.markdown)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][1]["x"] == [3] and spec["layout"]["shapes"][-1]["x0"] == 3


def test_downloads_hold_history_gif_and_record(gax_page):
    at, _ = gax_page
    (result,) = _stored(at, "gax")
    assert [b.label for b in at.download_button] == ["History (.npz)", "Evolution (GIF)", "Record (JSON)"]
    data = gax_view.evolution_gif(result[0])
    assert gax_view.gif_frame_count(data) == 13
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF"
    record = result.record()
    assert record["images"][0]["steps"] == 12
    assert record["provenance"]["model_fingerprint"] == at.session_state[state.MODEL_KEY].fingerprint


def test_co_page_scores_generated_images_with_box_plots_and_gaps():
    at = support.use_model(support.start(), _bundle())
    at = support.open_page(at, CO_PAGE)
    at.number_input(key="co.w.n").set_value(6)
    at.multiselect(key="co.w.methods").set_value(["saliency", "gradcam"])
    at.button(key="co.act.run").click()
    at.run()
    assert not at.exception and support.errors(at) == []
    (result,) = _stored(at, "co")
    assert result.complete and result.n_images == 6
    assert len(result.rows) == 6 * 2 * 2
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    boxes = json.loads(charts[0].proto.spec)["data"]
    assert [b["name"] for b in boxes] == ["correct", "wrong"]
    table = at.dataframe[-1].value
    assert len(table) == 24 and set(table["method"]) == {"saliency", "gradcam"}
    gaps = at.dataframe[0].value
    assert len(gaps) == 4
    assert [b.label for b in at.download_button] == ["Rows (CSV)", "Summary (JSON)"]


def test_co_page_keeps_rows_of_a_stopped_run(monkeypatch):
    original = xaicore.confidence.co_sets.iter_co_rows

    def stop_after_first(*args, **kwargs):
        for i, batch in enumerate(original(*args, **kwargs)):
            if i == 1:
                st.stop()  # what a rerun (the Stop button) does at the next Streamlit call
            yield batch

    at = support.use_model(support.start(), _bundle())
    at = support.open_page(at, CO_PAGE)
    at.number_input(key="co.w.n").set_value(20)
    at.multiselect(key="co.w.methods").set_value(["saliency"])
    monkeypatch.setattr(xaicore.confidence.co_sets, "iter_co_rows", stop_after_first)
    at.button(key="co.act.run").click()
    at.run()
    monkeypatch.setattr(xaicore.confidence.co_sets, "iter_co_rows", original)
    at.run()
    assert not at.exception and support.errors(at) == []
    assert _stored(at, "co") == []
    assert any("Stopped early: rows of 16 of 20 images" in w.value for w in at.warning)
    assert len(at.dataframe[-1].value) == 16 * 2
