"""LRP with zennit: epsilon-rule values worked out by hand, conservation with biases excluded on the
default model, ResNet-18, VGG-16 with batch norm and DenseNet-121 (random weights), agreement with
zennit's own torchvision canonizers, and models left exactly as they were."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from tests.helpers.explain_models import hooks_left, images, init_weights
from xaicore.data.shapes import generate
from xaicore.errors import MethodUnavailable
from xaicore.explainers import lrp
from xaicore.explainers.api import attribute
from xaicore.models import zoo
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.canonizers import batch_norm_pairs, canonizers_for, registered
from xaicore.models.safety import make_hook_safe

DEFAULTS = {"composite": "epsilon_plus_flat", "biases": "exclude", "epsilon": 1e-6, "gamma": 0.25}


def _lrp(net: nn.Module, x: torch.Tensor, target: torch.Tensor, **params):
    return lrp.lrp(net, x, target, **{**DEFAULTS, **params})


def _relative_error(out) -> torch.Tensor:
    return (out.delta / out.expected).abs()


def _snapshot(net: nn.Module, x: torch.Tensor) -> tuple[str, torch.Tensor, dict]:
    """Weights, outputs and the instance attributes of every module (a canonizer sets
    ``forward`` and ``canonizer_sum`` there)."""
    with torch.no_grad():
        out = net(x)
    attributes = {name: sorted(vars(m)) for name, m in net.named_modules()}
    return fingerprint(net), out, attributes


def _assert_unchanged(net: nn.Module, x: torch.Tensor, before: tuple[str, torch.Tensor, dict]) -> None:
    digest, out, attributes = _snapshot(net, x)
    assert digest == before[0]
    assert torch.equal(out, before[1])
    assert attributes == before[2]
    assert hooks_left(net) == []


# ----------------------------------------------------------------- a tiny model, by hand


@pytest.fixture(scope="module")
def mlp():
    """x (3 values) -> Linear(3, 2) -> ReLU -> Linear(2, 1), in float64."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0]]))
        net[1].bias.copy_(torch.tensor([0.5, -0.5]))
        net[3].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[3].bias.copy_(torch.tensor([0.25]))
    x = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1)
    return net, x


# Forward pass: hidden pre-activations a = 2 - 1 + 1 + 0.5 = 2.5 and b = 1 + 1 - 0.5 - 0.5 = 1.0
# (both active), f(x) = 2.5 + 2 * 1.0 + 0.25 = 4.75. The epsilon rule (epsilon -> 0) gives input j
# of a neuron with relevance R the share x_j w_j / z of R, z its pre-activation.
F_X = 4.75


def test_epsilon_rule_with_biases_excluded_by_hand(mlp) -> None:
    net, x = mlp
    # Without biases, z = sum_j x_j w_j. Output layer: z = 2.5 + 2.0 = 4.5, so the hidden units
    # get R_a = 2.5 / 4.5 * 4.75 = 95/36 and R_b = 2.0 / 4.5 * 4.75 = 19/9.
    # First layer: a's contributions (2, -1, 1) over z_a = 2 -> (95/36, -95/72, 95/72);
    # b's contributions (1, 1, -0.5) over z_b = 1.5 -> (38/27, 38/27, -19/27).
    expected = torch.tensor([95 / 36 + 38 / 27, -95 / 72 + 38 / 27, 95 / 72 - 19 / 27], dtype=torch.float64)
    out = _lrp(net, x, torch.tensor([0]), composite="epsilon_alpha2_beta1", epsilon=1e-12)
    torch.testing.assert_close(out.values.flatten(), expected, rtol=1e-10, atol=1e-12)
    assert float(out.expected[0]) == pytest.approx(F_X)
    assert abs(float(out.delta[0])) < 1e-10  # conserved: 4.0463 + 0.0880 + 0.6157 = 4.75
    assert "bias_relevance" not in out.details


def test_epsilon_rule_with_biases_included_by_hand(mlp) -> None:
    net, x = mlp
    # With biases, z is the whole pre-activation. Output layer: z = 4.75, so R_a = 2.5 and
    # R_b = 2.0 (the output bias keeps 0.25). First layer: (2, -1, 1) * 2.5 / 2.5 = (2, -1, 1)
    # (the bias keeps 0.5) and (1, 1, -0.5) * 2.0 / 1.0 = (2, 2, -1) (the bias keeps -1.0).
    # The pixels get (4, 1, 0), which is x * gradient = (2, 1, 0.5) * (2, 1, 0): LRP-0.
    out = _lrp(net, x, torch.tensor([0]), composite="epsilon_alpha2_beta1", biases="include", epsilon=1e-12)
    torch.testing.assert_close(out.values.flatten(), torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    # the biases absorbed 0.25 + 0.5 - 1.0 = -0.25: f(x) - sum = 4.75 - 5.0
    assert float(out.details["bias_relevance"][0]) == pytest.approx(-0.25, abs=1e-10)
    assert float(out.delta[0]) == pytest.approx(0.25, abs=1e-10)


def test_flat_rule_on_the_first_layer_by_hand(mlp) -> None:
    net, x = mlp
    # epsilon_plus_flat: the first layer spreads each hidden unit's relevance evenly over its
    # three inputs, whatever their values: (95/36 + 19/9) / 3 = 171/108 each.
    out = _lrp(net, x, torch.tensor([0]), epsilon=1e-12)
    # (its stabilizer, 1e-6, is added to the count of 3)
    expected = torch.full((3,), 171 / 108, dtype=torch.float64)
    torch.testing.assert_close(out.values.flatten(), expected, rtol=1e-6, atol=0)


# ----------------------------------------------------------------- the default model


@pytest.fixture(scope="module")
def shapes(default_bundle):
    pictures, _ = generate(2, seed=21)
    x = default_bundle.to_input(pictures)
    return default_bundle, x, default_bundle.logits(x).argmax(1)


def test_default_model_conserves_relevance_with_biases_excluded(shapes) -> None:
    bundle, x, target = shapes
    before = _snapshot(bundle.model, x)
    out = attribute(bundle, x, method="lrp", target=target)
    torch.testing.assert_close(out.expected, bundle.logits(x).gather(1, target.view(-1, 1)).squeeze(1))
    assert out.reference == "f(x)"
    assert float(_relative_error(out).max()) < 1e-3
    _assert_unchanged(bundle.model, x, before)


def test_default_model_reports_the_bias_relevance(shapes) -> None:
    bundle, x, target = shapes
    out = attribute(bundle, x, method="lrp", target=target, params={"biases": "include"})
    absorbed = out.details["bias_relevance"]
    torch.testing.assert_close(absorbed, out.expected - out.values.flatten(1).sum(1))
    torch.testing.assert_close(out.delta, -absorbed)
    assert float((absorbed / out.expected).abs().min()) > 0.01  # this model's biases take a real share


def test_every_composite_runs_and_differs(shapes) -> None:
    bundle, x, target = shapes
    x, target = x[:1], target[:1]
    maps = {
        name: attribute(bundle, x, method="lrp", target=target, params={"composite": name}).values
        for name in lrp.COMPOSITES
    }
    assert all(torch.isfinite(m).all() and m.any() for m in maps.values())
    names = list(maps)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(maps[a], maps[b], rtol=1e-2, atol=1e-4), (a, b)


def test_box_bounds_are_the_normalized_black_and_white_images() -> None:
    model = PixelSpaceModel(nn.Identity(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    low, high = lrp.input_bounds(model, torch.zeros(1, 3, 4, 4))
    torch.testing.assert_close(low.flatten(), torch.tensor([-2.5, -1.6, -0.6]))
    torch.testing.assert_close(high.flatten(), torch.tensor([2.5, 2.4, 1.4]))
    low, high = lrp.input_bounds(nn.Identity(), torch.zeros(1, 3, 4, 4))
    assert float(low.max()) == 0.0 and float(high.min()) == 1.0


# ----------------------------------------------------------------- torchvision, random weights


def _random_batch_norm(net: nn.Module, *, seed: int) -> nn.Module:
    """Running statistics and affine parameters drawn at random, so merging them changes the
    weights (torchvision's fresh batch norms are the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


def _vgg16_bn() -> nn.Module:
    """torchvision's VGG-16 with batch norm, its classifier narrowed (25088 -> 64 -> 10) so it
    builds in a moment; built on the meta device and given weights from a local generator."""
    with torch.device("meta"):
        net = torchvision.models.vgg16_bn(num_classes=10)
        net.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 10))
    net.to_empty(device="cpu")
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return init_weights(net, seed=5)


def _zennit_reference(net: nn.Module, canonizer, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """zennit's own attributor and torchvision canonizer on a copy of the original network."""
    reference_net = copy.deepcopy(net).eval()
    composite = EpsilonPlusFlat(epsilon=1e-6, zero_params="bias", canonizers=[canonizer()])
    with Gradient(model=reference_net, composite=composite) as attributor:
        logits = reference_net(x).detach()
        start = torch.zeros_like(logits).scatter_(1, target.view(-1, 1), logits.gather(1, target.view(-1, 1)))
        _, relevance = attributor(x, start)
    return relevance


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "canonizer"), [("resnet18", ResNetCanonizer), ("vgg16_bn", VGGCanonizer)])
def test_torchvision_conserves_relevance_agrees_with_zennit_and_is_left_alone(arch: str, canonizer) -> None:
    """Hook-safe (as bundles hold them) random resnet18 and vgg16_bn with random batch-norm
    statistics: relevance adds up to f(x); it equals zennit's own canonizer for the family on
    torchvision's original blocks (so the traced batch-norm pairs and the hook-safe blocks'
    forwards change nothing); the network is left exactly as it was."""
    original = _random_batch_norm(zoo.build_net(arch) if arch == "resnet18" else _vgg16_bn(), seed=3).eval()
    safe, unavailable = make_hook_safe(original, input_size=(32, 32))
    assert "lrp" not in unavailable
    x = images(2, (32, 32), seed=4)
    before = _snapshot(safe, x)
    target = before[1].abs().argmax(1)  # a logit far from 0, so the relative error means something
    out = _lrp(safe, x, target)
    assert float(_relative_error(out).max()) < 1e-3
    _assert_unchanged(safe, x, before)
    torch.testing.assert_close(out.values, _zennit_reference(original, canonizer, x, target), rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def densenet():
    net = _random_batch_norm(zoo.build_net("densenet121"), seed=7)
    safe, unavailable = make_hook_safe(net, input_size=(32, 32))
    assert "lrp" not in unavailable
    return safe


@pytest.mark.slow
def test_densenet_runs_conserves_and_is_left_alone(densenet) -> None:
    x = images(1, (32, 32), seed=8)
    before = _snapshot(densenet, x)
    target = before[1].abs().argmax(1)
    out = _lrp(densenet, x, target)
    assert torch.isfinite(out.values).all() and out.values.any()
    assert float(_relative_error(out).max()) < 1e-3
    _assert_unchanged(densenet, x, before)


def test_densenet_merges_only_the_batch_norms_right_after_a_convolution(densenet) -> None:
    pairs = batch_norm_pairs(densenet, images(1, (32, 32)))
    merged = {bn: conv for (conv,), bn in pairs}
    # the stem, and in every dense layer the second norm (after conv1); never norm1 or norm5,
    # which normalize concatenations (module order would pair them with the conv before)
    assert merged["features.norm0"] == "features.conv0"
    assert merged["features.denseblock1.denselayer2.norm2"] == "features.denseblock1.denselayer2.conv1"
    assert not [bn for bn in merged if bn.endswith(("norm1", "norm5")) or ".transition" in bn]
    assert len(merged) == 1 + (6 + 12 + 24 + 16)


def test_canonizers_are_undone_when_the_pass_fails() -> None:
    net = make_hook_safe(_random_batch_norm(zoo.build_net("resnet18"), seed=9), input_size=(16, 16))[0]
    x = images(1, (16, 16), seed=1)
    before = _snapshot(net, x)
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=canonizers_for(net, x))
    with pytest.raises(RuntimeError, match="stop"), registered(composite, net):
        assert hasattr(net.layer1[0], "canonizer_sum")  # the block's sum is a module now
        raise RuntimeError("stop")
    _assert_unchanged(net, x, before)


class _SharedConvOutput(nn.Module):
    """A convolution whose output feeds a batch norm and, unnormalized, a second path: merging
    the batch norm into the convolution would change the second path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        both = torch.cat([self.relu(self.bn(h)), h], dim=1)
        return self.fc(torch.flatten(both, 1))


def test_a_canonical_form_that_computes_something_else_is_refused() -> None:
    net = _random_batch_norm(init_weights(_SharedConvOutput(), seed=2), seed=4).eval()
    x = images(1, (4, 4), seed=3)
    before = _snapshot(net, x)
    with pytest.raises(MethodUnavailable, match="canonical form"):
        _lrp(net, x, torch.tensor([0]))
    _assert_unchanged(net, x, before)
