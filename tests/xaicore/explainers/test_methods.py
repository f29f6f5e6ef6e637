"""Explanation methods: golden values on hand-weighted models, and the contract every method keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.explain_models import hooks_left, images, init_weights, make_bundle, shapes_bundle, tiny_bundle
from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.explainers.api import attribute
from xaicore.explainers.baselines import make_baseline
from xaicore.explainers.registry import get_method, list_methods
from xaicore.models.bundle import fingerprint

ALL_METHODS = (
    "saliency",
    "input_x_gradient",
    "deconvolution",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "gradcam_pp",
    "xgradcam",
    "layercam",
    "scorecam",
    "integrated_gradients",
    "smoothgrad",
    "deeplift",
    "deeplift_shap",
    "gradient_shap",
    "occlusion",
    "lrp",
)


def test_every_method_is_registered_with_description_and_flags() -> None:
    assert tuple(list_methods()) == ALL_METHODS
    for name in ALL_METHODS:
        spec = get_method(name)
        assert len(spec.description) > 120, name
        assert spec.title and spec.title != name
    assert {n for n in ALL_METHODS if get_method(n).stochastic} == {"smoothgrad", "deeplift_shap", "gradient_shap"}
    cams = {"gradcam", "guided_gradcam", "gradcam_pp", "xgradcam", "layercam", "scorecam"}
    assert {n for n in ALL_METHODS if get_method(n).needs_layer} == cams
    assert {n for n in ALL_METHODS if get_method(n).single_pass} == {
        "saliency",
        "input_x_gradient",
        "deconvolution",
        "guided_backprop",
        *(cams - {"scorecam"}),
    }
    assert {n for n in ALL_METHODS if get_method(n).per_channel} == {"scorecam"}
    assert {n for n in ALL_METHODS if get_method(n).hook_based} == {
        "deconvolution",
        "guided_backprop",
        "guided_gradcam",
        "deeplift",
        "deeplift_shap",
        "lrp",
    }
    assert get_method("Integrated Gradients").name == "integrated_gradients"


def test_parameters_are_validated() -> None:
    spec = get_method("integrated_gradients")
    assert spec.resolve_params({"steps": "8"}) == {"steps": 8}
    assert spec.resolve_params({"steps": 0}) == {"steps": 0}  # chosen automatically
    with pytest.raises(ParameterError):
        spec.resolve_params({"steps": -1})
    with pytest.raises(ParameterError):
        spec.resolve_params({"samples": 3})
    relu = get_method("gradcam")
    assert relu.resolve_params({"relu": "false"}) == {"relu": False}
    assert relu.resolve_params({"relu": "True"}) == {"relu": True}
    assert relu.resolve_params({"relu": 0}) == {"relu": False}
    with pytest.raises(ParameterError, match="relu must be a bool"):
        relu.resolve_params({"relu": "maybe"})


# ----------------------------------------------------------------------- linear model: exact values

LINEAR_SHAPE = (3, 4, 4)


def _linear_bundle():
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    j = torch.arange(48, dtype=torch.float32)
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([((j * 7) % 11 - 5) / 10, ((j * 5 + 3) % 13 - 6) / 10]))
        net[1].bias.copy_(torch.tensor([0.1, -0.2]))
    return make_bundle(net, input_size=LINEAR_SHAPE[1:], cam_layer="net.1")


@pytest.fixture(scope="module")
def linear():
    bundle = _linear_bundle()
    x = images(1, LINEAR_SHAPE[1:], seed=3)
    w = bundle.model.net[1].weight[1].detach().view(1, *LINEAR_SHAPE)
    return bundle, x, w


def _attr(bundle, x, method, **kw):
    return attribute(bundle, x, method=method, target=1, **kw)


def test_linear_gradient_methods_are_exact(linear) -> None:
    bundle, x, w = linear
    torch.testing.assert_close(_attr(bundle, x, "saliency").values, w.abs(), rtol=0, atol=0)
    torch.testing.assert_close(_attr(bundle, x, "input_x_gradient").values, x * w, rtol=0, atol=0)
    # no ReLU: the modified backward passes are the plain gradient
    torch.testing.assert_close(_attr(bundle, x, "guided_backprop").values, w, rtol=0, atol=0)
    torch.testing.assert_close(_attr(bundle, x, "deconvolution").values, w, rtol=0, atol=0)
    # the gradient of a linear model is the same at every noisy point
    torch.testing.assert_close(_attr(bundle, x, "smoothgrad").values, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("baseline", ["black", "blur", "mean"])
def test_linear_path_methods_equal_difference_times_weight(linear, baseline: str) -> None:
    bundle, x, w = linear
    b = make_baseline(baseline, x, generator=torch.Generator())
    expected = (x - b) * w
    ig = _attr(bundle, x, "integrated_gradients", baseline=baseline, params={"steps": 5})
    torch.testing.assert_close(ig.values, expected, rtol=1e-5, atol=1e-6)
    assert abs(float(ig.delta[0])) < 1e-5
    dl = _attr(bundle, x, "deeplift", baseline=baseline)
    torch.testing.assert_close(dl.values, expected, rtol=1e-5, atol=1e-6)
    assert abs(float(dl.delta[0])) < 1e-5
    # without jitter every reference is the baseline itself, and alpha drops out
    for method in ("gradient_shap", "deeplift_shap"):
        out = _attr(bundle, x, method, baseline=baseline, params={"reference_noise": 0.0})
        torch.testing.assert_close(out.values, expected, rtol=1e-5, atol=1e-6)


def test_linear_lrp_is_input_times_weight(linear) -> None:
    bundle, x, w = linear
    # the epsilon rule on the one linear layer, biases included: each pixel gets x * w, and the
    # bias (-0.2) keeps its share, reported as the bias relevance
    params = {"composite": "epsilon_alpha2_beta1", "biases": "include", "epsilon": 1e-9}
    out = _attr(bundle, x, "lrp", params=params)
    torch.testing.assert_close(out.values, x * w, rtol=1e-5, atol=1e-7)
    assert float(out.details["bias_relevance"][0]) == pytest.approx(-0.2, abs=1e-5)
    assert float(out.delta[0]) == pytest.approx(0.2, abs=1e-5)  # sum - f(x) = -bias
    # biases excluded: the whole score is shared in proportion to x * w
    out = _attr(bundle, x, "lrp", params={**params, "biases": "exclude"})
    share = (x * w).sum()
    torch.testing.assert_close(out.values, x * w * (share - 0.2) / share, rtol=1e-5, atol=1e-7)
    assert abs(float(out.delta[0])) < 1e-5


def test_linear_occlusion_by_hand(linear) -> None:
    bundle, x, w = linear
    out = _attr(bundle, x, "occlusion", params={"window": 2, "stride": 2}).values[0]
    contrib = (x * w)[0].sum(0)  # occluding with black removes w * x of the covered pixels
    for r in range(0, 4, 2):
        for c in range(0, 4, 2):
            drop = contrib[r : r + 2, c : c + 2].sum()
            torch.testing.assert_close(out[:, r : r + 2, c : c + 2], drop.expand(3, 2, 2), rtol=1e-5, atol=1e-6)


def test_occlusion_with_overlapping_windows_averages_the_covering_windows(linear) -> None:
    bundle, x, w = linear
    out = _attr(bundle, x, "occlusion", params={"window": 3, "stride": 2}).values[0, 0]
    contrib = (x * w)[0].sum(0)
    starts = [0, 1]  # 0, then flush with the far edge (4 - 3)
    total = torch.zeros(4, 4)
    count = torch.zeros(4, 4)
    for r in starts:
        for c in starts:
            total[r : r + 3, c : c + 3] += contrib[r : r + 3, c : c + 3].sum()
            count[r : r + 3, c : c + 3] += 1
    torch.testing.assert_close(out, total / count, rtol=1e-5, atol=1e-6)


def test_occlusion_windows_must_fit_and_cover_the_image(linear) -> None:
    bundle, x, _ = linear
    with pytest.raises(ParameterError, match="larger than the image"):
        _attr(bundle, x, "occlusion", params={"window": 5})
    with pytest.raises(ParameterError, match="uncovered"):
        _attr(bundle, x, "occlusion", params={"window": 2, "stride": 3})


# ---------------------------------------------------------- hand-weighted 2-layer ReLU network
#
# x (6 values, read as (3, 1, 2)) -> Linear W1, b1 -> ReLU -> Linear W2, b2.
# z = W1 x + b1 = [0.25, -0.25] (unit 2 inactive); on the black baseline z0 = b1 = [-0.25, -1.5].
# DeepLift's rescale multipliers: (relu(z) - relu(z0)) / (z - z0) = [0.25 / 0.5, 0 / 1.25] = [0.5, 0].

X6 = [0.5, 1.0, 0.25, 0.75, 1.0, 0.25]
W1 = [[1.0, -1.0, 2.0, 0.0, 1.0, -2.0], [-1.0, 1.0, 0.0, 2.0, -1.0, 1.0]]
B1 = [-0.25, -1.5]
W2 = [[2.0, 1.0], [-1.0, 3.0]]
B2 = [0.0, 0.1]

# target -> method -> expected attribution of the 6 inputs, worked out by hand
RELU_GOLDEN = {
    0: {
        "saliency": [2, 2, 4, 0, 2, 4],  # |2 * W1[0]|: only unit 1 is active
        "guided_backprop": [2, -2, 4, 0, 2, -4],  # relu([2, 1] * [1, 0]) = [2, 0] -> 2 * W1[0]
        "deconvolution": [1, -1, 4, 2, 1, -3],  # relu([2, 1]) -> 2 * W1[0] + W1[1]
        "deeplift": [0.5, -1.0, 0.5, 0.0, 1.0, -0.5],  # x * (0.5 * 2 * W1[0]); sums to f(x) - f(0) = 0.5
    },
    1: {
        "saliency": [1, 1, 2, 0, 1, 2],  # |-1 * W1[0]|
        "guided_backprop": [0, 0, 0, 0, 0, 0],  # relu([-1, 3] * [1, 0]) = 0
        "deconvolution": [-3, 3, 0, 6, -3, 3],  # relu([-1, 3]) = [0, 3] -> 3 * W1[1]
        "deeplift": [-0.25, 0.5, -0.25, 0.0, -0.5, 0.25],  # x * (0.5 * -1 * W1[0]); sums to -0.25
    },
}


def _relu_bundle():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(W1))
        net[1].bias.copy_(torch.tensor(B1))
        net[3].weight.copy_(torch.tensor(W2))
        net[3].bias.copy_(torch.tensor(B2))
    return make_bundle(net, input_size=(1, 2), cam_layer="net.1")


@pytest.mark.parametrize("target", [0, 1])
@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "deconvolution", "deeplift"])
def test_relu_network_golden_values(method: str, target: int) -> None:
    bundle = _relu_bundle()
    x = torch.tensor(X6).view(1, 3, 1, 2)
    out = attribute(bundle, x, method=method, target=target)
    expected = torch.tensor(RELU_GOLDEN[target][method], dtype=torch.float32).view(1, 3, 1, 2)
    torch.testing.assert_close(out.values, expected, rtol=1e-6, atol=1e-6)
    if method == "deeplift":
        assert abs(float(out.delta[0])) < 1e-6


# ------------------------------------------------------------------ hand-weighted Grad-CAM
#
# 1x1 conv K (2 channels), ReLU, global average pool, Linear V. On a 2x2 image the layer
# activations are A0 = x0 - x2 and A1 = 0.5 x0 + x1; dF/dA_k = V[t, k] / 4 where A_k > 0.

GC_X = [[[1.0, 0.0], [0.5, 0.25]], [[0.0, 1.0], [0.5, 0.5]], [[0.5, 0.5], [0.0, 1.0]]]
GC_K = [[1.0, 0.0, -1.0], [0.5, 1.0, 0.0]]
GC_V = [[1.0, -1.0], [2.0, 1.0]]


def _cam_bundle():
    net = nn.Sequential(
        nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, bias=False)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(GC_K).view(2, 3, 1, 1))
        net[4].weight.copy_(torch.tensor(GC_V))
    return make_bundle(net, input_size=(2, 2), cam_layer="net.0")


def test_gradcam_golden_values() -> None:
    bundle = _cam_bundle()
    x = torch.tensor(GC_X).unsqueeze(0)
    # target 1: channel weights mean(2/4 * [1,0,1,0]) = 0.25 and mean(1/4 * 1) = 0.25;
    # cam = 0.25 * (A0 + A1) = [[0.25, 0.125], [0.3125, -0.03125]] -> ReLU
    out = attribute(bundle, x, method="gradcam", target=1).values
    expected = torch.tensor([[0.25, 0.125], [0.3125, 0.0]]).expand(1, 3, 2, 2)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    # target 0: weights 0.125 and -0.25; cam = 0.125 A0 - 0.25 A1, negative everywhere
    raw = attribute(bundle, x, method="gradcam", target=0, params={"relu": False}).values
    expected0 = torch.tensor([[-0.0625, -0.3125], [-0.125, -0.25]]).expand(1, 3, 2, 2)
    torch.testing.assert_close(raw, expected0, rtol=1e-6, atol=1e-7)
    assert not attribute(bundle, x, method="gradcam", target=0).values.any()


# ------------------------------------------------------------- the contract of every method


@pytest.fixture(scope="module", params=["tiny", "shapesnet"])
def model_case(request):
    bundle = tiny_bundle(seed=1) if request.param == "tiny" else shapes_bundle(seed=1)
    x = images(2, bundle.input_size, seed=5)
    target = bundle.logits(x).argmax(1)
    return bundle, x, target


FAST = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "deeplift_shap": {"references": 2},
    "gradient_shap": {"samples": 3},
    "occlusion": {"window": 8, "stride": 8},
}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_keeps_the_contract(model_case, method: str) -> None:
    bundle, x, target = model_case
    before = fingerprint(bundle.model)
    params = FAST.get(method, {})
    first = attribute(bundle, x, method=method, target=target, seed=7, params=params)
    assert first.values.shape == x.shape
    assert first.values.dtype == torch.float32
    assert torch.isfinite(first.values).all()
    assert first.values.any()
    assert hooks_left(bundle.model) == []
    assert fingerprint(bundle.model) == before
    again = attribute(bundle, x, method=method, target=target, seed=7, params=params)
    assert torch.equal(first.values, again.values)
    other_seed = attribute(bundle, x, method=method, target=target, seed=8, params=params)
    assert torch.equal(first.values, other_seed.values) != get_method(method).stochastic
    if first.delta is not None:
        assert first.delta.shape == (x.shape[0],) and torch.isfinite(first.delta).all()


@pytest.mark.parametrize("method", ["saliency", "gradcam", "integrated_gradients", "occlusion", "deeplift"])
def test_batched_result_equals_one_image_at_a_time(method: str) -> None:
    bundle = tiny_bundle(seed=2)
    x = images(3, bundle.input_size, seed=9)
    target = torch.tensor([0, 2, 3])
    params = FAST.get(method, {})
    batch = attribute(bundle, x, method=method, target=target, params=params).values
    for i in range(3):
        single = attribute(bundle, x[i : i + 1], method=method, target=int(target[i]), params=params).values
        torch.testing.assert_close(batch[i : i + 1], single, rtol=1e-4, atol=1e-6)


def test_lrp_without_biases_is_batch_independent_up_to_rounding_on_its_peak() -> None:
    # With biases excluded a neuron active through its bias alone shares its relevance over
    # near-zero contributions, so float rounding that differs with the batch size moves up to
    # ~1.5e-4 of the map's peak on this random network (the biases-included rule stays within 1e-8).
    bundle = tiny_bundle(seed=2)
    x = images(3, bundle.input_size, seed=9)
    target = torch.tensor([0, 2, 3])
    for biases, tolerance in (("include", 1e-6), ("exclude", 1e-3)):
        params = {"biases": biases}
        batch = attribute(bundle, x, method="lrp", target=target, params=params).values
        for i in range(3):
            single = attribute(bundle, x[i : i + 1], method="lrp", target=int(target[i]), params=params).values
            assert float((batch[i] - single[0]).abs().max()) <= tolerance * float(single.abs().max())


def test_unavailable_method_raises_with_the_bundle_reason() -> None:
    bundle = tiny_bundle(unavailable={"lrp": "LRP has no rule for the Foo layer."})
    with pytest.raises(MethodUnavailable, match="Foo layer"):
        attribute(bundle, images(1, (16, 16)), method="lrp", target=0)


def test_lrp_refuses_a_layer_without_rule_and_leaves_the_model_alone() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    bundle = make_bundle(init_weights(net, seed=4), input_size=(16, 16), cam_layer="net.0")
    with pytest.raises(MethodUnavailable, match="GELU"):
        attribute(bundle, images(1, (16, 16)), method="lrp", target=0)
    assert hooks_left(bundle.model) == []


def test_target_out_of_range_is_refused() -> None:
    bundle = tiny_bundle()
    with pytest.raises(ParameterError, match="out of range"):
        attribute(bundle, images(1, (16, 16)), method="saliency", target=4)
    with pytest.raises(ParameterError, match="one target class per image"):
        attribute(bundle, images(2, (16, 16)), method="saliency", target=[0, 1, 2])


def test_explaining_a_private_copy_uses_its_own_weights_and_layer() -> None:
    bundle = tiny_bundle(seed=3)
    x = images(1, (16, 16), seed=1)
    copy = bundle.private_copy()
    with torch.no_grad():
        copy.model.net.features[3].weight.mul_(-1.0)
    before = fingerprint(bundle.model)
    for method in ("gradcam", "saliency"):
        params = {"relu": False} if method == "gradcam" else None
        shared = attribute(bundle, x, method=method, target=1, params=params)
        private = attribute(copy, x, method=method, target=1, params=params)
        assert not torch.allclose(shared.values, private.values)
        again = attribute(bundle, x, method=method, target=1, params=params)
        torch.testing.assert_close(shared.values, again.values, rtol=0, atol=0)
    assert fingerprint(bundle.model) == before
    assert np.isfinite(private.values.numpy()).all()
