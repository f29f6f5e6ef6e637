"""Bad parameters and degenerate maps, through the pages (AppTest) and the core API.

Each case ends in a plain sentence or a documented behaviour, never a traceback:

- a class out of range: refused by the core with the valid range; a class remembered from
  another model is dropped by the sidebar (the prediction is explained instead);
- zero steps: refused by the core ("at least 1"); the pages' number inputs start at 1;
- a negative seed: accepted by the core (seeds are hashed with the method or layer name, so
  -3 and 3 are different, reproducible seeds); the pages offer 0 ... 2**31 - 1;
- a huge step count: refused by the core for explanation methods (at most the method's
  maximum); GAX lowers its step cap to ``MAX_STEPS`` with a notice;
- methods the model cannot run: left out of every page's choice and listed with the reason;
- zero, NaN and inf maps: "no signal" / "numerical error", a neutral grey tile.
"""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import sidebar, state
from dashboard.render import tiles as render
from tests.dashboard import apptest_support as support
from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.checks.sanity import run_sanity
from xaicore.confidence.gax import MAX_STEPS, run_gax
from xaicore.errors import ParameterError
from xaicore.explainers.api import attribute, explain
from xaicore.explainers.registry import get_method, list_methods
from xaicore.explainers.results import MethodResult, Status, classify_attribution
from xaicore.metrics.faithfulness import insertion_deletion
from xaicore.render import heatmaps

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

IMAGE = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(seed=1)


# --- target class ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [3, 99, -1])
def test_a_class_out_of_range_is_refused_with_the_valid_range(bundle, target):
    calls = {
        "explain": lambda: explain(bundle, IMAGE, methods=["saliency"], target=target),
        "sanity": lambda: run_sanity(bundle, IMAGE, methods=["saliency"], seeds=(0,), target=target),
        "gax": lambda: run_gax(bundle, IMAGE, target=target, max_steps=2),
        "attribute": lambda: attribute(bundle, bundle.to_input(IMAGE), method="saliency", target=target),
    }
    for name, call in calls.items():
        with pytest.raises(ParameterError) as info:
            call()
        message = str(info.value)
        assert str(target) in message, name
        assert "Traceback" not in message and message[0].isupper() and message.rstrip().endswith("."), name


def test_a_class_remembered_from_another_model_is_dropped_by_the_sidebar():
    at = support.start()
    at.session_state["explain.w.auto"] = False
    at = support.use_model(at, tiny_bundle(seed=2, num_classes=10))
    at = support.open_page(at, "pages/explain.py")
    at.selectbox(key=sidebar.W_TARGET).set_value(7).run()
    assert at.session_state[state.TARGET_KEY] == 7
    at.session_state[state.UPLOADED_MODEL_KEY] = support.degenerate_bundle()  # 3 classes now
    at.run()
    assert not at.exception and support.errors(at) == []
    # Back to "Predicted": the remembered 7 is gone and the predicted class is explained.
    assert at.selectbox(key=sidebar.W_TARGET).value is None
    bundle, image = at.session_state[state.MODEL_KEY], at.session_state[state.IMAGE_KEY]
    assert at.session_state[state.TARGET_KEY] == int(bundle.logits(bundle.to_input(image.array)).argmax())


# --- steps and seeds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "param"),
    [
        ("integrated_gradients", "steps"),
        ("smoothgrad", "samples"),
        ("gradient_shap", "samples"),
        ("deeplift_shap", "references"),
    ],
)
def test_zero_and_huge_step_counts_are_refused_with_the_allowed_range(bundle, method, param):
    spec = next(p for p in get_method(method).params if p.name == param)
    # Integrated Gradients reads 0 steps as "choose them": -1 is its count below the range
    low = -1 if spec.minimum == 0 else 0
    for value, words in ((low, f"at least {spec.minimum}"), (10**7, f"at most {spec.maximum}")):
        with pytest.raises(ParameterError, match=words):
            explain(bundle, IMAGE, methods=[method], params={method: {param: value}})


def test_gax_refuses_zero_steps_and_caps_a_huge_step_count_with_a_notice(bundle):
    with pytest.raises(ParameterError, match="at least 1"):
        run_gax(bundle, IMAGE, max_steps=0)
    result = run_gax(bundle, IMAGE, max_steps=10**9, target_co=-1e9)  # reached at the first check
    assert result.max_steps == MAX_STEPS
    assert any(f"lowered to the maximum of {MAX_STEPS}" in n for n in result.notices)


def test_a_negative_seed_is_a_distinct_reproducible_seed(bundle):
    def smoothgrad(seed: int) -> np.ndarray:
        return explain(bundle, IMAGE, methods=["smoothgrad"], seed=seed).methods[0].attribution

    np.testing.assert_array_equal(smoothgrad(-3), smoothgrad(-3))
    assert not np.array_equal(smoothgrad(-3), smoothgrad(3))
    a = run_sanity(bundle, IMAGE, methods=["saliency"], seeds=(-2,), mode="cascading")
    b = run_sanity(bundle, IMAGE, methods=["saliency"], seeds=(-2,), mode="cascading")
    np.testing.assert_array_equal(a.values["ssim_abs"], b.values["ssim_abs"])


def test_the_pages_number_inputs_keep_steps_and_seeds_in_range():
    at = support.start()
    at.session_state["explain.w.auto"] = False
    at = support.open_page(at, "pages/explain.py")
    at.multiselect(key="explain.w.methods").set_value(["integrated_gradients", "smoothgrad"]).run()
    seed = at.number_input(key="explain.w.seed")
    assert seed.min == 0 and seed.max == 2**31 - 1
    steps = at.number_input(key="explain.w.param.integrated_gradients.steps")
    assert steps.min == 0 and steps.max == 1024 and steps.value == 0  # 0: chosen per image
    gax = support.open_page(at, "pages/gax.py")
    cap = gax.number_input(key="gax.w.max_steps")
    assert cap.min == 1 and cap.max == MAX_STEPS
    sanity = support.open_page(gax, "pages/sanity.py")
    assert sanity.number_input(key="sanity.w.seeds").min == 1


# --- methods the model cannot run ------------------------------------------------------------------

REASON = "This test model has no propagation rule for LRP."
PAGES_WITH_METHODS = {
    "pages/explain.py": "explain.w.methods",
    "pages/sanity.py": "sanity.w.methods",
    "pages/classes.py": "classes.w.methods",
    "pages/co_scores.py": "co.w.methods",
    "pages/faithfulness.py": "faith.w.methods",
    "pages/report.py": "report.w.methods",
}


def _methods_widget(at, key: str):
    return at.multiselect(key=key)


@pytest.mark.parametrize("page", list(PAGES_WITH_METHODS))
def test_every_page_lists_methods_the_model_cannot_run_with_the_reason(page):
    at = support.start()
    at.session_state["explain.w.auto"] = False
    at = support.use_model(at, support.degenerate_bundle(unavailable={"lrp": REASON}))
    at = support.open_page(at, page)
    assert not at.exception and support.errors(at) == []
    options = _methods_widget(at, PAGES_WITH_METHODS[page]).options
    assert "lrp" not in options and get_method("lrp").title not in options
    expander = next(e for e in at.expander if e.label.startswith("Not available for this model"))
    assert any(REASON in m.value and get_method("lrp").title in m.value for m in expander.markdown)


def test_methods_the_model_can_run_are_all_offered():
    at = support.start()
    at.session_state["explain.w.auto"] = False
    at = support.use_model(at, support.degenerate_bundle())
    at = support.open_page(at, "pages/explain.py")
    assert len(_methods_widget(at, "explain.w.methods").options) == len(list_methods())
    assert not [e for e in at.expander if e.label.startswith("Not available")]


# --- degenerate maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fill", "status"),
    [
        (0.0, Status.NO_SIGNAL),
        (np.nan, Status.NUMERICAL_ERROR),
        (np.inf, Status.NUMERICAL_ERROR),
        (-np.inf, Status.NUMERICAL_ERROR),
    ],
    ids=["zero", "nan", "inf", "-inf"],
)
def test_degenerate_maps_are_named_and_drawn_as_grey_tiles(fill, status):
    values = np.ones((3, 6, 6), np.float32)
    values[:, 2:4, 1:5] = fill  # partly bad is bad too (except zero, which must be everywhere)
    if fill == 0.0:
        values[:] = 0.0
    assert classify_attribution(values) is status
    result = MethodResult(
        method="saliency", title="Saliency", status=status, attribution=values, target=0, params={}, runtime_s=0.0
    )
    picture, note = render.tile(IMAGE[:6, :6], result, view="all", alpha=0.5)
    assert note == status.value and np.all(picture == heatmaps.NEUTRAL_GREY)
    assert status.value in render.status_line(result)


def test_a_single_inf_value_is_not_normalized_into_a_picture():
    values = np.random.default_rng(2).normal(size=(3, 6, 6)).astype(np.float32)
    values[0, 0, 0] = np.inf
    assert classify_attribution(values) is Status.NUMERICAL_ERROR


def test_faithfulness_refuses_non_finite_maps_with_a_sentence(bundle):
    inputs = bundle.to_input(IMAGE)
    bad = np.full((1, 3, 16, 16), np.nan, np.float32)
    with pytest.raises(ParameterError) as info:
        insertion_deletion(bundle, inputs, {"saliency": bad}, target=0)
    assert "Traceback" not in str(info.value) and str(info.value).endswith(".")
