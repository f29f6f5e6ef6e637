"""Estimates before a run: each method's work in passes (counted against the images the model
really sees), the pass time measured once and without touching the global random state, and the
arithmetic and wording of an estimate."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.explain_models import images, tiny_bundle
from xaicore.explainers import cost
from xaicore.explainers.api import attribute
from xaicore.explainers.methods import FORWARD_UNITS
from xaicore.explainers.occlusion import forward_passes
from xaicore.explainers.registry import get_method, list_methods
from xaicore.models.inference import plain_forwards


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
    try:  # the plain model, whose hooks see every pass (the inference copy makes the same passes unseen)
        with plain_forwards():
            attribute(bundle, x, method="occlusion", target=0, params={"window": window, "stride": stride})
    finally:
        counter.close()
    assert forward_passes(*bundle.input_size, window, stride) == counter.forward_images
    units = cost.method_units("occlusion", {"window": window, "stride": stride}, bundle.input_size)
    assert units == pytest.approx(counter.forward_images * FORWARD_UNITS)


@pytest.mark.parametrize(
    ("method", "param", "forward_only"),
    [
        ("integrated_gradients", "steps", 2),  # and the input and the baseline, for the convergence delta
        ("smoothgrad", "samples", 0),
        ("gradient_shap", "samples", 0),
    ],
)
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


def test_every_method_has_a_positive_cost_and_single_pass_ones_cost_one_per_backward_rule() -> None:
    for name in list_methods():
        spec = get_method(name)
        units = cost.method_units(name, None, (224, 224), channels=64 if spec.per_channel else 0)
        assert units >= 1.0, name
        if spec.single_pass:
            assert spec.fused is not None
            assert units == float(len(spec.fused.backward)), name
    assert cost.method_units("guided_gradcam", None, (224, 224)) == 2.0
    # Score-CAM: the pass that records the layer and one forward pass per channel
    assert cost.method_units("scorecam", None, (224, 224), channels=512) == pytest.approx(513 * FORWARD_UNITS)


def test_settings_the_method_refuses_cost_nothing() -> None:
    assert cost.method_units("occlusion", {"window": 40}, (16, 16)) == 0.0


def test_an_estimate_multiplies_units_images_and_pass_time_and_picks_the_quick_ones() -> None:
    bundle = tiny_bundle(seed=1)
    params = {"integrated_gradients": {"steps": 30}}
    found = cost.estimate(
        bundle, ["saliency", "integrated_gradients", "guided_gradcam"], params=params, images=2, repeat=3, pass_s=0.1
    )
    ig = 3 * (30 + 2 * FORWARD_UNITS)
    assert dict(found.units) == pytest.approx({"saliency": 3.0, "integrated_gradients": ig, "guided_gradcam": 6.0})
    assert found.seconds("integrated_gradients") == pytest.approx(ig * 2 * 0.1)
    assert found.total_s == pytest.approx((3 + ig + 6) * 2 * 0.1)
    assert found.quick(budget_s=1.5) == ["saliency", "guided_gradcam"]


def test_the_pass_time_is_the_fastest_of_a_few_measurements_and_leaves_the_random_state_alone(monkeypatch):
    bundle = tiny_bundle(seed=2)
    state = torch.get_rng_state()
    monkeypatch.setattr(cost, "_PASS_S", {})
    first = cost.measured_pass_s(bundle)  # real passes
    assert first > 0 and torch.equal(torch.get_rng_state(), state)
    monkeypatch.setattr(cost, "_PASS_S", {})
    times = iter([0.9, 0.2, 0.5, 0.3, 0.4, 0.01])  # the first measured on a busy machine
    calls = []
    monkeypatch.setattr(cost, "pass_time", lambda b, **kw: calls.append(kw) or {"forward_backward_s": next(times)})
    seen = [cost.measured_pass_s(bundle) for _ in range(7)]
    assert seen == [0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]  # five measurements, then no more passes
    assert len(calls) == cost.SAMPLES and calls[0]["repeats"] == 3 and calls[1]["repeats"] == 1
    assert cost.estimate(bundle, ["saliency"]).pass_s == 0.2


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.3, "under a second"), (1.2, "about 2 s"), (40, "about 40 s"), (200, "about 3 min"), (7200, "about 2.0 h")],
)
def test_durations_are_said_in_words(seconds, words) -> None:
    assert cost.describe_seconds(seconds) == words


def test_run_starts_everything_automatic_runs_only_the_quick_methods_not_stopped() -> None:
    found = cost.Estimate(units={"saliency": 1.0, "smoothgrad": 16.0, "deeplift": 3.0, "occlusion": 90.4}, pass_s=0.1)
    assert cost.plan_run(found, pressed=True, auto=False, stopped={"deeplift"}) == list(found.units)
    assert cost.plan_run(found, pressed=False, auto=False) == []
    assert cost.plan_run(found, pressed=False, auto=True) == ["saliency", "deeplift"]  # 0.1 s and 0.3 s
    assert cost.plan_run(found, pressed=False, auto=True, stopped={"deeplift"}) == ["saliency"]
