"""load_model / list_models: bundles from torchvision names (random and cached weights), the
default model's delegation, errors, and the ``xai models`` command."""

from __future__ import annotations

import urllib.request

import pytest
import torch
from captum.attr import DeepLift, GuidedBackprop

from xaicore.cli.main import main as xai_main
from xaicore.errors import ModelNotAvailable, ParameterError, UnknownNameError
from xaicore.models import zoo
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.loading import list_models, load_model
from xaicore.models.safety import SafeBasicBlock

SIZE = 32


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    return tmp_path / "checkpoints"


@pytest.fixture(scope="module")
def resnet18():
    return load_model("resnet18", weights=None, input_size=SIZE, device="cpu")


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def _expected_resnet18_order() -> list[str]:
    """Parameterized layers of resnet18 in the order its forward pass runs them, by hand."""
    order = ["net.conv1"]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"net.layer{stage}.{block}"
            order += [f"{prefix}.conv1", f"{prefix}.conv2"]
            if stage > 1 and block == 0:
                order.append(f"{prefix}.downsample.0")  # the shortcut runs after the main path
    return order + ["net.fc"]


def test_random_resnet18_bundle(resnet18):
    b = resnet18
    assert b.name == "ResNet-18 (random weights)" and b.source == "torchvision:resnet18/random"
    assert b.num_classes == 1000 and b.labels[0] == "tench"
    assert b.input_size == (SIZE, SIZE)
    assert b.cam_layer == "net.layer4.1" and isinstance(b.module(b.cam_layer), SafeBasicBlock)
    assert list(b.layers) == _expected_resnet18_order()
    assert b.unavailable == {}  # LRP runs on ResNets (its canonizer splits the residual sums)
    assert isinstance(b.model, PixelSpaceModel) and not b.model.training
    assert not any(p.requires_grad for p in b.model.parameters())
    assert torch.allclose(b.model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert b.device == torch.device("cpu")
    assert b.fingerprint == fingerprint(b.model)


def test_bundle_computes_like_torchvision(resnet18):
    reference = zoo.build_net("resnet18")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(resnet18.model(x), reference((x - mean) / std), rtol=0, atol=1e-6)


def test_loading_twice_gives_the_same_fingerprint_and_leaves_the_rng(resnet18):
    state = torch.random.get_rng_state()
    again = load_model("resnet18", weights=None, input_size=SIZE, device="cpu")
    assert again.fingerprint == resnet18.fingerprint
    assert torch.equal(torch.random.get_rng_state(), state)
    assert again.model is not resnet18.model


def test_explaining_never_changes_the_fingerprint(resnet18):
    b = resnet18
    x = _images()
    with b.lock:
        GuidedBackprop(b.model).attribute(x.clone(), target=1)
        DeepLift(b.model).attribute(x.clone(), baselines=torch.zeros_like(x), target=1)
    copy = b.private_copy()
    with torch.no_grad():
        for p in copy.model.parameters():
            p.mul_(0.5)  # randomizing a private copy is the only way weights change
    assert fingerprint(b.model) == b.fingerprint
    assert fingerprint(copy.model) != b.fingerprint
    assert all(not m._forward_hooks and not m._backward_hooks for m in b.model.modules())


def test_random_head_with_own_classes():
    b = load_model("resnet34", weights=None, num_classes=3, class_names=["a", "b", "c"], input_size=SIZE, device="cpu")
    assert b.labels == ("a", "b", "c") and b.cam_layer == "net.layer4.2"
    assert b.name == "ResNet-34 (random weights)"
    with torch.no_grad():
        assert b.model(_images(1)).shape == (1, 3)
    with pytest.raises(ParameterError, match="2 class names were given for 3 classes"):
        load_model("resnet34", weights=None, num_classes=3, class_names=["a", "b"])


def test_offline_uncached_pretrained_is_refused_quickly(empty_hub, no_network):
    with pytest.raises(ModelNotAvailable, match=r"not on this machine.*resnet18-f37072fd\.pth.*weights=None"):
        load_model("resnet18", device="cpu")


def test_cached_pretrained_weights_are_used(empty_hub, no_network):
    weights = zoo.weights_for("resnet18")
    source = zoo.build_net("resnet18")
    with torch.no_grad():
        source.fc.bias.fill_(0.5)
    empty_hub.mkdir(parents=True)
    torch.save(source.state_dict(), zoo.cached_weights_path(weights))
    b = load_model("resnet18", input_size=SIZE, device="cpu")
    assert b.name == "ResNet-18 (ImageNet, IMAGENET1K_V1)" and b.source == "torchvision:resnet18/IMAGENET1K_V1"
    assert torch.equal(b.model.net.fc.bias, torch.full((1000,), 0.5))
    infos = {info.name: info for info in list_models()}
    assert infos["resnet18"].weights_available and not infos["resnet50"].weights_available
    assert infos["resnet18"].weights_location == str(zoo.cached_weights_path(weights))


def test_pretrained_class_count_is_fixed():
    with pytest.raises(ParameterError, match="1000 classes, not 10.*weights=None"):
        load_model("resnet18", num_classes=10, device="cpu")


def test_list_models_names_and_kinds(empty_hub):
    infos = list_models()
    assert [i.name for i in infos][:3] == ["default", "clever-hans", "xray"] and infos[0].kind == "default"
    assert all(i.kind == "embedded" and i.weights_available for i in infos[1:3])
    assert {i.name for i in infos[3:]} == set(zoo.ZOO)
    assert all(i.kind == "torchvision" and not i.weights_available for i in infos[3:])
    assert all(i.description and i.display for i in infos)


def test_default_model_is_delegated():
    from xaicore.models import default

    if default.WEIGHTS_PATH.is_file() and default.CARD_PATH.is_file():
        bundle = load_model("default", device="cpu")
        assert bundle.source == "default"
        assert bundle.fingerprint == default.load_default_bundle(device="cpu").fingerprint
    else:
        with pytest.raises(ModelNotAvailable, match="default model"):
            load_model("default", device="cpu")
    with pytest.raises(ParameterError, match="fixed settings; num_classes"):
        load_model("default", num_classes=3)


def test_unknown_names_and_bad_sizes():
    with pytest.raises(UnknownNameError, match="No model named 'resnet9000'.*default, clever-hans, xray, resnet18"):
        load_model("resnet9000")
    with pytest.raises(ParameterError, match="between 8 and 4096"):
        load_model("alexnet", weights=None, input_size=4)
    with pytest.raises(ParameterError, match="could not run on a \\(20, 20\\) input"):
        load_model("alexnet", weights=None, input_size=20, device="cpu")  # too small for its pooling


def test_cli_lists_models(capsys, empty_hub):
    assert xai_main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("default", *zoo.ZOO):
        assert name in out
    assert "weights here" in out and "XAI_OFFLINE" in out
    assert xai_main(["models", "--show", "resnet18"]) == 2  # offline and uncached: a clear error
    assert "not on this machine" in capsys.readouterr().err
