"""DeepLift and DeepLiftShap complete by construction: the attributions add up to the change of
the class score within 1e-4 of it, with the max-poolings written as ReLU networks
(:func:`xaicore.models.rewrite.relu_max_pool_copy`); exact rescale-rule values on a
hand-weighted conv-ReLU-max-pool network; captum's own maps where a model has no max-pooling."""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import DeepLift
from torch import nn

from tests.helpers.explain_models import TinyConvNet, images, init_weights, make_bundle
from xaicore.data.shapes import generate
from xaicore.explainers import deeplift
from xaicore.explainers.api import attribute, method_generator
from xaicore.explainers.baselines import jittered_references, make_baseline
from xaicore.models.rewrite import relu_max_pool_copy
from xaicore.models.safety import make_hook_safe

TOLERANCE = 1e-4  # relative completeness error |sum - gap| / |gap|


def _relative(out) -> torch.Tensor:
    return (out.delta.abs() / out.expected.abs()).double()


def _scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target scores of ``x`` from the model itself (not from a rewrite of it)."""
    with torch.no_grad():
        return model(x)[torch.arange(x.shape[0]), target]


# ------------------------------------------------------- the default model, 20 generated images


@pytest.fixture(scope="module")
def shapes(default_bundle):
    pictures, _labels = generate(20, seed=31, size=max(default_bundle.input_size))
    x = torch.cat([default_bundle.to_input(p) for p in pictures])
    return x, default_bundle.logits(x).argmax(1)


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_deeplift_is_complete_on_the_default_model(default_bundle, shapes, baseline):
    x, target = shapes
    out = attribute(default_bundle, x, method="deeplift", target=target, baseline=baseline)
    b = make_baseline(baseline, x, generator=torch.Generator())
    gap = _scores(default_bundle.model, x, target) - _scores(default_bundle.model, b, target)
    torch.testing.assert_close(out.expected, gap, rtol=1e-5, atol=1e-5)
    assert bool((_relative(out) <= TOLERANCE).all()), _relative(out)


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_deeplift_shap_is_complete_on_the_default_model(default_bundle, shapes, baseline):
    x, target = shapes
    params = {"references": 2, "reference_noise": 0.1}
    out = attribute(default_bundle, x, method="deeplift_shap", target=target, seed=3, params=params, baseline=baseline)
    g = method_generator(3, "deeplift_shap", x.device)
    refs = jittered_references(make_baseline(baseline, x, generator=g), count=2, noise=0.1, generator=g)
    mean_ref = torch.stack([_scores(default_bundle.model, refs[k], target) for k in range(2)]).mean(0)
    torch.testing.assert_close(out.expected, _scores(default_bundle.model, x, target) - mean_ref, rtol=1e-5, atol=1e-5)
    assert bool((_relative(out) <= TOLERANCE).all()), _relative(out)


def test_captum_alone_is_not_complete_on_the_default_model(default_bundle, shapes):
    """What the rewrite fixes: captum's max-pool rule on the model itself misses by far more."""
    x, target = shapes
    x, target = x[:2], target[:2]
    _, delta = DeepLift(default_bundle.model).attribute(
        x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=target, return_convergence_delta=True
    )
    gap = _scores(default_bundle.model, x, target) - _scores(default_bundle.model, x * 0, target)
    assert float((delta.abs() / gap.abs()).max()) > 100 * TOLERANCE


# --------------------------------------------------- torchvision networks with random weights


def _random_net(arch: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = getattr(torchvision.models, arch)(num_classes=10)
    if arch == "vgg16":  # VGG needs only its in-place ReLUs turned off (cheaper than a safe copy)
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
    else:  # ResNet blocks reuse one ReLU, DenseNet ends with a functional one
        net, unavailable = make_hook_safe(net, input_size=(32, 32))
        assert "deeplift" not in unavailable
    # float64: random weights put the class scores close together (gaps of 3e-3 against
    # activations near 1), where float32 rounding alone reached 1.8e-4 of the gap (ResNet-18,
    # DeepLiftShap); the construction is exact, so in float64 the error is rounding at 1e-14
    return net.eval().double()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "vgg16", "densenet121"])
def test_deeplift_is_complete_on_torchvision_networks(arch):
    net = _random_net(arch)
    assert any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    x = images(2, (32, 32), seed=4).double()  # 32x32: the smallest input every one of them takes
    target = torch.tensor([1, 7])
    baseline = torch.zeros_like(x)
    if arch == "resnet18":  # DeepLiftShap too (its 2 references in the same pass): 3x the pairs
        refs = jittered_references(baseline, count=2, noise=0.1, generator=torch.Generator().manual_seed(5))
        dl, shap = deeplift.deeplift_and_shap(net, x, target, baseline, refs)
        mean_ref = (_scores(net, refs[0], target) + _scores(net, refs[1], target)) / 2
        torch.testing.assert_close(shap.expected, _scores(net, x, target) - mean_ref, rtol=1e-9, atol=1e-12)
        assert bool((_relative(shap) <= TOLERANCE).all()), _relative(shap)
    else:
        dl = deeplift.deeplift(net, x, baseline, target)
    gap = _scores(net, x, target) - _scores(net, baseline, target)
    torch.testing.assert_close(dl.expected, gap, rtol=1e-9, atol=1e-12)
    assert bool((_relative(dl) <= TOLERANCE).all()), _relative(dl)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_adaptive_max_pooling_is_rewritten_and_complete():
    """captum has no DeepLift rule for AdaptiveMaxPool2d; as a ReLU network it needs none."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d((3, 2)), nn.Flatten(), nn.Linear(24, 3))
    net = init_weights(net, seed=8).eval()
    _, unavailable = make_hook_safe(net, input_size=(11, 9))
    assert "deeplift" not in unavailable and "deeplift_shap" not in unavailable
    x = images(2, (11, 9), seed=9)
    baseline = torch.zeros_like(x)
    target = torch.tensor([0, 2])
    out = deeplift.deeplift(net, x, baseline, target)
    torch.testing.assert_close(out.expected, _scores(net, x, target) - _scores(net, baseline, target))
    assert bool((_relative(out) <= TOLERANCE).all()), _relative(out)


# ------------------------------------------------------- hand-weighted conv -> ReLU -> max-pool
#
# A 1x1 convolution reads the red channel, z = R - 0.4, then ReLU, a 2x2 max-pooling over the
# 2x2 map and a linear layer with weight 2 (class 0) and -1 (class 1).
#
#   input     z = [[0.4, -0.2], [0.1, 0.3]]    p = relu(z) = [[0.4, 0.0], [0.1, 0.3]]
#   baseline  z0 = [[0.0, 0.3], [-0.4, 0.25]]  p0 = [[0.0, 0.3], [0.0, 0.25]]
#
# ReLU multipliers dp/dz: (0.4-0)/(0.4-0) = 1, (0-0.3)/(-0.2-0.3) = 0.6, (0.1-0)/(0.1+0.4) = 0.2,
# (0.3-0.25)/(0.3-0.25) = 1.
# The pooling is max over each row (b + relu(a - b), a the left value), then over the rows:
#   row 0: d = 0.4 - 0 = 0.4, d0 = 0 - 0.3 = -0.3: relu multiplier 0.4 / 0.7 = 4/7, so the row
#          maximum takes 4/7 of p00's change and 3/7 of p01's; row 0 max 0.4 (baseline 0.3)
#   row 1: d = 0.1 - 0.3 = -0.2, d0 = 0 - 0.25 = -0.25: relu 0 both, multiplier 0: all from p11;
#          row 1 max 0.3 (baseline 0.25)
#   rows:  d = 0.4 - 0.3 = 0.1, d0 = 0.3 - 0.25 = 0.05: both positive, multiplier 1: all from
#          row 0; pooled 0.4 (baseline 0.3), a change of 0.1
# Multipliers of the pooled value to z: z00 1 * 4/7 * 1 = 4/7, z01 1 * 3/7 * 0.6 = 9/35,
# z10 0, z11 0 (row 1 contributes nothing at the last step).
# Attribution = (R - R0) * multiplier * class weight; R - R0 = z - z0 = [[0.4, -0.5], [0.5, 0.05]]:
#   class 0 (weight 2): [[0.4 * 4/7 * 2, -0.5 * 9/35 * 2], [0, 0]] = [[16/35, -9/35], [0, 0]],
#   adding up to 7/35 = 0.2 = 2 * 0.1; green and blue have weight 0 and get 0.

HAND_Z = [[0.4, -0.2], [0.1, 0.3]]
HAND_Z0 = [[0.0, 0.3], [-0.4, 0.25]]
HAND_RED = [[16 / 35, -9 / 35], [0.0, 0.0]]  # class 0, worked out above


def _hand_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 2)).double()
    with torch.no_grad():  # set in float64: 0.4 in float32 would shift z by 6e-9
        net[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        net[0].bias.fill_(-0.4)
        net[4].weight.copy_(torch.tensor([[2.0], [-1.0]]))
        net[4].bias.copy_(torch.tensor([0.1, 0.0]))
    return net.eval()


def _hand_image(z: list[list[float]], green: float) -> torch.Tensor:
    red = torch.tensor(z, dtype=torch.float64) + 0.4
    return torch.stack([red, torch.full((2, 2), green, dtype=torch.float64), red.flip(0)]).unsqueeze(0)


@pytest.mark.parametrize("target,weight", [(0, 2.0), (1, -1.0)])
def test_hand_weighted_conv_relu_max_pool_values(target, weight):
    net = _hand_net()
    x, b = _hand_image(HAND_Z, 0.9), _hand_image(HAND_Z0, 0.1)
    out = deeplift.deeplift(net, x, b, torch.tensor([target]))
    expected = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    expected[0, 0] = torch.tensor(HAND_RED, dtype=torch.float64) * (weight / 2.0)
    torch.testing.assert_close(out.values, expected, rtol=1e-12, atol=1e-12)
    assert float(out.expected[0]) == pytest.approx(weight * 0.1, abs=1e-12)  # pooled 0.4 - 0.3
    assert abs(float(out.delta[0])) < 1e-12
    # captum's own max-pool rule gives another map that does not add up to the change
    captum_map = DeepLift(net).attribute(x.clone().requires_grad_(True), baselines=b, target=target)
    assert abs(float(captum_map.sum()) - weight * 0.1) > 1e-3


# ------------------------------------------------------------ no max-pooling: captum's own maps


class _AvgPoolNet(TinyConvNet):
    """TinyConvNet with average pooling (linear) in place of its max-poolings."""

    def __init__(self) -> None:
        super().__init__(seed=21)
        for index in (2, 5):
            self.features[index] = nn.AvgPool2d(2)


def test_without_max_pooling_deeplift_is_captums():
    bundle = make_bundle(init_weights(_AvgPoolNet(), seed=21), input_size=(16, 16), cam_layer="net.features.3")
    x = images(2, (16, 16), seed=22)
    target = torch.tensor([0, 3])
    assert relu_max_pool_copy(bundle.model, x) is bundle.model  # nothing to rewrite
    out = attribute(bundle, x, method="deeplift", target=target, baseline="blur")
    b = make_baseline("blur", x, generator=torch.Generator())
    expected, delta = DeepLift(bundle.model).attribute(
        x.clone().requires_grad_(True), baselines=b, target=target, return_convergence_delta=True
    )
    torch.testing.assert_close(out.values, expected.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.delta, delta.detach(), rtol=0, atol=1e-6)
