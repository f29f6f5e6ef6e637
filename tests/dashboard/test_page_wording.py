"""What a person reads on the Sanity, Report card, AX / CO and Faithfulness pages: counts in the
right number, plain column titles, the sanity chart's seeds and band, what the reference model
is called, how many images are behind each figure, and the faithfulness axis and preview."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dashboard import state, wording
from dashboard.render import sanity as sanity_render
from tests.dashboard import apptest_support as support
from tests.dashboard.test_report_page import shapes_bundle
from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.checks.sanity import run_sanity
from xaicore.evaluation.report import TESTS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


# ----------------------------------------------------------------------------- words


def test_counts_take_the_right_number():
    assert wording.plural(1, "seed") == "1 seed"
    assert wording.plural(0, "seed") == "0 seeds"
    assert wording.plural(5, "seed") == "5 seeds"
    assert wording.plural(2, "class") == "2 classes"
    assert wording.plural(1, "class") == "1 class"
    assert wording.plural(3, "entry", "entries") == "3 entries"


def test_every_report_column_has_a_plain_title():
    keys = [f"{t} verdict" for t in TESTS] + [
        "SSIM after output layer randomized",
        "co_gap verdict",
        "CO gap 95% CI",
        "insertion AUC 95% CI",
        "insertion_auc",
        "vs_random",
    ]
    titles = [wording.column_title(k) for k in keys]
    assert wording.column_title("co_gap verdict") == "CO-score gap"
    assert wording.column_title("insertion AUC 95% CI") == "insertion AUC 95% interval"
    assert not [t for t in titles if "_" in t or "verdict" in t or t.endswith(" CI")]
    assert wording.plain_table({"co": [1.0], "true": [3]}) == {"CO score": [1.0], "true class": [3]}


# ----------------------------------------------------------------------------- sanity chart


@pytest.fixture(scope="module")
def sanity_result():
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    return run_sanity(tiny_bundle(seed=3), image, methods=("saliency", "gradcam"), seeds=(0, 1, 2))


def test_the_chart_shows_each_seed_in_the_line_colour_and_a_named_filled_band(sanity_result):
    result = sanity_result
    fig = sanity_render.similarity_figure(result, mode="cascading", metric="ssim_abs")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    points = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == len(bands) == len(points) == 2
    for j, method in enumerate(result.methods):
        colour = lines[j].line.color
        assert points[j].marker.color == colour and lines[j].marker.color == colour
        r, g, b = (int(colour.lstrip("#")[k : k + 2], 16) for k in (0, 2, 4))
        assert bands[j].fillcolor.startswith(f"rgba({r},{g},{b},")  # the band in the line's colour, see-through
        assert bands[j].name == f"{result.titles[j]}: ±1 std over 3 seeds" and bands[j].showlegend is not False
        assert bands[j].text == bands[j].name and bands[j].hoveron == "fills"
        per_seed = result.per_seed("ssim_abs", mode="cascading", method=method)
        np.testing.assert_allclose(points[j].y, per_seed.reshape(-1))
        assert list(points[j].customdata) == [s for s in result.seeds for _ in result.steps]
    assert "3 seeds" in fig.layout.title.text and "vs the trained model" in fig.layout.title.text


def test_one_seed_has_no_band_and_says_1_seed():
    image = np.random.default_rng(1).random((16, 16, 3), dtype=np.float32)
    result = run_sanity(tiny_bundle(seed=3), image, methods=("saliency",), seeds=(0,))
    fig = sanity_render.similarity_figure(result, mode="cascading", metric="ssim_abs")
    assert [t.mode for t in fig.data] == ["lines+markers"]
    assert fig.data[0].name == "Saliency (1 seed)"
    assert "; 1 seed)" in fig.layout.title.text and "seeds" not in fig.layout.title.text


def test_a_random_weights_model_is_called_as_loaded_not_trained(sanity_result):
    provenance = dataclasses.replace(sanity_result.provenance, model_name="ResNet-18 (random weights)")
    result = dataclasses.replace(sanity_result, provenance=provenance)
    tiles = sanity_render.strip(result, method="gradcam", mode="cascading", view="all")
    assert tiles[0][1].startswith("as loaded (random weights)")
    fig = sanity_render.similarity_figure(result, mode="cascading", metric="ssim_abs")
    assert "vs the model as loaded (random weights)" in fig.layout.title.text
    assert "trained" not in fig.layout.title.text
    assert all("trained" not in row["why"] for row in sanity_render.verdict_rows(result))
    assert sanity_render.strip(sanity_result, method="gradcam", mode="cascading", view="all")[0][1] == "trained"


def test_the_sanity_page_names_the_random_weights_model(sanity_result):
    bundle = dataclasses.replace(tiny_bundle(seed=3), name="tiny net (random weights)")
    at = support.use_model(support.start(), bundle)
    at = support.open_page(at, "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(["saliency"])
    at.number_input(key="sanity.w.seeds").set_value(1).run()
    assert any(f"{2 * len(bundle.layers)} randomized models, 1 method each" in i.value for i in at.info)
    at = at.button(key="sanity.act.run").click().run()
    assert not at.exception
    shown = [h.value for h in at.subheader] + support.captions(at) + list(at.radio(key="sanity.w.policy").options)
    assert any("Similarity to the map of the model as loaded (random weights)" in t for t in shown)
    assert any("the first tile is the map of the model as loaded (random weights)" in t for t in shown)
    assert any(" · seed 0 · " in t for t in support.captions(at))
    assert not [t for t in shown if "trained" in t]
    captions = [c for img in at.main.image for c in (i.caption for i in img.proto.imgs)]
    assert captions[0] == "as loaded (random weights)"


# ----------------------------------------------------------------------------- report card


def test_the_report_card_says_which_figures_come_from_one_image():
    bundle = shapes_bundle()
    at = support.use_model(support.start(), bundle)
    image = at.session_state[state.IMAGE_KEY]
    at = support.open_page(at, "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(["saliency", "gradcam"])
    at.number_input(key="sanity.w.seeds").set_value(2).run()
    at = at.button(key="sanity.act.run").click().run()
    at.session_state["report.w.source"] = "Generated scenes (with masks)"
    at.session_state["report.w.n"] = 2
    at.session_state["report.w.methods"] = ["saliency", "gradcam"]
    at.session_state["report.w.step"] = 0.25
    at = support.open_page(at, "pages/report.py")
    at = at.button(key="report.act.run").click().run()
    assert not at.exception and support.errors(at) == []
    summary = "\n".join(m.value for m in at.markdown)
    assert f"from one image: {image.name}, 2 seeds" in summary
    assert "over 4 images" in summary  # two scenes, one item per object
    assert "Figures of different scope" in summary
    assert "Passes every test:" not in summary  # some test is always unmeasured here (no CO scores)
    for line in summary.splitlines():
        if line.startswith(("- Passes every test", "- Pass every test")):
            assert "(not measured: " in line and "CO-score gap" in line
    table = at.dataframe[0].value
    assert f"sanity check (from one image: {image.name}, 2 seeds)" in table.columns
    assert "faithfulness (over 4 images)" in table.columns
    assert list(table["sanity: images"].iloc[:2]) == [1, 1]
    assert any(f"from one image: {image.name}" in c for c in support.captions(at))


# ----------------------------------------------------------------------------- AX / CO


def test_a_set_without_wrong_predictions_is_said_so_and_the_harder_set_is_offered():
    at = support.start()  # the default model
    at.session_state["co.w.n"] = 16
    at.session_state["co.w.methods"] = ["saliency"]
    at.session_state["co.w.variants"] = ["x+h"]
    at = support.open_page(at, "pages/co_scores.py")
    at = at.button(key="co.act.run").click().run()
    assert not at.exception and support.errors(at) == []
    warnings = [w.value for w in at.warning]
    assert any(
        "predicts every one of the 16 labelled images right" in w and "cannot be measured" in w for w in warnings
    ), warnings
    assert not [c for c in at.dataframe[0].value.columns if c in ("variant", "correct", "wrong")]
    assert "CO score" in at.dataframe[1].value.columns and "co" not in at.dataframe[1].value.columns
    at = at.button(key="co.act.hard").click().run()
    assert at.radio(key="co.w.source").value.startswith("Generated, harder")
    at = at.button(key="co.act.run").click().run()
    assert not at.exception and not [w for w in at.warning if "cannot be measured" in w.value]
    gaps = at.dataframe[0].value
    assert int(gaps["wrong predictions"].iloc[0]) > 0 and int(gaps["correct predictions"].iloc[0]) > 0


# ----------------------------------------------------------------------------- faithfulness


def _chart_layouts(at) -> list[dict]:
    return [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]


def test_the_mark_colour_is_one_the_image_hardly_uses():
    from dashboard.render.faithfulness import MARK_COLORS, mark_color

    magenta_background = np.zeros((8, 8, 3), dtype=np.float32)
    magenta_background[..., [0, 2]] = 0.9
    name, rgb = mark_color(magenta_background)
    assert name != "magenta" and tuple(rgb) == MARK_COLORS[name]
    assert mark_color(np.full((4, 4, 3), 0.5, dtype=np.float32))[0] == "magenta"


def test_the_mark_tints_the_changed_pixels_and_outlines_them():
    from dashboard.render.faithfulness import MARK_COLOR, marked

    picture = np.full((8, 8, 3), 0.5, dtype=np.float32)
    changed = np.zeros((8, 8), dtype=bool)
    changed[2:6, 2:6] = True
    out = marked(picture, changed)
    np.testing.assert_array_equal(out[~changed], picture[~changed])  # unchanged pixels stay as they are
    border = changed.copy()
    border[3:5, 3:5] = False
    np.testing.assert_allclose(out[border], np.broadcast_to(MARK_COLOR, (12, 3)))
    np.testing.assert_allclose(out[3:5, 3:5], np.broadcast_to(0.65 * 0.5 + 0.35 * MARK_COLOR, (2, 2, 3)), rtol=1e-6)


def test_faithfulness_page_fits_the_axis_and_marks_the_preview():
    at = support.use_model(support.start(), tiny_bundle(seed=0, size=16))
    at.session_state["faith.w.methods"] = ["saliency"]
    at.session_state["faith.w.methods_model"] = at.session_state[state.MODEL_KEY].fingerprint
    at = support.open_page(at, "pages/faithfulness.py")
    assert not at.exception and support.errors(at) == []
    result = next(v for k, v in at.session_state[state._STORE_KEY].items() if k[0] == "faithfulness")
    for layout, kind in zip(_chart_layouts(at), ("insertion", "deletion"), strict=True):
        values = np.concatenate([getattr(c, kind)[0] for c in result.curves])
        pad = max(0.01, 0.05 * (values.max() - values.min()))
        assert layout["yaxis"]["range"] == pytest.approx([max(0.0, values.min() - pad), min(1.02, values.max() + pad)])
    at.toggle(key="faith.w.full_axis").set_value(True).run()
    assert [layout["yaxis"]["range"] for layout in _chart_layouts(at)] == [[0, 1.02], [0, 1.02]]
    at.slider(key="faith.w.step").set_value(20).run()
    marked = at.main.image[2].proto.imgs[0]
    assert marked.caption.startswith("deletion: 60 pixels (23%) replaced by the blurred image (Gaussian, sigma 2 px)")
    changed = result.changed_pixels("saliency", step=20)
    assert changed.sum() == 60 and np.array_equal(changed, result.get("saliency").rank[0] < 60)
    assert any(t.label == "Mark the changed pixels" and t.value for t in at.toggle)
    assert any(
        c.startswith("Marked in ") and "the 60 most relevant pixels of Saliency" in c for c in support.captions(at)
    )
