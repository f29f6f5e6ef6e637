"""The torchvision zoo: family facts, deterministic random nets, and offline weights handling
(no test touches the network: urlopen is replaced by a function that fails the test)."""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.error
import urllib.request

import pytest
import torch
import torchvision
from torch import nn

from xaicore.errors import ModelNotAvailable, ParameterError, UnknownNameError
from xaicore.models import zoo

REQUIRED = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "alexnet",
    "densenet121",
    "mobilenet_v3_large",
    "efficientnet_b0",
)

# arch -> (default CAM layer inside the net, classifier weight key), from torchvision's layouts
LAYOUT = {
    "resnet18": ("layer4.1", "fc.weight"),
    "resnet34": ("layer4.2", "fc.weight"),
    "resnet50": ("layer4.2", "fc.weight"),
    "vgg16": ("features.28", "classifier.6.weight"),
    "alexnet": ("features.10", "classifier.6.weight"),
    "densenet121": ("features", "classifier.weight"),
    "mobilenet_v3_large": ("features.16", "classifier.3.weight"),
    "efficientnet_b0": ("features.8", "classifier.1.weight"),
}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path / "checkpoints"


def test_required_models_are_curated():
    assert set(REQUIRED) <= set(zoo.ZOO)
    assert set(zoo.ZOO) <= set(zoo.torchvision_names())
    assert all(zoo.ZOO[name].family == zoo.family_of(name) for name in zoo.ZOO)


@pytest.mark.parametrize("arch", REQUIRED)
def test_cam_layer_and_head_per_family(arch):
    with torch.device("meta"):
        net = torchvision.models.get_model(arch, weights=None)
    cam, head = LAYOUT[arch]
    assert zoo.cam_layer_of(net, zoo.family_of(arch)) == cam
    layer = net.get_submodule(cam)
    if zoo.family_of(arch) in ("vgg", "alexnet"):
        convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
        assert isinstance(layer, nn.Conv2d) and convs[-1] == cam
    assert zoo.head_key(arch) == head
    assert net.state_dict()[head].shape[0] == 1000


def test_unknown_family_and_arch():
    assert zoo.family_of("squeezenet1_1") == "other"
    assert zoo.cam_layer_of(nn.Sequential(), "other") is None
    with pytest.raises(UnknownNameError, match="not a torchvision classification architecture"):
        zoo.check_arch("resnet9000")
    assert zoo.check_arch(" ResNet18 ") == "resnet18"


def test_preprocessing_from_the_weights_metadata():
    pre = zoo.preprocessing_of(zoo.weights_for("resnet18"))
    assert len(pre.labels) == 1000 and pre.labels[0] == "tench" and pre.labels[-1] == "toilet tissue"
    assert pre.input_size == (224, 224)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))


def test_weights_names():
    assert zoo.weights_for("resnet50") is torchvision.models.ResNet50_Weights.DEFAULT
    assert zoo.weights_for("resnet50", "imagenet1k_v1") is torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    with pytest.raises(ParameterError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        zoo.weights_for("resnet50", "best")


def test_random_nets_are_reproducible_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = zoo.build_net("resnet18", num_classes=4).state_dict()
    b = zoo.build_net("resnet18", num_classes=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["fc.weight"].shape == (4, 512)
    assert a["conv1.weight"].std() > 0  # initialized, not zeros


def test_concurrent_builds_are_reproducible():
    expected = zoo.build_net("resnet18", num_classes=2).state_dict()
    results: list[dict[str, torch.Tensor]] = []

    def build() -> None:
        results.append(zoo.build_net("resnet18", num_classes=2).state_dict())

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert all(torch.equal(state[k], expected[k]) for state in results for k in expected)


def test_offline_and_uncached_is_a_clear_error(empty_hub, no_network, monkeypatch):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    weights = zoo.weights_for("resnet18")
    with pytest.raises(ModelNotAvailable) as info:
        zoo.fetch_weights(weights, "resnet18")
    message = str(info.value)
    assert str(empty_hub / "resnet18-f37072fd.pth") in message
    assert weights.url in message and "weights=None" in message and "XAI_OFFLINE=1" in message
    assert not zoo.weights_cached("resnet18")


def test_failed_download_is_a_clear_error_and_leaves_nothing(empty_hub, monkeypatch):
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)

    def unreachable(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(ModelNotAvailable, match="download failed: .*no route to host.*weights=None"):
        zoo.fetch_weights(zoo.weights_for("alexnet"), "alexnet")
    assert not empty_hub.exists() or not any(empty_hub.iterdir())


def _serve(content: bytes):
    def urlopen(url, timeout):
        assert timeout > 0
        return io.BytesIO(content)

    return urlopen


def test_download_checks_the_hash_in_the_file_name(tmp_path, monkeypatch):
    content = b"pretend weights" * 1000
    good = tmp_path / f"net-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    monkeypatch.setattr(urllib.request, "urlopen", _serve(content))
    zoo._download("https://example.invalid/net.pth", good, timeout=5)
    assert good.read_bytes() == content
    bad = tmp_path / "net-0123abcd.pth"
    with pytest.raises(OSError, match="checksum"):
        zoo._download("https://example.invalid/net.pth", bad, timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # no partial file left


def test_cached_weights_are_loaded_without_network(empty_hub, no_network, monkeypatch):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    weights = zoo.weights_for("resnet18")
    source = zoo.build_net("resnet18")
    with torch.no_grad():
        source.fc.bias.fill_(0.25)  # unlike any random init
    empty_hub.mkdir(parents=True)
    torch.save(source.state_dict(), zoo.cached_weights_path(weights))
    assert zoo.weights_cached("resnet18")
    net = zoo.build_net("resnet18")
    zoo.load_pretrained(net, weights, "resnet18")
    assert torch.equal(net.fc.bias, torch.full((1000,), 0.25))


def test_damaged_cache_file_is_a_clear_error(empty_hub, no_network):
    weights = zoo.weights_for("resnet18")
    empty_hub.mkdir(parents=True)
    zoo.cached_weights_path(weights).write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelNotAvailable, match="could not be read.*delete it"):
        zoo.load_pretrained(zoo.build_net("resnet18"), weights, "resnet18")


def test_old_densenet_keys_are_renamed():
    value = torch.ones(1)
    state = {
        "features.denseblock1.denselayer1.norm.1.weight": value,
        "features.denseblock1.denselayer1.conv.2.weight": value,
        "features.norm5.weight": value,
    }
    assert set(zoo.rename_old_densenet_keys(state)) == {
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.norm5.weight",
    }
