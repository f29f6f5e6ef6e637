"""Before a long run the pages say how long it should take: work units x the model's measured
pass time, the figure shown being the one computed from the page's own settings. The pass time
is pinned here so the expected sentence can be computed exactly."""

from __future__ import annotations

import pytest

from dashboard import state, wording
from tests.dashboard import apptest_support as support
from xaicore.confidence.gax import STEP_UNITS
from xaicore.explainers import cost
from xaicore.explainers.methods import FORWARD_UNITS
from xaicore.metrics.faithfulness import forward_passes

PASS_S = 0.05  # seconds per pass, as on a mid-sized model on a CPU


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setattr(cost, "measured_pass_s", lambda bundle: PASS_S)


def _infos(at) -> list[str]:
    return [i.value for i in at.info]


def test_the_estimate_is_said_in_words_and_names_its_basis():
    assert wording.estimate(12.2) == "about 13 s on this model (estimated from the time of one pass of the model)"


def test_sanity_says_how_long_the_check_will_take(pinned):
    at = support.start()
    at.session_state["sanity.w.methods"] = ["saliency", "integrated_gradients"]
    at = support.open_page(at, "pages/sanity.py")
    bundle = at.session_state[state.MODEL_KEY]
    seeds = at.number_input(key="sanity.w.seeds").value
    mode = at.session_state.get("sanity.w.mode")
    steps = len(bundle.layers) * seeds * (2 if mode == "both" else 1)
    units = (1 + cost.method_units("integrated_gradients", None, bundle.input_size)) * (steps + 1)
    (note,) = [i for i in _infos(at) if i.startswith("Press *Run the check*")]
    assert note.endswith(f": {wording.estimate(units * PASS_S)}.")


def test_gax_says_its_longest_wait(pinned):
    at = support.start()
    at.session_state["gax.w.max_steps"] = 400
    at = support.open_page(at, "pages/gax.py")
    (note,) = [i for i in _infos(at) if i.startswith("Press Run GAX")]
    assert "at most 400 steps, " + wording.estimate(400 * STEP_UNITS * PASS_S) in note


def test_ax_co_says_how_long_the_set_takes(pinned):
    at = support.start()
    at.session_state["co.w.n"] = 16
    at.session_state["co.w.methods"] = ["saliency", "smoothgrad"]
    at.session_state["co.w.variants"] = ["x+h"]
    at = support.open_page(at, "pages/co_scores.py")
    bundle = at.session_state[state.MODEL_KEY]
    maps = 16 * (1 + cost.method_units("smoothgrad", None, bundle.input_size))
    units = maps + 16 * 2 * (1 + 1) * FORWARD_UNITS
    (note,) = [i for i in _infos(at) if i.startswith("Press Run to score 16 images with 2 methods")]
    assert note.endswith(f": {wording.estimate(units * PASS_S)}.")


def test_the_report_counts_maps_and_curves(pinned):
    at = support.start()
    at.session_state["report.w.source"] = "Generated scenes (with masks)"
    at.session_state["report.w.n"] = 2
    at.session_state["report.w.methods"] = ["saliency", "gradcam"]
    at.session_state["report.w.step"] = 0.25
    at = support.open_page(at, "pages/report.py")
    (note,) = [i for i in _infos(at) if i.startswith("Press Run to evaluate 2 methods")]
    bundle = at.session_state[state.MODEL_KEY]
    h, w = bundle.input_size
    curves = forward_passes(h * w, step_fraction=0.25, fraction=1.0)
    assert curves == 2 * 5  # 0, 1/4, 1/2, 3/4 and all of the pixels, for insertion and for deletion
    maps = 4 * 2  # four objects of two scenes, two single-pass methods
    units = maps + 4 * (2 + 1) * curves * FORWARD_UNITS  # each method's ranking and the random one
    assert note.endswith(f": {wording.estimate(units * PASS_S)}.")
