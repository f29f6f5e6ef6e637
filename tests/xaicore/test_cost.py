"""Estimates before a run: each method's work in passes (counted against the images the model
really sees), the pass time measured once and without touching the global random state, and the
arithmetic and wording of an estimate."""

from __future__ import annotations

import pytest
import torch

from xaicore.explainers import cost
from xaicore.explainers.api import attribute
from xaicore.explainers.occlusion import forward_passes
from xaicore.explainers.methods import FORWARD_UNITS
from xaicore.explainers.registry import get_method, list_methods

from tests.xaicore._explain_models import images, tiny_bundle


class _ImageCounter:
    """Counts the images that go through the model's forward pass (forward hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forward_images = 0
        self._handle = model.register_forward_hook(self._count)

    def _count(self, _module, inputs, _output) -> None:
        self.forward_images += inputs[0].shape[0]

    def close(self) -> None:
        self._handle.remove()


@pytest.mark.parametrize(("window", "stride"), [(4, 4), (4, 2), (6, 3), (0, 0)])
def test_occlusion_units_count_the_forward_passes_it_really_makes(window, stride) -> None:
    bundle = tiny_bundle(seed=1)
    x = images(1, size=bundle.input_size)
    counter = _ImageCounter(bundle.model)
    try:
        attribute(bundle, x, method="occlusion", target=0, params={"window": window, "stride": stride})
    finally:
        counter.close()
    assert forward_passes(*bundle.input_size, window, stride) == counter.forward_images
    units = cost.method_units("occlusion", {"window": window, "stride": stride}, bundle.input_size)
    assert units == pytest.approx(counter.forward_images * FORWARD_UNITS)


@pytest.mark.parametrize(("method", "param", "forward_only"), [
    ("integrated_gradients", "steps", 2),  # and the input and the baseline, for the convergence delta
    ("smoothgrad", "samples", 0),
    ("gradient_shap", "samples", 0),
])
def test_path_and_sampling_methods_cost_one_pass_per_point(method, param, forward_only) -> None:
    bundle = tiny_bundle(seed=1)
    x = images(1, size=bundle.input_size)
    counter = _ImageCounter(bundle.model)
    try:
        attribute(bundle, x, method=method, target=0, params={param: 7})
    finally:
        counter.close()
    assert counter.forward_images == 7 + forward_only  # one forward (and backward) per point or sample
    assert cost.method_units(method, {param: 7}, bundle.input_size) == pytest.approx(7 + forward_only * FORWARD_UNITS)


def test_every_method_has_a_positive_cost_and_single_pass_ones_cost_one() -> None:
    for name in list_methods():
        spec = get_method(name)
        units = cost.method_units(name, None, (224, 224))
        assert units >= 1.0, name
        if spec.single_pass:
            assert units == 1.0, name


def test_settings_the_method_refuses_cost_nothing() -> None:
    assert cost.method_units("occlusion", {"window": 40}, (16, 16)) == 0.0


def test_an_estimate_multiplies_units_images_and_pass_time_and_picks_the_quick_ones() -> None:
    bundle = tiny_bundle(seed=1)
    params = {"integrated_gradients": {"steps": 30}}
    found = cost.estimate(bundle, ["saliency", "integrated_gradients", "guided_gradcam"], params=params, images=2,
                          repeat=3, pass_s=0.1)
    ig = 3 * (30 + 2 * FORWARD_UNITS)
    assert dict(found.units) == pytest.approx({"saliency": 3.0, "integrated_gradients": ig, "guided_gradcam": 6.0})
    assert found.seconds("integrated_gradients") == pytest.approx(ig * 2 * 0.1)
    assert found.total_s == pytest.approx((3 + ig + 6) * 2 * 0.1)
    assert found.quick(budget_s=1.5) == ["saliency", "guided_gradcam"]
    assert found.cheapest_first() == ["saliency", "guided_gradcam", "integrated_gradients"]


def test_the_pass_time_is_measured_once_per_model_and_leaves_the_random_state_alone(monkeypatch) -> None:
    bundle = tiny_bundle(seed=2)
    calls = []
    real = cost.pass_time
    monkeypatch.setattr(cost, "pass_time", lambda b, **kw: calls.append(b) or real(b, **kw))
    monkeypatch.setattr(cost, "_PASS_S", {})
    state = torch.get_rng_state()
    first = cost.measured_pass_s(bundle)
    assert torch.equal(torch.get_rng_state(), state)
    assert first > 0 and cost.measured_pass_s(bundle) == first and len(calls) == 1
    assert cost.estimate(bundle, ["saliency"]).pass_s == first


@pytest.mark.parametrize(("seconds", "words"), [(0.3, "under a second"), (1.2, "about 2 s"), (40, "about 40 s"),
                                                (200, "about 3 min"), (7200, "about 2.0 h")])
def test_durations_are_said_in_words(seconds, words) -> None:
    assert cost.describe_seconds(seconds) == words

