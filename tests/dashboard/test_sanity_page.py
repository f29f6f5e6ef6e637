"""The Sanity checks and Class discriminativeness pages in Streamlit's AppTest.

A tiny hand-made model (tests/xaicore/_sanity_fixtures) is made the session's model through
the sidebar's checkpoint choice, so a full check takes a fraction of a second.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dashboard import state
from dashboard.render import sanity as sanity_render
from tests.dashboard import apptest_support as support
from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.checks.sanity import SanityResult, run_sanity
from xaicore.models.bundle import fingerprint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

SANITY = "pages/sanity.py"
CLASSES = "pages/classes.py"


def _stored(at, kind: str) -> list:
    store = at.session_state[state._STORE_KEY]
    return [value for key, value in store._items.items() if key[0] == kind]


def _sanity_page(bundle=None):
    at = support.use_model(support.start(), bundle or tiny_bundle(seed=3))
    at = support.open_page(at, SANITY)
    at.multiselect(key="sanity.w.methods").set_value(["saliency", "guided_backprop", "gradcam"])
    at.number_input(key="sanity.w.seeds").set_value(2)
    return at.run()


def _press_run(at):
    at.button(key="sanity.act.run").click()
    return at.run()


def _downloads(at) -> dict:
    return {d.proto.label: d for d in at.get("download_button")}


@pytest.fixture(scope="module")
def checked():
    return _press_run(_sanity_page())


def test_nothing_runs_before_the_button_is_pressed():
    at = _sanity_page()
    assert not at.exception and support.errors(at) == []
    assert _stored(at, "sanity") == []
    assert any("Run the check" in i.value for i in at.info)


def test_a_run_shows_verdicts_chart_strips_and_downloads(checked):
    at = checked
    assert not at.exception and support.errors(at) == []
    (result,) = _stored(at, "sanity")
    assert isinstance(result, SanityResult)
    assert result.methods == ("saliency", "guided_backprop", "gradcam")
    assert result.modes == ("cascading", "independent") and result.seeds == (0, 1)
    assert result.targets.tolist() == [at.session_state[state.TARGET_KEY]]
    table = at.dataframe[0].value
    assert list(table["method"]) == list(result.titles)
    assert list(table["verdict"]) == [v.status for v in result.verdicts]
    np.testing.assert_allclose(table["SSIM after output layer"], [v.value for v in result.verdicts])
    assert len(at.get("plotly_chart")) == 1
    # one strip per method: the trained map and one tile per layer, then the strip's colour bar
    strips = [s for s in at.main.image if len(s.proto.imgs) > 1]
    assert len(strips) == 3
    assert all(len(s.proto.imgs) == 1 + len(result.layers) for s in strips)
    bars = [c for c in support.captions(at) if c.startswith("One scale for the row: ")]
    assert len(bars) == 3 and all("red: evidence for the class" in c for c in bars)
    assert set(_downloads(at)) == {"All values (CSV)", "Chart (HTML)", "Record (JSON)"}
    bundle = at.session_state[state.MODEL_KEY]
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_the_stored_result_is_reused_and_the_threshold_only_rejudges(checked, monkeypatch):
    from xaicore.checks import sanity

    calls = []
    real = sanity.run_sanity

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sanity, "run_sanity", counting)
    at = _press_run(checked)
    assert calls == [] and len(_stored(at, "sanity")) == 1
    (result,) = _stored(at, "sanity")
    lowest = min(v.value for v in result.verdicts)
    at.slider(key="sanity.w.threshold").set_value(max(0.5, round(lowest - 0.005, 2))).run()
    assert calls == []
    expected = result.with_threshold(at.slider(key="sanity.w.threshold").value)
    assert list(at.dataframe[0].value["verdict"]) == [v.status for v in expected.verdicts]


def test_an_interrupted_check_stores_nothing(monkeypatch):
    import streamlit as st

    from xaicore.checks import sanity

    real = sanity.run_sanity

    def interrupted(*args, progress, **kwargs):
        def stop_on_third(done, total, message):
            progress(done, total, message)
            if done == 3:
                st.stop()  # what a widget change does at the next Streamlit call

        return real(*args, progress=stop_on_third, **kwargs)

    at = _sanity_page()
    monkeypatch.setattr(sanity, "run_sanity", interrupted)
    at = _press_run(at)
    assert not at.exception
    assert _stored(at, "sanity") == []
    bundle = at.session_state[state.MODEL_KEY]
    assert fingerprint(bundle.model) == bundle.fingerprint
    monkeypatch.setattr(sanity, "run_sanity", real)
    at = _press_run(at)
    assert len(_stored(at, "sanity")) == 1


def test_changing_a_setting_is_a_new_check(checked):
    at = checked
    at.radio(key="sanity.w.mode").set_value("independent").run()
    assert len(_stored(at, "sanity")) == 1  # not run yet
    at = _press_run(at)
    results = _stored(at, "sanity")
    assert [r.modes for r in results] == [("cascading", "independent"), ("independent",)]
    np.testing.assert_array_equal(results[1].values["ssim_abs"][0], results[0].values["ssim_abs"][1])


def test_download_contents_match_the_result(checked):
    (result,) = _stored(checked, "sanity")[:1]
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert {r["metric"] for r in rows} == {"ssim_abs", "ssim_signed", "spearman_abs", "spearman_signed"}
    html = sanity_render.figure_html(sanity_render.similarity_figure(result, mode="cascading", metric="ssim_abs"))
    assert b"<html>" in html and len(html) > 1_000_000  # plotly.js embedded: opens offline
    assert all(title.encode() in html for title in result.titles)
    record = json.loads(json.dumps(result.record()))
    assert record["methods"]["gradcam"]["steps"] == list(result.steps)


def test_the_chart_has_a_line_and_a_band_per_method():
    bundle = tiny_bundle(seed=3)
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    result = run_sanity(bundle, image, methods=("saliency", "gradcam"), seeds=(0, 1, 2))
    fig = sanity_render.similarity_figure(result, mode="cascading", metric="spearman_signed")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == list(result.titles)
    for j, method in enumerate(result.methods):
        mean = result.mean("spearman_signed", mode="cascading", method=method)
        std = result.std("spearman_signed", mode="cascading", method=method)
        np.testing.assert_allclose(lines[j].y, mean)
        np.testing.assert_allclose(bands[j].y[: len(mean)], mean + std)
        np.testing.assert_allclose(bands[j].y[len(mean) :], (mean - std)[::-1])
        assert list(lines[j].x) == ["head", "conv2", "conv1"]  # output layer first, without "net."
    # strips come from the stored maps; an all-zero map is a grey "no signal" tile
    tile, note = sanity_render.map_tile(np.zeros((16, 16), np.float32), view="all")
    assert note == "no signal" and (tile == 128).all()
    tiles = sanity_render.strip(result, method="gradcam", mode="cascading", view="positive", over_image=False)
    assert len(tiles) == 1 + len(result.layers) and tiles[0][1].startswith("trained")


def test_classes_page_on_a_scene_shows_maps_ssim_and_relevance():
    at = support.use_model(support.start(), tiny_bundle(seed=3, num_classes=8))
    scene = next(n for n in state.sample_names() if n.startswith("scene:"))
    at.selectbox(key="xai.w.sample").set_value(scene).run()
    at = support.open_page(at, CLASSES)
    assert not at.exception and support.errors(at) == []
    (result,) = _stored(at, "classes")
    image = at.session_state[state.IMAGE_KEY]
    assert result.classes == tuple(dict.fromkeys(image.mask_labels))
    assert result.on_object is not None
    assert len(at.get("plotly_chart")) == 2  # SSIM bars and relevance bars
    strips = [s for s in at.main.image if len(s.proto.imgs) > 1]
    assert len(strips) == len(result.methods)
    assert all(len(s.proto.imgs) == 3 for s in strips)  # the image and one map per class
    scaled = [m for m in result.methods if np.isfinite(sanity_render.class_clip(result, method=m, view="all"))]
    assert scaled  # at least one method has a map to scale
    assert sum(c.startswith("One scale for the row: ") for c in support.captions(at)) == len(scaled)
    assert any(f"{result.pair_ssim('gradcam'):.2f}" in m.value for m in at.markdown)


def test_classes_page_without_masks_uses_the_top_two_and_is_cached(monkeypatch):
    from xaicore.checks import discriminative

    at = support.use_model(support.start(), tiny_bundle(seed=3, num_classes=8))
    shape = next(n for n in state.sample_names() if n.startswith("shape:"))
    at.selectbox(key="xai.w.sample").set_value(shape).run()
    at = support.open_page(at, CLASSES)
    (result,) = _stored(at, "classes")
    top = [p.index for p in state.predictions(at.session_state[state.MODEL_KEY], at.session_state[state.IMAGE_KEY])]
    assert list(result.classes) == top[:2]
    assert result.on_object is None and len(at.get("plotly_chart")) == 1
    calls = []
    monkeypatch.setattr(discriminative, "compare_classes", lambda *a, **k: calls.append(1))
    at.radio(key="classes.w.view").set_value("positive").run()
    assert calls == [] and not at.exception


def test_classes_page_with_an_uploaded_mask_and_a_bad_one():
    at = support.use_model(support.start(), tiny_bundle(seed=3, num_classes=8))
    shape = next(n for n in state.sample_names() if n.startswith("shape:"))
    at.selectbox(key="xai.w.sample").set_value(shape).run()
    at = support.open_page(at, CLASSES)
    (first,) = _stored(at, "classes")
    height, width = at.session_state[state.IMAGE_KEY].array.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    at.selectbox(key="classes.w.mask_class").set_value(first.classes[0]).run()
    at.file_uploader(key="classes.act.mask").set_value(("mask.png", support.png_bytes(mask), "image/png")).run()
    assert not at.exception and support.errors(at) == []
    latest = _stored(at, "classes")[-1]
    assert latest.mask_labels == (first.classes[0],)
    np.testing.assert_array_equal(latest.masks[0], np.arange(16)[None, :].repeat(16, 0) < 8)
    assert np.isfinite(latest.on_object[:, 0]).all() and np.isnan(latest.on_others).all()
    assert len(at.get("plotly_chart")) == 2
    at.file_uploader(key="classes.act.mask").set_value(("mask.png", b"not an image", "image/png")).run()
    assert not at.exception and len(support.errors(at)) == 1


def test_classes_page_sets_one_image_against_many_scenes(monkeypatch):
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
    from xaicore.data.shapes import generate_scenes

    bundle = tiny_bundle(seed=3, num_classes=8)
    at = support.use_model(support.start(), bundle)
    scene = next(n for n in state.sample_names() if n.startswith("scene:"))
    at.selectbox(key="xai.w.sample").set_value(scene).run()
    at = support.open_page(at, CLASSES)
    assert any("Figures for this one image: a single example" in c for c in support.captions(at))
    assert _stored(at, "classes_scenes") == [] and len(at.table) == 0  # measured only on request
    at.number_input(key="classes.w.scenes").set_value(20).run()
    next(b for b in at.button if b.label == "Measure over 20 scenes").click().run()
    assert not at.exception and support.errors(at) == []
    (aggregate,) = _stored(at, "classes_scenes")
    (single,) = _stored(at, "classes")
    expected = discriminativeness_over_scenes(bundle, generate_scenes(20, seed=0), methods=single.methods)
    np.testing.assert_allclose(aggregate.ssim, expected.ssim, atol=1e-9)
    table = at.table[0].value
    assert list(table.columns) == ["method", "this image", "mean over 20 scenes", "95% interval", "lowest on"]
    first = expected.ordered()[0]
    row = table.iloc[0]
    assert row["method"] == expected.titles[expected.methods.index(first)]
    assert row["this image"] == f"{single.pair_ssim(first):.2f}"
    interval = expected.interval(first)
    assert row["95% interval"] == f"{interval.low:.2f} to {interval.high:.2f}"
    assert row["lowest on"] == f"{expected.lowest_share(first):.0%} of scenes"
    assert not any(b.label.startswith("Measure over") for b in at.button)  # stored: shown, not asked again
