"""The Explain page in Streamlit's AppTest: runs, caching, degenerate maps, downloads, errors.

Uploads go through the sidebar's real ``st.file_uploader`` (AppTest can set its files); a
hand-built model is made the session's model through the sidebar's checkpoint choice
(see ``apptest_support``).
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from dashboard import state
from dashboard.render import tiles as render
from tests.dashboard import apptest_support as support
from xaicore.data.images import image_hash
from xaicore.explainers.registry import get_method, list_methods
from xaicore.explainers.results import MethodResult, Status
from xaicore.models.bundle import fingerprint
from xaicore.render import heatmaps

PAGE = "pages/explain.py"
METHODS = "explain.w.methods"  # the page's method multiselect
FAST = ["saliency", "input_x_gradient", "gradcam", "guided_backprop", "integrated_gradients"]


def _stored(at) -> list:
    """The explanations in the session's result store, oldest first."""
    store = at.session_state[state._STORE_KEY]
    return [value for key, value in store._items.items() if key[0] == "explain"]


def _open(*, auto: bool = False):
    """A new session on the Explain page; without automatic runs nothing is computed yet."""
    at = support.start()
    at.session_state["explain.w.auto"] = auto
    return support.open_page(at, PAGE)


def _explain(at, methods: list[str]):
    """Choose ``methods`` on the Explain page and press Run."""
    at.multiselect(key=METHODS).set_value(methods)
    return _run(at)


def _run(at):
    at.button(key="explain.act.run").click()
    return at.run()


@pytest.fixture(scope="module")
def sample_page():
    """The Explain page on the first sample with the default model, every method run (Run
    pressed: on a busy machine the page may leave a slow method waiting for it)."""
    return _run(support.open_page(support.start(), PAGE))


def test_explain_page_runs_every_available_method_on_a_sample(sample_page):
    at = sample_page
    assert not at.exception and support.errors(at) == []
    bundle = at.session_state[state.MODEL_KEY]
    available = [m for m in list_methods() if m not in bundle.unavailable]
    stored = _stored(at)
    assert sorted(r.methods[0].method for r in stored) == sorted(available)
    image = at.session_state[state.IMAGE_KEY]
    target = at.session_state[state.TARGET_KEY]
    assert all(r.image_hash == image.hash and r.target == target for r in stored)
    # One tile per method, each with its runtime and status line, plus the image and the model
    # input; every map that has a scale has its colour bar.
    status_lines = [c for c in support.captions(at) if " ms · " in c]
    assert len(status_lines) == len(available)
    scaled = sum(1 for r in stored if r.methods[0].status is Status.OK)
    assert len(at.main.image) == len(available) + 2 + scaled
    assert any("red: evidence for the class" in c for c in support.captions(at))


def test_contrast_sets_the_clip_value_recorded_in_the_json(sample_page):
    at = sample_page
    assert at.slider(key="explain.w.contrast").value == heatmaps.DEFAULT_PERCENTILE
    at.slider(key="explain.w.contrast").set_value(95.0).run()
    assert not at.exception and support.errors(at) == []
    result = render.combine_results(_stored(at))
    record = render.record_with_view(result, view="all", channel="sum", alpha=0.8, percentile=95.0)
    assert record["methods"] == result.record()["methods"]  # the computed numbers are untouched
    assert record["view"]["clip_percentile"] == 95.0
    for m in result.methods:
        if m.status is Status.OK:
            expected = np.percentile(np.abs(m.attribution.sum(axis=0, dtype=np.float64)), 95.0)
            assert record["view"]["clip_values"][m.method] == pytest.approx(expected, rel=1e-12)


def test_top_five_predictions_are_shown(sample_page):
    table = sample_page.dataframe[0].value
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert list(table["probability"]) == sorted(table["probability"], reverse=True)
    assert table["class"][0] == sample_page.session_state[state.TARGET_KEY]


def test_rerun_and_view_changes_reuse_stored_results(sample_page):
    at = sample_page
    before = {id(r) for r in _stored(at)}
    at.run()
    at.radio(key="explain.w.view").set_value("positive").run()
    at.slider(key="explain.w.alpha").set_value(0.3).run()
    assert {id(r) for r in _stored(at)} == before
    assert not at.exception and support.errors(at) == []


def test_downloads_hold_the_grid_the_raw_attributions_and_the_record(sample_page):
    at = sample_page
    assert [b.label for b in at.download_button][-3:] == ["Grid (PNG)", "Attributions (.npz)", "Record (JSON)"]
    result = render.combine_results(_stored(at))
    with np.load(io.BytesIO(render.npz_bytes(result.attributions()))) as npz:
        assert sorted(npz.files) == sorted(m.method for m in result.methods if m.attribution is not None)
        for m in result.methods:
            if m.attribution is not None:
                np.testing.assert_array_equal(npz[m.method], m.attribution)
    record = json.loads(render.json_bytes(result.record()))
    bundle = at.session_state[state.MODEL_KEY]
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint
    assert [m["method"] for m in record["methods"]] == [m.method for m in result.methods]
    png = Image.open(io.BytesIO(render.grid_png(result, view="all", alpha=0.5, percentile=97.0)))
    expected = heatmaps.grid_image(result, mode="all", overlay_image=True, alpha=0.5, percentile=97.0)
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), expected)


def test_explain_page_runs_on_an_uploaded_png():
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    at = support.upload_image(_open(), "upload.png", support.png_bytes(pixels))
    at.multiselect(key=METHODS).set_value(["saliency", "gradcam"]).run()
    assert support.errors(at) == [] and not at.exception
    assert any("Press Run" in i.value for i in at.info)  # automatic runs are off
    at = _run(at)
    expected_hash = image_hash(pixels.astype(np.float32) / 255.0)
    fresh = [r for r in _stored(at) if r.image_hash == expected_hash]
    assert sorted(r.methods[0].method for r in fresh) == ["gradcam", "saliency"]
    assert all(r.methods[0].status is Status.OK for r in fresh)


def test_one_forward_pass_for_the_predictions_and_one_explain_call_per_image(monkeypatch):
    """A new image costs one plain forward pass (the predictions the sidebar, the table and every
    explanation share) and one ``explain`` call for all the chosen methods; a rerun costs neither."""
    from xaicore.explainers import api

    methods = ["saliency", "input_x_gradient", "gradcam", "guided_backprop", "deconvolution", "smoothgrad"]
    at = _open()
    at.multiselect(key=METHODS).set_value(methods).run()
    bundle = at.session_state[state.MODEL_KEY]
    plain: list[int] = []  # forward passes of the model made for no gradient: predictions
    calls: list[tuple[str, ...]] = []
    real = api.explain

    def counted(*args, methods, **kwargs):
        calls.append(tuple(methods))
        return real(*args, methods=methods, **kwargs)

    def forward(_module, inputs, _output) -> None:
        if not inputs[0].requires_grad:
            plain.append(int(inputs[0].shape[0]))

    monkeypatch.setattr(api, "explain", counted)
    handle = bundle.model.register_forward_hook(forward)
    try:
        pixels = np.random.default_rng(5).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        at = support.upload_image(at, "counted.png", support.png_bytes(pixels))
        assert plain == [1] and calls == []  # the sidebar's predictions; nothing explained yet
        at = _run(at)
        assert not at.exception and support.errors(at) == []
        assert plain == [1] and calls == [tuple(methods)]
        fresh = [r for r in _stored(at) if r.image_hash == image_hash(pixels.astype(np.float32) / 255.0)]
        assert sorted(r.methods[0].method for r in fresh) == sorted(methods)
        image = at.session_state[state.IMAGE_KEY]
        key = state.result_key("predictions", fingerprint=bundle.fingerprint, image=image.hash, k=5)
        shown = at.session_state[state._STORE_KEY].get(key)
        assert shown and all(r.predictions == shown for r in fresh)  # the sidebar's, not computed again
        at = at.run()
        assert plain == [1] and calls == [tuple(methods)]
    finally:
        handle.remove()


def test_only_missing_methods_run_when_the_selection_grows():
    at = _explain(_open(), ["saliency"])
    first = {r.methods[0].method: r for r in _stored(at)}
    at = _explain(at, ["saliency", "gradcam"])
    now = {r.methods[0].method: r for r in _stored(at)}
    assert now["saliency"] is first["saliency"]
    assert "gradcam" in now


def test_degenerate_maps_are_shown_as_no_signal_and_numerical_error():
    at = support.use_model(_open(), support.degenerate_bundle())
    at = _explain(at, FAST)
    at.selectbox(key="xai.w.target").set_value(0)  # class 0: the constant logit
    at = _run(at)
    assert not at.exception and support.errors(at) == []
    lines = [c for c in support.captions(at) if " ms · " in c]
    assert len(lines) == len(FAST) and all("no signal" in c for c in lines)
    at.selectbox(key="xai.w.target").set_value(1)  # class 1: NaN gradients
    at = _run(at)
    lines = [c for c in support.captions(at) if " ms · " in c]
    saliency = next(c for c, m in zip(lines, FAST) if m == "saliency")
    assert "numerical error" in saliency
    at.selectbox(key="xai.w.target").set_value(2)  # class 2: an ordinary class
    at = _run(at)
    lines = [c for c in support.captions(at) if " ms · " in c]
    assert all(" · ok" in c for c in lines)


@pytest.mark.parametrize(
    ("values", "status"),
    [
        (np.zeros((3, 6, 6), np.float32), Status.NO_SIGNAL),
        (np.full((3, 6, 6), np.nan, np.float32), Status.NUMERICAL_ERROR),
    ],
)
def test_degenerate_tiles_are_neutral_grey_with_their_status(values, status):
    image = np.random.default_rng(0).random((6, 6, 3)).astype(np.float32)
    result = MethodResult(
        method="saliency", title="Saliency", status=status, attribution=values, target=0, params={}, runtime_s=0.01
    )
    picture, note = render.tile(image, result, view="all", alpha=0.6)
    assert note == status.value
    assert picture.shape == (6, 6, 3) and np.all(picture == heatmaps.NEUTRAL_GREY)


def test_ok_tile_equals_xaicore_heatmap_over_the_image():
    rng = np.random.default_rng(1)
    image = rng.random((6, 6, 3)).astype(np.float32)
    values = rng.normal(size=(3, 6, 6)).astype(np.float32)
    result = MethodResult(
        method="saliency", title="Saliency", status=Status.OK, attribution=values, target=0, params={}, runtime_s=0.01
    )
    picture, note = render.tile(image, result, view="positive", alpha=0.4)
    expected = heatmaps.heatmap_tile(values, mode="positive", image=image, alpha=0.4)
    np.testing.assert_array_equal(picture, expected.rgb)
    assert note == ""


def test_status_line_names_the_bias_share_beside_the_completeness_error():
    # LRP with biases included: the pixels got 5.0 of f(x) = 4.75, the biases -0.25
    result = MethodResult(
        method="lrp",
        title="LRP",
        status=Status.OK,
        attribution=np.ones((3, 2, 2), np.float32),
        target=0,
        params={},
        runtime_s=0.01,
        delta=0.25,
        expected=4.75,
        reference="f(x)",
        details={"bias_relevance": -0.25},
    )
    line = render.status_line(result)
    assert "completeness error 5.3% of f(x)" in line
    assert line.endswith("the biases absorbed -5.3% of f(x)")
    assert "the rest went to the biases" in line and "do not add up" not in line
    plain = render.status_line(dataclasses.replace(result, details={}))
    assert "do not add up to f(x)" in plain and "biases" not in plain
    assert render.bias_text(dataclasses.replace(result, details={})) == ""


def test_unavailable_methods_are_listed_with_their_reason_and_not_offered():
    reason = "This test model has no LRP rules."
    at = support.use_model(_open(), support.degenerate_bundle(unavailable={"lrp": reason}))
    assert "lrp" not in at.multiselect(key=METHODS).options
    expander = next(e for e in at.expander if e.label.startswith("Not available"))
    assert any(reason in m.value for m in expander.markdown)


def test_a_bad_upload_keeps_the_previous_results():
    at = _explain(_open(), ["saliency"])
    image = at.session_state[state.IMAGE_KEY]
    stored = _stored(at)
    at = support.upload_image(at, "broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (message,) = support.errors(at)
    assert "broken.jpg" in message
    assert at.session_state[state.IMAGE_KEY] is image
    assert _stored(at) == stored and len(at.main.image) == 4  # image, model input, the saliency tile and its colour bar


def test_an_unexpected_error_becomes_one_sentence(monkeypatch):
    at = _open()

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("xaicore.explainers.api.explain", broken)
    at = _explain(at, ["occlusion"])
    assert not at.exception
    assert support.errors(at) == [state.UNEXPECTED]
    assert all("secret" not in m.value for m in at.markdown)


def _held_bytes(store: state.ResultStore) -> int:
    """Bytes of the arrays a result store holds."""
    total = 0
    for value in store._items.values():
        for result in value if isinstance(value, tuple) else (value,):
            for array in (getattr(result, "image", None), *(m.attribution for m in getattr(result, "methods", ()))):
                total += array.nbytes if isinstance(array, np.ndarray) else 0
    return total


def test_memory_levels_off_over_many_uploads_and_explanations():
    """24 uploads, each explained, in one session: the store holds at most its capacity,
    so the bytes it keeps stop growing once it is full."""
    at = _open()
    at.multiselect(key=METHODS).set_value(["saliency"])
    at.toggle(key="explain.w.auto").set_value(True)
    held = []
    rng = np.random.default_rng(5)
    for i in range(24):
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        at = support.upload_image(at, f"u{i}.png", support.png_bytes(pixels))
        store = at.session_state[state._STORE_KEY]
        assert len(store) <= state.RESULT_CAPACITY
        held.append(_held_bytes(store))
    assert support.errors(at) == [] and not at.exception
    # Each upload adds one prediction and one explanation entry: full after 16 uploads.
    assert max(held[17:]) == min(held[17:]) == held[-1] > held[10]
    assert held[-1] <= state.RESULT_CAPACITY * _held_bytes_per_entry(at)


def _held_bytes_per_entry(at) -> int:
    bundle = at.session_state[state.MODEL_KEY]
    h, w = bundle.input_size
    return (3 * h * w * 4) * 2  # the model input and one attribution, float32


def _interrupt_after(monkeypatch, count: int) -> list[tuple[str, ...]]:
    """Make the page's first ``explain`` call end the script run (as a rerun request or Stop
    does at the next Streamlit call) once ``count`` methods were handed over; returns the calls
    made."""
    import streamlit as st

    from xaicore.explainers import api

    real = api.explain
    calls: list[tuple[str, ...]] = []

    def interrupted(*args, methods, on_result, **kwargs):
        calls.append(tuple(methods))
        handed: list[str] = []

        def hand_over(part):
            on_result(part)
            handed.append(part.methods[0].method)
            if len(handed) == count and len(calls) == 1:
                st.stop()

        return real(*args, methods=methods, on_result=hand_over, **kwargs)

    monkeypatch.setattr(api, "explain", interrupted)
    return calls


def test_one_call_stores_each_method_as_it_finishes_and_an_interrupted_run_loses_nothing(monkeypatch):
    at = _open()
    calls = _interrupt_after(monkeypatch, 3)
    at = _explain(at, FAST)
    assert calls == [tuple(FAST)]  # one call for every method, not one per group
    done = sorted(r.methods[0].method for r in _stored(at))
    assert len(done) == 3 and "integrated_gradients" not in done  # the cheapest came first
    calls.clear()
    at = _run(at)
    assert calls == [tuple(m for m in FAST if m not in done)]  # only what is missing
    assert sorted(r.methods[0].method for r in _stored(at)) == sorted(FAST)
    bundle = at.session_state[state.MODEL_KEY]
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in bundle.model.modules())
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_stop_keeps_what_finished_and_the_rest_waits_for_run(monkeypatch):
    at = support.start()  # automatic runs on, as a new user has them
    at.session_state[METHODS] = FAST
    calls = _interrupt_after(monkeypatch, 2)
    at = support.open_page(at, PAGE)
    assert len(calls) == 1 and len(_stored(at)) == 2
    stop = at.button(key="explain.act.stop")  # drawn while the run was going
    stop.click()
    at = at.run()
    assert len(calls) == 1 and len(_stored(at)) == 2  # nothing started again by itself
    (note,) = [i.value for i in at.info if i.value.startswith("Stopped.")]
    waiting = [m for m in FAST if m not in {r.methods[0].method for r in _stored(at)}]
    assert all(get_method(m).title in note for m in waiting) and "Press Run" in note
    at = at.run()  # another rerun (a view control, a page switch) does not restart them either
    assert len(calls) == 1
    at = _run(at)
    assert calls[1] == tuple(waiting) and len(_stored(at)) == len(FAST)
    assert not [i for i in at.info if i.value.startswith("Stopped.")]


def test_a_parameter_change_is_a_new_result_and_reaches_the_method():
    at = _explain(_open(), ["smoothgrad"])
    at.number_input(key="explain.w.param.smoothgrad.samples").set_value(4)
    at = _run(at)
    runs = [r.methods[0] for r in _stored(at) if r.methods[0].method == "smoothgrad"]
    assert [m.params["samples"] for m in runs] == [16, 4]
    assert not np.array_equal(runs[0].attribution, runs[1].attribution)


def test_heatmap_only_view_shows_the_model_input_beside_the_maps(sample_page):
    at = sample_page
    over = len(at.main.image)
    at.radio(key="explain.w.display").set_value("heatmap").run()
    assert not at.exception and support.errors(at) == []
    assert len(at.main.image) == over + 1  # the model input joins the grid
    captions = [img.proto.imgs[0].caption for img in at.main.image]
    assert "model input" in captions
    result = render.combine_results(_stored(at))
    first = next(m for m in result.methods if m.status is Status.OK)
    alone = render.rendered_tile(result.image, first, view="all", alpha=0.8, over_image=False)
    np.testing.assert_array_equal(alone.rgb, heatmaps.heatmap_tile(first.attribution, alpha=0.8).rgb)
    at.radio(key="explain.w.display").set_value("overlay").run()


def test_the_cam_layer_is_chosen_on_the_page_keyed_and_shown():
    at = _explain(_open(), ["saliency", "gradcam"])
    bundle = at.session_state[state.MODEL_KEY]
    box = at.selectbox(key="explain.w.cam_layer")
    assert box.value == bundle.cam_layer and list(box.options) == [
        f"{name} · {c} ch · {h}x{w}{' (default)' if name == bundle.cam_layer else ''}"
        for name, (c, h, w) in ((n, bundle.cam_layer_shape(n)) for n in bundle.cam_layers())
    ]
    box.set_value("net.features.conv2")
    at = _run(at)
    layers = sorted((r.methods[0].method, str(r.methods[0].layer)) for r in _stored(at))
    # the saliency map is reused; Grad-CAM is kept once per layer
    assert layers == [("gradcam", "net.features.conv2"), ("gradcam", bundle.cam_layer), ("saliency", "None")]
    shown = [c for c in support.captions(at) if " ms · " in c]
    assert any(c.endswith("· layer net.features.conv2") for c in shown) and not any(
        bundle.cam_layer in c for c in shown
    )
    at.multiselect(key=METHODS).set_value(["saliency"])
    at = at.run()
    assert "explain.w.cam_layer" not in [box.key for box in at.selectbox]  # no CAM method chosen: no layer to choose
