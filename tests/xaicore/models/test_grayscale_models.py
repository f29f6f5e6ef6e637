"""Grayscale models: one-channel checkpoints load as such with their mean/std, and every method
and check runs on a tiny one-channel CNN, with values checked against the one-channel network."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.explain_models import init_weights
from xaicore.errors import ParameterError
from xaicore.explainers.api import attribute
from xaicore.explainers.registry import list_methods
from xaicore.models import zoo
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.loading import GRAY_MEAN, GRAY_STD, _normalization, assemble_bundle, load_model

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class TinyGrayNet(nn.Module):
    """Conv-ReLU-MaxPool twice on one channel, then Flatten-Linear-ReLU-Linear; 16x16, 3 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(8 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 3))
        init_weights(self, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.features(x)))


MEAN, STD = (0.4,), (0.2,)


@pytest.fixture(scope="module")
def gray_bundle():
    return assemble_bundle(
        TinyGrayNet(seed=3),
        arch="tiny-gray",
        labels=("normal", "finding", "other"),
        input_size=(16, 16),
        mean=MEAN,
        std=STD,
        grayscale=False,
        device="cpu",
        name="tiny gray",
        source="test",
    )


def gray_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g).expand(-1, 3, -1, -1).contiguous()


def one_channel(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the one-channel network sees of pixel-space RGB: luminance, then mean/std."""
    return ((x * LUMA).sum(1, keepdim=True) - MEAN[0]) / STD[0]


def test_one_channel_network_sees_the_luminance_normalized(gray_bundle):
    model = gray_bundle.model
    assert model.in_channels == 1 and model.grayscale
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), model.net(one_channel(model.net, x)), atol=1e-6)


def test_pixel_space_model_refuses_wrong_mean_counts():
    with pytest.raises(ParameterError, match="one value each"):
        PixelSpaceModel(TinyGrayNet(), mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ParameterError, match="one value each"):
        PixelSpaceModel(TinyGrayNet(), mean=(0.5,), std=(0.2, 0.2, 0.2))


def test_input_x_gradient_equals_the_one_channel_network_by_hand(gray_bundle):
    x = gray_images(2, seed=4)
    target = gray_bundle.logits(x).argmax(1)
    got = attribute(gray_bundle, x, method="input_x_gradient", target=target).values
    lum = (x * LUMA).sum(1, keepdim=True).requires_grad_(True)
    net = gray_bundle.model.net
    out = net((lum - MEAN[0]) / STD[0])
    grad = torch.autograd.grad(out.gather(1, target[:, None]).sum(), lum)[0]
    # the three channels' shares add up to the one channel's input x gradient
    assert torch.allclose(got.sum(1, keepdim=True), lum.detach() * grad, atol=1e-5)
    assert torch.allclose(got, x * LUMA * grad, atol=1e-5)


FAST = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "deeplift_shap": {"references": 2},
    "gradient_shap": {"samples": 3},
    "occlusion": {"window": 8, "stride": 8},
}


@pytest.mark.parametrize("method", list_methods())
def test_every_method_runs_on_a_one_channel_model(gray_bundle, method):
    assert method not in gray_bundle.unavailable, gray_bundle.unavailable.get(method)
    x = gray_images(2, seed=5)
    target = gray_bundle.logits(x).argmax(1)
    before = fingerprint(gray_bundle.model)
    result = attribute(gray_bundle, x, method=method, target=target, seed=7, params=FAST.get(method, {}))
    values = result.values
    assert values.shape == x.shape and torch.isfinite(values).all() and values.any()
    assert fingerprint(gray_bundle.model) == before
    again = attribute(gray_bundle, x, method=method, target=target, seed=7, params=FAST.get(method, {}))
    assert torch.equal(values, again.values)
    if result.delta is not None:  # completeness methods report their error
        assert torch.isfinite(result.delta).all()


def test_integrated_gradients_is_complete_on_the_one_channel_model(gray_bundle):
    x = gray_images(1, seed=6)
    target = gray_bundle.logits(x).argmax(1)
    result = attribute(gray_bundle, x, method="integrated_gradients", target=target, params={"steps": 256})
    with torch.no_grad():
        expected = gray_bundle.model(x)[0, target[0]] - gray_bundle.model(torch.zeros_like(x))[0, target[0]]
    assert float(result.values.sum()) == pytest.approx(float(expected), rel=0.02, abs=1e-3)


def test_sanity_and_faithfulness_checks_run_on_the_one_channel_model(gray_bundle):
    from xaicore import insertion_deletion, run_sanity

    x = gray_images(1, seed=8)
    sanity = run_sanity(gray_bundle, x, methods=["saliency", "gradcam"], seeds=(0,))
    ssim = np.asarray(sanity.mean("ssim_abs", mode="cascading", method="saliency"))
    assert np.isfinite(ssim).all() and float(ssim[-1]) < 0.9  # every layer randomized: a different map
    target = gray_bundle.logits(x).argmax(1)
    maps = {"saliency": attribute(gray_bundle, x, method="saliency", target=target).values}
    faith = insertion_deletion(gray_bundle, x, maps, target=target, step_fraction=0.1, random_control=False)
    curves = faith.get("saliency")
    with torch.no_grad():
        full = float(torch.softmax(gray_bundle.model(x), 1)[0, target[0]])
    assert curves.insertion[0, -1] == pytest.approx(full, abs=1e-5)  # everything inserted: the image itself
    assert curves.deletion[0, 0] == pytest.approx(full, abs=1e-5)


# ------------------------------------------------------------------------ one-channel checkpoints


@pytest.fixture(scope="module")
def gray_resnet():
    net = zoo.build_net("resnet18", num_classes=2, in_channels=1)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=g))
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return net.eval(), buffer.getvalue()


def test_first_convolution_key_per_family():
    assert zoo.stem_key("resnet18") == "conv1.weight"
    assert zoo.stem_key("vgg16") == "features.0.weight"
    assert zoo.stem_key("densenet121") == "features.conv0.weight"


def test_one_channel_checkpoint_loads_as_a_grayscale_model(gray_resnet):
    net, data = gray_resnet
    assert net.conv1.weight.shape == (64, 1, 7, 7)
    bundle = load_model(data, arch="resnet18", class_names=("normal", "finding"), input_size=32, device="cpu")
    assert bundle.model.in_channels == 1 and "one channel" in bundle.name
    assert bundle.model.mean.flatten().tolist() == pytest.approx(GRAY_MEAN)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    lum = (x * LUMA).sum(1, keepdim=True)
    with torch.no_grad():
        assert torch.allclose(bundle.model(x), net((lum - GRAY_MEAN[0]) / GRAY_STD[0]), atol=1e-5)
    assert _normalization((0.3,), (0.1,), channels=1) == ((0.3,), (0.1,))


def test_one_channel_checkpoint_with_three_means_is_refused_with_advice(gray_resnet):
    _, data = gray_resnet
    with pytest.raises(ParameterError, match="takes one channel"):
        load_model(data, arch="resnet18", num_classes=2, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))


def test_gax_and_class_comparison_run_on_the_one_channel_model(gray_bundle):
    from xaicore import compare_classes, run_gax

    image = gray_images(1, seed=9)[0].permute(1, 2, 0).numpy()
    gax = run_gax(gray_bundle, image, target=0, max_steps=4, check_every=2)
    assert gax[0].steps == 4 and np.isfinite(gax[0].co_curve).all()
    assert gax[0].heatmap.shape == (16, 16, 3) or gax[0].heatmap.shape == (3, 16, 16)
    classes = compare_classes(gray_bundle, image, methods=["gradcam", "saliency"], classes=[0, 1])
    assert classes.ssim.shape == (2, 2, 2) and np.allclose(np.diagonal(classes.ssim, axis1=1, axis2=2), 1.0)
