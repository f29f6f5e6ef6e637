"""The fused pass: plain gradients, Guided Backprop and Deconvolution from one batch of rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.sanity_fixtures import TinyNet, seeded_weights
from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.explainers import modified_relu
from xaicore.explainers.fused import CapturedFusedPass, fused_pass
from xaicore.explainers.gradients import GradientPass, target_scores
from xaicore.models.default import load_default_bundle

CUDA = torch.cuda.is_available()


class TwoLayer(nn.Module):
    """score = v . relu(W x): small enough to differentiate by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(2, 2, bias=False)
        self.relu = nn.ReLU()
        self.second = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
            self.second.weight.copy_(torch.tensor([[-2.0, 3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.relu(self.first(x)))


def gradient_pass(model: nn.Module, x: torch.Tensor, t: torch.Tensor, *, layer: nn.Module) -> GradientPass:
    """The plain reference: one forward with a hook on ``layer``, one autograd.grad call."""
    kept = []
    handle = layer.register_forward_hook(lambda _m, _a, out: kept.append(out))
    try:
        xi = x.detach().requires_grad_(True)
        scores = target_scores(model(xi), t)
    finally:
        handle.remove()
    grad_x, grad_layer = torch.autograd.grad(scores.sum(), [xi, kept[0]])
    return GradientPass(grad_x, kept[0].detach(), grad_layer)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_each_rule_by_hand() -> None:
    # x = (1, -1): the first unit is active, the second is not; the score's gradient into the
    # ReLU is (-2, 3). Plain: (-2, 0); guided: relu(-2, 3) * active = (0, 0); deconv: (0, 3).
    model = TwoLayer()
    x = torch.tensor([[1.0, -1.0]])
    for stack in (True, False):
        out = fused_pass(model, x, torch.tensor([0]), rules=("plain", "guided", "deconv"), stack=stack)
        assert out.grads["plain"].tolist() == [[-2.0, 0.0]]
        assert out.grads["guided"].tolist() == [[0.0, 0.0]]
        assert out.grads["deconv"].tolist() == [[0.0, 3.0]]
    assert _hooks(model) == 0


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return default_bundle  # shared, read only (tests/conftest.py)


@pytest.fixture(scope="module")
def batch(bundle):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0, 3, 5, 7])


def test_stacked_rows_equal_the_separate_passes(bundle, batch) -> None:
    x, t = batch
    layer = bundle.module(bundle.cam_layer)
    out = fused_pass(bundle.model, x, t, rules=("plain", "guided", "deconv"), layer=layer, stack=True)
    plain = gradient_pass(bundle.model, x, t, layer=layer)
    close = dict(rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.grads["plain"], plain.input_grad, **close)
    torch.testing.assert_close(out.cam.activation, plain.activation, **close)
    torch.testing.assert_close(out.cam.layer_grad, plain.layer_grad, **close)
    torch.testing.assert_close(out.grads["guided"], modified_relu.guided_backprop(bundle.model, x, t), **close)
    torch.testing.assert_close(out.grads["deconv"], modified_relu.deconvolution(bundle.model, x, t), **close)
    assert _hooks(bundle.model) == 0


def test_unstacked_rules_are_the_separate_passes_exactly(bundle, batch) -> None:
    x, t = batch
    layer = bundle.module(bundle.cam_layer)
    out = fused_pass(bundle.model, x, t, rules=("deconv", "plain", "guided"), layer=layer, stack=False)
    plain = gradient_pass(bundle.model, x, t, layer=layer)
    assert torch.equal(out.grads["plain"], plain.input_grad)
    assert torch.equal(out.cam.layer_grad, plain.layer_grad)
    assert torch.equal(out.grads["guided"], modified_relu.guided_backprop(bundle.model, x, t))
    assert torch.equal(out.grads["deconv"], modified_relu.deconvolution(bundle.model, x, t))


def test_on_the_cpu_rules_are_not_stacked_by_default(bundle, batch) -> None:
    x, t = batch
    default = fused_pass(bundle.model, x, t, rules=("plain", "guided"))
    separate = fused_pass(bundle.model, x, t, rules=("plain", "guided"), stack=False)
    assert all(torch.equal(default.grads[r], separate.grads[r]) for r in ("plain", "guided"))


def test_chunks_equal_one_batch(bundle, batch, monkeypatch) -> None:
    import xaicore.explainers.fused as fused

    x, t = batch
    whole = fused_pass(bundle.model, x, t, rules=("plain", "deconv"), stack=True)
    monkeypatch.setattr(fused, "chunk_size", lambda sample: 2)  # one image per chunk (two rules)
    parts = fused_pass(bundle.model, x, t, rules=("plain", "deconv"), stack=True)
    for rule in ("plain", "deconv"):
        torch.testing.assert_close(parts.grads[rule], whole.grads[rule], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rules", [(), ("plain", "plain"), ("sideways",)])
def test_bad_rules_are_refused(rules) -> None:
    with pytest.raises(ParameterError, match="rules must be"):
        fused_pass(TwoLayer(), torch.zeros(1, 2), torch.tensor([0]), rules=rules)


def test_the_cam_layer_needs_plain_rows() -> None:
    net = seeded_weights(TinyNet(), 0)
    with pytest.raises(ParameterError, match="plain"):
        fused_pass(net, torch.zeros(1, 3, 8, 8), torch.tensor([0]), rules=("guided",), layer=net.conv2)


class Transposing(nn.Module):
    """A ReLU applied to a tensor whose first dimension is not the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x.flatten(1).t()).sum(0, keepdim=True).t().expand(-1, 2)


def test_rows_that_cannot_be_told_apart_are_refused_and_hooks_removed() -> None:
    model = Transposing()
    with pytest.raises(MethodUnavailable, match="batch"):
        fused_pass(model, torch.rand(2, 3, 2, 2), torch.tensor([0, 1]), rules=("plain", "guided"), stack=True)
    assert _hooks(model) == 0


def test_a_captured_pass_needs_cuda() -> None:
    with pytest.raises(ParameterError, match="CUDA"):
        CapturedFusedPass(TwoLayer(), torch.zeros(1, 2), torch.tensor([0]), rules=("plain",))


# ---------------------------------------------------------------- CUDA graphs (GPU machines only)

needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@needs_cuda
def test_replays_follow_in_place_weight_changes() -> None:
    bundle = load_default_bundle(device=torch.device("cuda"))
    model = bundle.private_copy().model
    x = torch.rand(2, 3, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    t = torch.tensor([1, 2], device="cuda")
    layer = model.get_submodule(bundle.cam_layer)
    rules = ("plain", "guided", "deconv")
    captured = CapturedFusedPass(model, x, t, rules=rules, layer=layer)
    for step in range(3):
        if step:
            with torch.no_grad():
                model.get_submodule(bundle.layers[-step]).weight.mul_(-0.5)
        replay = captured()
        eager = fused_pass(model, x, t, rules=rules, layer=layer, stack=True)
        # TF32 convolutions may pick other kernels for the eager pass: agreement to ~1e-5
        for rule in rules:
            torch.testing.assert_close(replay.grads[rule], eager.grads[rule], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(replay.cam.layer_grad, eager.cam.layer_grad, rtol=1e-4, atol=1e-5)
    captured.set_target(torch.tensor([3, 4], device="cuda"))
    eager = fused_pass(model, x, torch.tensor([3, 4], device="cuda"), rules=rules, layer=layer, stack=True)
    torch.testing.assert_close(captured().grads["plain"], eager.grads["plain"], rtol=1e-4, atol=1e-5)


@needs_cuda
def test_sanity_with_graphs_equals_the_eager_run(monkeypatch) -> None:
    from xaicore.checks.sanity import run_sanity

    bundle = load_default_bundle(device=torch.device("cuda"))
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    methods = ["saliency", "input_x_gradient", "deconvolution", "guided_backprop", "gradcam", "guided_gradcam"]
    graphed = run_sanity(bundle, image, methods=methods, mode="both", seeds=[0, 1])
    assert graphed.params["computation"] == "cuda_graph"
    monkeypatch.setenv("XAI_CUDA_GRAPHS", "0")
    eager = run_sanity(bundle, image, methods=methods, mode="both", seeds=[0, 1])
    assert eager.params["computation"] == "eager"
    for metric, values in eager.values.items():
        np.testing.assert_allclose(graphed.values[metric], values, rtol=0, atol=1e-4)


@needs_cuda
def test_gax_with_graphs_equals_the_eager_run(monkeypatch) -> None:
    from xaicore.confidence.gax import run_gax

    bundle = load_default_bundle(device=torch.device("cuda"))
    images = np.random.default_rng(2).random((3, 64, 64, 3), dtype=np.float32)
    graphed = run_gax(bundle, images, target_co=20.0, max_steps=40)
    monkeypatch.setenv("XAI_CUDA_GRAPHS", "0")
    eager = run_gax(bundle, images, target_co=20.0, max_steps=40)
    for g, e in zip(graphed.images, eager.images):
        assert g.steps == e.steps and g.reached == e.reached
        np.testing.assert_allclose(g.co_curve, e.co_curve, rtol=1e-5, atol=1e-4)
        assert math.isfinite(float(g.co_curve[-1]))


def test_deeplift_and_shap_together_equal_them_apart(bundle, batch) -> None:
    from xaicore.explainers import deeplift

    x, t = batch
    base = torch.zeros_like(x)
    refs = torch.rand(3, *x.shape, generator=torch.Generator().manual_seed(5)) * 0.1
    together_dl, together_shap = deeplift.deeplift_and_shap(bundle.model, x, t, base, refs)
    alone_dl = deeplift.deeplift(bundle.model, x, base, t)
    alone_shap = deeplift.deeplift_shap(bundle.model, x, t, refs)
    for a, b in ((together_dl, alone_dl), (together_shap, alone_shap)):
        torch.testing.assert_close(a.values, b.values, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a.delta, b.delta, rtol=1e-4, atol=1e-5)
