"""The batched methods against independent references: captum's own classes, and slow, obvious
per-sample loops fed with the same random draws."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
)

from tests.helpers.explain_models import TinyConvNet, images, make_bundle, shapes_bundle, tiny_bundle
from xaicore.errors import OutOfMemory
from xaicore.explainers import gradients, shap, smoothgrad
from xaicore.explainers.api import attribute, method_generator
from xaicore.explainers.baselines import jittered_references, make_baseline


@pytest.fixture(scope="module")
def case():
    bundle = tiny_bundle(seed=11)
    x = images(2, bundle.input_size, seed=12)
    target = torch.tensor([1, 3])
    return bundle, x, target


def _grad(model, point: torch.Tensor, target: int) -> torch.Tensor:
    """Slow reference: the gradient of one class score at one image."""
    p = point.clone().unsqueeze(0).requires_grad_(True)
    score = model(p)[0, target]
    (g,) = torch.autograd.grad(score, p)
    return g[0]


def _baseline(kind: str, method: str, x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Generator]:
    # the api seeds one generator per method and builds the baseline from it first
    g = method_generator(seed, method, x.device)
    return make_baseline(kind, x, generator=g), g


def test_smoothgrad_equals_a_slow_loop(case) -> None:
    bundle, x, target = case
    out = attribute(bundle, x, method="smoothgrad", target=target, seed=4, params={"samples": 5, "noise": 0.2})
    _, g = _baseline("black", "smoothgrad", x, seed=4)
    noise = smoothgrad.draw_noise(x, samples=5, noise=0.2, generator=g)
    for i in range(2):
        expected = sum(_grad(bundle.model, x[i] + noise[s, i], int(target[i])) for s in range(5)) / 5
        torch.testing.assert_close(out.values[i], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("baseline", ["black", "noise"])
def test_gradient_shap_equals_a_slow_loop(case, baseline: str) -> None:
    bundle, x, target = case
    params = {"samples": 6, "reference_noise": 0.15}
    out = attribute(bundle, x, method="gradient_shap", target=target, seed=2, params=params, baseline=baseline)
    b, g = _baseline(baseline, "gradient_shap", x, seed=2)
    refs, alphas = shap.draw_samples(b, samples=6, reference_noise=0.15, generator=g)
    for i in range(2):
        total = torch.zeros_like(x[i])
        for s in range(6):
            r = refs[s, i]
            point = r + alphas[s, i] * (x[i] - r)
            total += _grad(bundle.model, point, int(target[i])) * (x[i] - r)
        torch.testing.assert_close(out.values[i], total / 6, rtol=1e-5, atol=1e-7)


def test_deeplift_shap_equals_mean_of_captum_deeplift_per_reference(case) -> None:
    bundle, x, target = case
    params = {"references": 3, "reference_noise": 0.2}
    out = attribute(bundle, x, method="deeplift_shap", target=target, seed=5, params=params, baseline="blur")
    b, g = _baseline("blur", "deeplift_shap", x, seed=5)
    refs = jittered_references(b, count=3, noise=0.2, generator=g)
    for i in range(2):
        per_ref = []
        deltas = []
        for k in range(3):
            a, d = DeepLift(bundle.model).attribute(
                x[i : i + 1].clone().requires_grad_(True),
                baselines=refs[k, i : i + 1],
                target=int(target[i]),
                return_convergence_delta=True,
            )
            per_ref.append(a[0].detach())
            deltas.append(float(d[0]))
        torch.testing.assert_close(out.values[i], sum(per_ref) / 3, rtol=1e-5, atol=1e-7)
        assert float(out.delta[i]) == pytest.approx(sum(deltas) / 3, abs=1e-6)


@pytest.mark.parametrize(
    "method,reference",
    [("guided_backprop", GuidedBackprop), ("deconvolution", Deconvolution)],
)
@pytest.mark.parametrize("which", ["tiny", "shapes"])
def test_modified_relu_methods_equal_captum(case, which: str, method: str, reference) -> None:
    bundle, x, target = (
        case if which == "tiny" else (shapes_bundle(), images(2, (64, 64), seed=5), torch.tensor([0, 6]))
    )
    out = attribute(bundle, x, method=method, target=target)
    expected = reference(bundle.model).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(out.values, expected.detach(), rtol=1e-5, atol=1e-7)
    assert not any(m._forward_hooks or m._backward_hooks for m in bundle.model.modules())


@pytest.mark.parametrize("steps", [1, 7, 20])
def test_integrated_gradients_equals_captum(case, steps: int) -> None:
    bundle, x, target = case
    out = attribute(bundle, x, method="integrated_gradients", target=target, params={"steps": steps}, baseline="mean")
    b, _ = _baseline("mean", "integrated_gradients", x)
    ref, delta = IntegratedGradients(bundle.model).attribute(
        x, baselines=b, target=target, n_steps=steps, method="gausslegendre", return_convergence_delta=True
    )
    torch.testing.assert_close(out.values, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.delta, delta.float(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("window,stride", [(4, 2), (8, 4), (3, 1)])
def test_occlusion_equals_captum_when_the_stride_lands_on_the_edge(case, window: int, stride: int) -> None:
    bundle, x, target = case
    out = attribute(
        bundle, x, method="occlusion", target=target, params={"window": window, "stride": stride}, baseline="blur"
    )
    b, _ = _baseline("blur", "occlusion", x)
    ref = Occlusion(bundle.model).attribute(
        x,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=b,
        target=target,
        perturbations_per_eval=7,
    )
    torch.testing.assert_close(out.values, ref, rtol=1e-4, atol=1e-6)


def test_gradcam_and_guided_gradcam_equal_captum() -> None:
    bundle = shapes_bundle(seed=3)
    x = images(2, bundle.input_size, seed=1)
    target = bundle.logits(x).argmax(1)
    layer = bundle.module(bundle.cam_layer)
    cam = LayerGradCam(bundle.model, layer).attribute(x, target=target, relu_attributions=True)
    expected = LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear").expand(-1, 3, -1, -1)
    torch.testing.assert_close(attribute(bundle, x, method="gradcam", target=target).values, expected)
    guided = GuidedGradCam(bundle.model, layer).attribute(x, target=target, interpolate_mode="bilinear")
    torch.testing.assert_close(attribute(bundle, x, method="guided_gradcam", target=target).values, guided)


def test_lrp_conserves_relevance_through_the_normalization() -> None:
    net = TinyConvNet(seed=6)
    for m in net.modules():
        if hasattr(m, "bias") and m.bias is not None:
            m.bias = None  # without biases nothing absorbs relevance
    bundle = make_bundle(
        net, input_size=(16, 16), cam_layer="net.features.3", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    )
    x = images(2, (16, 16), seed=2)
    target = bundle.logits(x).argmax(1)
    out = attribute(bundle, x, method="lrp", target=target, params={"biases": "include"})
    scores = bundle.logits(x).gather(1, target.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(out.values.sum((1, 2, 3)), scores, rtol=1e-4, atol=1e-5)
    assert out.delta.abs().max() < 1e-4
    assert out.details["bias_relevance"].abs().max() < 1e-4


def test_results_do_not_depend_on_the_chunk_size(case, monkeypatch) -> None:
    bundle, x, target = case
    params = {
        "integrated_gradients": {"steps": 9},
        "smoothgrad": {"samples": 7},
        "occlusion": {"window": 4, "stride": 2},
        "lrp": {},
    }
    full = {m: attribute(bundle, x, method=m, target=target, seed=1, params=p).values for m, p in params.items()}
    monkeypatch.setattr(gradients, "chunk_size", lambda _sample: 3)
    for module in ("xaicore.explainers.occlusion", "xaicore.explainers.methods", "xaicore.explainers.deeplift"):
        monkeypatch.setattr(f"{module}.chunk_size", lambda _sample: 3)
    for m, p in params.items():
        small = attribute(bundle, x, method=m, target=target, seed=1, params=p).values
        torch.testing.assert_close(small, full[m], rtol=1e-5, atol=1e-7)


class _Fussy(torch.nn.Module):
    """Runs the wrapped net, but raises an out-of-memory error for batches over ``limit``."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit = net, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_halves_the_chunk_and_gives_the_same_result(case) -> None:
    bundle, x, target = case
    expected = attribute(bundle, x, method="integrated_gradients", target=target, params={"steps": 12}).values
    fussy = make_bundle(_Fussy(bundle.model.net, limit=100), input_size=(16, 16), cam_layer="net.net.features.3")
    fussy.model.net.limit = 5
    got = attribute(fussy, x, method="integrated_gradients", target=target, params={"steps": 12}).values
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    fussy.model.net.limit = 0
    with pytest.raises(OutOfMemory):
        attribute(fussy, x, method="smoothgrad", target=target)
