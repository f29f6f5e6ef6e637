"""Exact model rewrites: the same numbers, forward and backward, for less work."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xaicore.confidence.gax as gax
from tests.helpers.sanity_fixtures import seeded_weights
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.default import load_default_bundle
from xaicore.models.rewrite import faster_forward, pool_before_relu, split_at_head, split_normalization


def test_pool_before_relu_is_exact_and_leaves_the_model_alone():
    bundle = load_default_bundle(device="cpu")
    net = bundle.model.net
    swapped = pool_before_relu(net)
    assert swapped is not None
    order = [n.target for n in swapped.graph.nodes if n.op == "call_module"]
    assert order[:3] == ["features.conv1", "features.pool1", "features.relu1"]
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(swapped(x), net(x))
    assert fingerprint(bundle.model) == bundle.fingerprint
    assert [name for name, _ in net.features.named_children()][:3] == ["conv1", "relu1", "pool1"]


class _Functional(nn.Module):
    """relu -> max_pool as functions, one in-place ReLU whose input is also read by a skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)  # swapped
        y = self.conv2(x)
        z = F.max_pool2d(torch.relu_(y), 2)  # in-place on y, which the skip reads: kept
        return self.head((z + F.max_pool2d(y, 2)).flatten(1))


def test_pool_before_relu_functional_and_in_place_cases():
    net = seeded_weights(_Functional(), 0).eval()
    swapped = pool_before_relu(net)
    assert swapped is not None
    targets = [(n.op, getattr(n.target, "__name__", n.target)) for n in swapped.graph.nodes]
    pools = [i for i, t in enumerate(targets) if t[1] == "max_pool2d"]
    assert targets[pools[0] + 1][1] == "relu"  # the first pair now pools first
    assert targets[pools[1] - 1][1] == "relu_"  # the in-place pair is unchanged
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(swapped(x), net(x))
    assert pool_before_relu(nn.Sequential(nn.Flatten(), nn.Linear(3, 2))) is None  # nothing to swap


def _ties(n: int, seed: int) -> torch.Tensor:
    """Images of flat 8x8 blocks: inside a block every convolution output is the same, so the
    pooling windows hold exactly equal maxima, positive ones and ones with nothing positive."""
    gen = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 5, (n, 3, 8, 8), generator=gen).to(torch.float64) / 4
    return F.interpolate(blocks, scale_factor=8, mode="nearest")


def test_faster_forward_gives_the_same_logits_and_input_gradients_bit_for_bit():
    bundle = load_default_bundle(device="cpu")
    model = copy.deepcopy(bundle.model).double().eval()
    fast = faster_forward(model)
    assert fast is not None
    for x in (_ties(3, 0), torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)):
        outs = []
        for net in (model, fast):
            z = x.clone().requires_grad_(True)
            logits = net(z)
            (grad,) = torch.autograd.grad((logits * torch.arange(1.0, 9.0, dtype=torch.float64)).sum(), z)
            outs.append((logits.detach(), grad))
        assert torch.equal(outs[0][0], outs[1][0])
        assert torch.equal(outs[0][1], outs[1][1])
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_split_normalization_leaves_autocast_models_whole():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    model = PixelSpaceModel(net, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    normalize, inner = split_normalization(model)
    assert inner is net
    assert faster_forward(model) is not None
    x = torch.rand(1, 3, 2, 2)
    assert torch.equal(normalize(x), model.normalize(x))
    model.autocast_dtype = torch.bfloat16
    normalize, inner = split_normalization(model)
    assert inner is model and torch.equal(normalize(x), x)
    assert faster_forward(model) is None


def test_gax_with_the_rewrite_equals_gax_on_the_plain_model(monkeypatch):
    double = load_default_bundle(device="cpu").private_copy()
    double.model.double().eval()
    images = np.random.default_rng(3).random((2, 64, 64, 3))
    used = []
    real = gax._step_network

    def spy(net, x, clean):
        chosen = real(net, x, clean)
        used.append(chosen is not net)
        return chosen

    monkeypatch.setattr(gax, "_step_network", spy)
    fast = gax.run_gax(double, images, target_co=math.inf, max_steps=12)
    monkeypatch.setattr(gax, "_step_network", lambda net, x, clean: net)
    plain = gax.run_gax(double, images, target_co=math.inf, max_steps=12)
    assert used == [True]
    for a, b in zip(fast.images, plain.images):
        np.testing.assert_array_equal(a.co_curve, b.co_curve)
        np.testing.assert_array_equal(a.heatmap, b.heatmap)
        np.testing.assert_array_equal(a.history.frames, b.history.frames)


def test_gax_keeps_the_plain_model_when_the_rewrite_disagrees(monkeypatch):
    bundle = load_default_bundle(device="cpu")
    x = bundle.to_input(np.random.default_rng(4).random((1, 64, 64, 3), dtype=np.float32))
    with torch.no_grad():
        clean = bundle.model(x)
    assert gax._step_network(bundle.model, x, clean) is not bundle.model
    assert gax._step_network(bundle.model, x, clean + 1e-6) is bundle.model
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8))
    assert gax._step_network(plain, x, plain(x)) is plain  # nothing to swap


class _SkipAcrossTheCut(nn.Module):
    """A value from before the first linear layer read again after it: no clean cut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 2 * 4 * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(self.conv(x), 2)
        return self.fc(pooled.flatten(1)) + pooled.mean(dim=(2, 3)).repeat(1, 16)


@pytest.mark.parametrize("which", ["default", "swapped", "resnet18", "mobilenet_v3_small"])
def test_split_at_head_cuts_before_the_first_linear_layer_and_is_exact(which):
    import torchvision

    if which in ("default", "swapped"):
        net = load_default_bundle(device="cpu").model.net
        net = pool_before_relu(net) if which == "swapped" else net
        features = 1024
    else:
        net = seeded_weights(getattr(torchvision.models, which)(num_classes=5), 1).eval()
        features = {"resnet18": 512, "mobilenet_v3_small": 576}[which]
    state = fingerprint(net)
    trunk, head = split_at_head(net)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cut = trunk(x)
        assert cut.shape == (3, features)
        assert torch.equal(head(cut), net(x))
    assert not any(isinstance(m, nn.Linear) for m in trunk.modules())
    assert fingerprint(net) == state


def test_split_at_head_refuses_models_it_cannot_cut():
    assert split_at_head(_SkipAcrossTheCut()) is None
    assert split_at_head(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())) is None  # no linear layer
    assert split_at_head(nn.Linear(4, 2)) is None  # nothing before the head
    net = seeded_weights(_Functional(), 0).eval()  # its skip rejoins before the first linear layer: a cut
    trunk, head = split_at_head(net)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(head(trunk(x)), net(x))
