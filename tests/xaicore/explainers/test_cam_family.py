"""Grad-CAM++, XGrad-CAM, LayerCAM and Score-CAM against torchcam 0.5.0, and a hand-worked Grad-CAM++.

torchcam's maps with ``normalized=False`` are the raw low-resolution maps, after its ReLU and
before any upsampling; ours are compared there (``xaicore.explainers.cam``) and, through the
registry, after our bilinear upsampling of torchcam's raw map to the input size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchcam.methods import GradCAMpp, LayerCAM, ScoreCAM, XGradCAM

from tests.helpers.explain_models import make_bundle, shapes_bundle
from xaicore.errors import UnknownNameError
from xaicore.explainers import cam
from xaicore.explainers.api import attribute, attribute_many
from xaicore.explainers.cost import estimate
from xaicore.explainers.fused import fused_pass
from xaicore.explainers.gradients import GradientPass
from xaicore.models.bundle import ModelBundle
from xaicore.models.loading import load_model

TOL = 1e-5
GRADIENT_CAMS = {"xgradcam": (XGradCAM, cam.xgradcam_from_pass), "layercam": (LayerCAM, cam.layercam_from_pass)}


@pytest.fixture(scope="module")
def resnet() -> ModelBundle:
    return load_model("resnet18", weights=None, input_size=64, device="cpu")


def _images(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _torchcam_raw(extractor: type, bundle: ModelBundle, layer: str, x: torch.Tensor, target: torch.Tensor, **kw):
    """torchcam's raw map (N, h, w): ReLU applied, not normalized, not upsampled."""
    x = x.detach().requires_grad_(True)  # the bundles' weights do not require gradients
    with extractor(bundle.model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kw) as extract:
        if extractor is ScoreCAM:
            with torch.no_grad():
                bundle.model(x)
            return extract(class_idx=target.tolist(), normalized=False)[0]
        scores = bundle.model(x)
        return extract(class_idx=target.tolist(), scores=scores, normalized=False)[0].detach()


def _assert_same_map(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal within 1e-5 of the reference's peak (raw maps of random networks can peak at 0.01)."""
    peak = float(reference.abs().max())
    assert peak > 0  # a map with something in it
    torch.testing.assert_close(ours, reference, atol=TOL * peak, rtol=0)


def _upsampled(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)


def _cases(default_bundle: ModelBundle, resnet: ModelBundle):
    # the trained default model at its default layer and an early one; ResNet-18 (random weights)
    # at its default block
    return [
        (default_bundle, None, _images(2, default_bundle.input_size, 1)),
        (default_bundle, "net.features.conv2", _images(1, default_bundle.input_size, 2)),
        (resnet, None, _images(1, resnet.input_size, 3)),
    ]


@pytest.mark.parametrize("method", sorted(GRADIENT_CAMS))
def test_gradient_cams_equal_torchcam(method, default_bundle, resnet) -> None:
    extractor, from_pass = GRADIENT_CAMS[method]
    for bundle, layer, x in _cases(default_bundle, resnet):
        chosen = bundle.with_cam_layer(layer)
        target = torch.tensor([1, 4][: x.shape[0]])
        reference = _torchcam_raw(extractor, bundle, chosen.cam_layer, x, target)
        grads = fused_pass(bundle.model, x, target, rules=("plain",), layer=chosen.module(chosen.cam_layer)).cam
        assert grads is not None
        ours = from_pass(grads)[:, 0]
        _assert_same_map(ours, reference)
        # through the registry, alone and in the shared pass with Grad-CAM: the upsampled raw map
        alone = attribute(bundle, x, method=method, target=target, layer=layer).values
        shared = attribute_many(bundle, x, methods=[method, "gradcam"], target=target, layer=layer)[method].values
        expected = _upsampled(reference, bundle.input_size).expand(-1, 3, -1, -1)
        _assert_same_map(alone, expected)
        _assert_same_map(shared, expected)


@pytest.mark.slow
def test_score_cam_equals_torchcam(default_bundle) -> None:
    # ResNet-18 on 32x32 images at an early convolution (64 channels) keeps the forward passes few
    small = load_model("resnet18", weights=None, input_size=32, device="cpu")
    cases = [
        (default_bundle, None, _images(1, default_bundle.input_size, 1)),
        (default_bundle, "net.features.conv2", _images(2, default_bundle.input_size, 2)),
        (small, "net.layer1.1.conv2", _images(1, small.input_size, 4)),
    ]
    for bundle, layer, x in cases:
        chosen = bundle.with_cam_layer(layer)
        target = torch.tensor([2, 0][: x.shape[0]])
        reference = _torchcam_raw(ScoreCAM, bundle, chosen.cam_layer, x, target, batch_size=64)
        ours = cam.score_cam(bundle.model, chosen.module(chosen.cam_layer), x, target)[:, 0]
        _assert_same_map(ours, reference)
        found = attribute(bundle, x, method="scorecam", target=target, layer=layer).values
        _assert_same_map(found, _upsampled(reference, bundle.input_size).expand(-1, 3, -1, -1))


class _TwoChannels(nn.Module):
    """Layer ``conv`` copies input channels 0 and 1; the head is linear in the layer's output."""

    def __init__(self, head: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.head = nn.Linear(8, head.shape[0], bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2, 3).view(2, 3, 1, 1))
            self.head.weight.copy_(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


def test_gradcam_pp_by_hand() -> None:
    # Why not torchcam here: torchcam 0.5.0's GradCAMpp divides a copy (``alpha[idx][mask].div_``
    # acts on the copy that boolean indexing makes), so its alpha stays G^2, and its denominator
    # sums A * G^3 over positions where the paper's eq. 19 has sum(A) * G^3 at each position.
    #
    # The score is linear in the layer, so the gradient G is the head's weights, and eq. 19's
    # alpha = G^2 / (2 G^2 + sum(A) G^3) = 1 / (2 + sum(A) G) where G != 0, else 0.
    a0 = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # sum 4
    a1 = torch.tensor([[3.0, 0.0], [1.0, 2.0]])  # sum 6
    g0 = torch.tensor([[1.0, 0.5], [-1.0, 0.0]])
    g1 = torch.tensor([[0.5, 1.0], [0.0, -2.0]])
    model = _TwoChannels(torch.stack([torch.cat([g0.flatten(), g1.flatten()]), torch.zeros(8)]))
    x = torch.stack([a0, a1, torch.full((2, 2), 0.7)]).unsqueeze(0)
    grads = fused_pass(model, x, torch.tensor([0]), rules=("plain",), layer=model.conv).cam
    assert grads is not None
    # channel 0: alpha 1/6 at G = 1 and 1/4 at G = 0.5 (G = -1 has relu(G) = 0): w0 = 1/6 + 1/8 = 7/24
    # channel 1: alpha 1/5 at G = 0.5 and 1/8 at G = 1: w1 = 1/10 + 1/8 = 9/40
    expected = torch.tensor([[29 / 30, 7 / 12], [9 / 40, 89 / 120]])  # 7/24 * a0 + 9/40 * a1
    torch.testing.assert_close(cam.gradcam_pp_from_pass(grads)[0, 0], expected, atol=1e-6, rtol=0)


class _OneChannel(nn.Module):
    """One channel, then global mean pooling and a linear head: the gradient is the same everywhere."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(1, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.head.weight.copy_(torch.tensor([[0.8], [-0.5], [2.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_gradcam_pp_equals_torchcam_where_its_bug_does_not_matter() -> None:
    # With one channel and a gradient that is the same at every position, every alpha has the same
    # denominator (and torchcam's sum of A * G^3 equals sum(A) * G^3), so its skipped division
    # only scales the map by a positive factor: the maps agree once each is divided by its peak.
    model = _OneChannel().eval()
    bundle = make_bundle(model, input_size=(8, 8), cam_layer="net.relu")
    x = _images(2, (8, 8), 6)
    target = torch.tensor([0, 2])
    reference = _torchcam_raw(GradCAMpp, bundle, "net.relu", x, target)
    grads = fused_pass(bundle.model, x, target, rules=("plain",), layer=bundle.module("net.relu")).cam
    assert isinstance(grads, GradientPass)
    ours = cam.gradcam_pp_from_pass(grads)[:, 0]
    assert not torch.allclose(ours, reference)  # the skipped division: another scale
    torch.testing.assert_close(
        ours / ours.amax(dim=(1, 2), keepdim=True),
        reference / reference.amax(dim=(1, 2), keepdim=True),
        atol=TOL,
        rtol=0,
    )


def test_the_layer_is_chosen_by_name_and_refused_in_words(default_bundle) -> None:
    assert default_bundle.cam_layer == "net.features.conv4"
    assert default_bundle.cam_layers() == tuple(f"net.features.conv{i}" for i in range(1, 5))
    assert default_bundle.cam_layer_shape() == (64, 8, 8)  # Grad-CAM's map is 8x8 on the default model
    assert default_bundle.cam_layer_shape("net.features.conv2") == (32, 32, 32)
    early = default_bundle.with_cam_layer("net.features.conv2")
    assert early.cam_layer == "net.features.conv2" and early.fingerprint == default_bundle.fingerprint
    assert early.model is default_bundle.model and early.lock is default_bundle.lock
    assert default_bundle.with_cam_layer(None) is default_bundle
    with pytest.raises(UnknownNameError, match=r"not a layer CAM methods can use.*net\.features\.conv1, "):
        default_bundle.with_cam_layer("net.head.fc1")
    x = _images(1, default_bundle.input_size, 7)
    late = attribute(default_bundle, x, method="layercam", target=3).values
    fine = attribute(default_bundle, x, method="layercam", target=3, layer="net.features.conv2").values
    assert not torch.allclose(late, fine, atol=1e-3)


def test_resnet_cam_layers_are_its_convolutions_and_default_block(resnet) -> None:
    layers = resnet.cam_layers()
    assert resnet.cam_layer in layers and layers[0] == "net.conv1"
    assert layers.index("net.layer4.1.conv2") < layers.index("net.layer4.1")  # forward order
    assert "net.fc" not in layers and "net.layer4.0.downsample.0" in layers
    assert resnet.cam_layer_shape() == (512, 2, 2)


def test_score_cam_costs_a_forward_pass_per_channel(default_bundle) -> None:
    found = estimate(default_bundle, ["scorecam", "layercam"], pass_s=1.0)
    early = estimate(default_bundle.with_cam_layer("net.features.conv1"), ["scorecam"], pass_s=1.0)
    assert found.units["layercam"] == 1.0
    assert found.units["scorecam"] == pytest.approx(0.4 * (64 + 1))
    assert early.units["scorecam"] == pytest.approx(0.4 * (16 + 1))


def test_random_default_architecture_agrees_with_torchcam_in_the_fused_pass() -> None:
    bundle = shapes_bundle(seed=3)
    x = _images(2, bundle.input_size, 8)
    target = torch.tensor([1, 5])
    found = attribute_many(bundle, x, methods=["gradcam", "xgradcam", "layercam"], target=target)
    for method, (extractor, _) in GRADIENT_CAMS.items():
        expected = _upsampled(_torchcam_raw(extractor, bundle, bundle.cam_layer, x, target), bundle.input_size)
        _assert_same_map(found[method].values, expected.expand(-1, 3, -1, -1))
