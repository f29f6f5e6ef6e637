"""Checkpoints: every bad file of issue 6 is a CheckpointError with a clear sentence, nothing in
a refused file runs, and a good state dict round-trips and predicts identically."""

from __future__ import annotations

import io
import os
import pickle
import warnings

import pytest
import torch
from torch import nn

from xaicore.errors import CheckpointError, ParameterError
from xaicore.models import checkpoint, zoo
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.checkpoint import read_state_dict
from xaicore.models.loading import IMAGENET_MEAN, IMAGENET_STD, load_model

ARCH = "resnet18"
CLASSES = ("cat", "dog", "bird")
SIZE = 32


class RunsCode:
    """Unpickling this would run ``os.system`` and create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpensFile:
    """Unpickling this would call ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _saved(obj: object, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained():
    """A 3-class resnet18 whose weights differ from the loader's random init, and its state dict."""
    net = zoo.build_net(ARCH, num_classes=len(CLASSES))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))
    return net.eval(), {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def good_bytes(trained):
    return _saved(trained[1])


def _reference(net: nn.Module, *, grayscale: bool = False) -> PixelSpaceModel:
    return PixelSpaceModel(net, mean=IMAGENET_MEAN, std=IMAGENET_STD, grayscale=grayscale).eval()


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------ round trip


def test_good_state_dict_round_trips_and_predicts_identically(trained, tmp_path, good_bytes):
    net, _ = trained
    path = tmp_path / "pets.pt"
    path.write_bytes(good_bytes)
    bundle = load_model(str(path), arch=ARCH, class_names=CLASSES, input_size=SIZE, device="cpu")
    reference = _reference(net)
    x = _images()
    with torch.no_grad():
        assert torch.equal(bundle.model(x), reference(x))
    assert bundle.fingerprint == fingerprint(reference)
    assert bundle.labels == CLASSES and bundle.num_classes == 3
    assert bundle.input_size == (SIZE, SIZE)
    assert bundle.name == "resnet18 from pets.pt" and bundle.source == "checkpoint:pets.pt"
    assert bundle.cam_layer == "net.layer4.1" and bundle.layers[0] == "net.conv1"
    assert bundle.unavailable == {}


def test_bytes_wrappers_and_module_prefix_give_the_same_model(trained):
    net, state = trained
    variants = [
        {"state_dict": state, "epoch": 12},
        {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
        {"model": {"state_dict": state}},
        {f"module.{k}": v for k, v in state.items()},
    ]
    for variant in variants:
        loaded = read_state_dict(_saved(variant))
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    bundle = load_model(_saved(variants[3]), arch=ARCH, input_size=SIZE, device="cpu")
    assert bundle.fingerprint == fingerprint(_reference(net))
    assert bundle.labels == ("class 0", "class 1", "class 2")  # count read from the classifier
    assert bundle.name == "resnet18 from uploaded state dict"


def test_legacy_serialization_format_loads(trained):
    _, state = trained
    loaded = read_state_dict(_saved(state, _use_new_zipfile_serialization=False))
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_grayscale_model_sees_luminance(trained, good_bytes):
    net, _ = trained
    bundle = load_model(good_bytes, arch=ARCH, grayscale=True, input_size=SIZE, device="cpu")
    x = _images(1)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _reference(net)(gray.contiguous()))
    assert bundle.model.grayscale


# ------------------------------------------------------------------------ unsafe content


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", [RunsCode, OpensFile])
@pytest.mark.parametrize("container", ["zip", "raw pickle", "raw pickle protocol 4", "inside a state dict"])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, payload, container):
    marker = tmp_path / "marker"
    evil = payload(str(marker))
    if container == "zip":
        data = _saved(evil)
    elif container == "raw pickle":
        data = pickle.dumps(evil, protocol=2)
    elif container == "raw pickle protocol 4":
        data = pickle.dumps(evil, protocol=4)  # refused even earlier: opcodes torch does not accept
    else:
        data = _saved({"state_dict": {"conv1.weight": torch.zeros(2), "extra": evil}})
    expected = "not a plain PyTorch state dict" if container.endswith("4") else "could run code when loaded"
    with pytest.raises(CheckpointError, match=expected) as info:
        read_state_dict(data)
    assert "nothing in it was run" in str(info.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_model(data, arch=ARCH, device="cpu")
    assert not marker.exists()


def test_whole_pickled_module_is_refused():
    data = _saved(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()))
    with pytest.raises(CheckpointError, match=r"whole pickled model .*torch\.nn\.modules.*state_dict\(\)"):
        read_state_dict(data)


def test_torchscript_is_refused_without_loading(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(nn.Linear(3, 2))
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a TorchScript archive must not reach torch.load")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(CheckpointError, match="TorchScript.*state_dict"):
        read_state_dict(buffer.getvalue())


# ------------------------------------------------------------------------ not fitting


def test_wrong_keys_are_named(trained):
    _, state = trained
    renamed = {("head.weight" if k == "fc.weight" else k): v for k, v in state.items()}
    with pytest.raises(CheckpointError) as info:
        load_model(_saved(renamed), arch=ARCH, num_classes=3, input_size=SIZE, device="cpu")
    message = str(info.value)
    assert "missing keys fc.weight" in message and "unexpected keys head.weight" in message
    assert "does not fit the resnet18 architecture" in message


def test_many_missing_keys_are_summarized(trained):
    _, state = trained
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")}
    with pytest.raises(CheckpointError, match=r"missing keys layer4\.\S+, \S+, \S+ \(and \d+ more\)"):
        load_model(_saved(partial), arch=ARCH, input_size=SIZE, device="cpu")


def test_wrong_shapes_are_named(trained):
    _, state = trained
    bad = dict(state)
    bad["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(
        CheckpointError, match=r"wrong shapes for conv1\.weight \(64, 3, 5, 5\) instead of \(64, 3, 7, 7\)"
    ):
        load_model(_saved(bad), arch=ARCH, input_size=SIZE, device="cpu")


def test_wrong_architecture_is_explained(good_bytes):
    with pytest.raises(CheckpointError, match="does not fit the resnet34 architecture: missing keys layer1.2"):
        load_model(good_bytes, arch="resnet34", input_size=SIZE, device="cpu")


def test_wrong_class_count_is_explained(good_bytes):
    with pytest.raises(CheckpointError, match=r"classifier \(fc\) has 3 outputs.*5 classes.*number of classes to 3"):
        load_model(good_bytes, arch=ARCH, num_classes=5, input_size=SIZE, device="cpu")
    with pytest.raises(CheckpointError, match="has 3 outputs"):
        load_model(good_bytes, arch=ARCH, class_names=["a", "b"], input_size=SIZE, device="cpu")


def test_class_names_must_match_the_count(good_bytes):
    with pytest.raises(ParameterError, match="2 class names were given for 3 classes"):
        load_model(good_bytes, arch=ARCH, num_classes=3, class_names=["a", "b"], device="cpu")


def test_architecture_is_required(good_bytes):
    with pytest.raises(ParameterError, match="which architecture"):
        load_model(good_bytes, device="cpu")
    with pytest.raises(Exception, match="not a torchvision classification architecture"):
        load_model(good_bytes, arch="resnet9000", device="cpu")


# ------------------------------------------------------------------------ damaged or too big


def test_truncated_file_is_refused(good_bytes, tmp_path):
    for cut in (len(good_bytes) // 2, 200):
        with pytest.raises(CheckpointError, match="damaged or incomplete"):
            read_state_dict(good_bytes[:cut])
    path = tmp_path / "cut.pth"
    path.write_bytes(good_bytes[: len(good_bytes) - 100])
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        load_model(path, arch=ARCH, device="cpu")


def test_truncated_legacy_file_is_refused(trained):
    data = _saved(trained[1], _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="damaged|not a PyTorch checkpoint"):
        read_state_dict(data[: len(data) // 3])


def test_over_the_size_cap_is_refused_before_reading(good_bytes, tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    path.write_bytes(good_bytes)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the size cap must be checked before reading")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(checkpoint, "_open", forbidden)
    cap = len(good_bytes) - 1
    for source in (good_bytes, path, str(path)):
        with pytest.raises(CheckpointError, match=r"is 4\d\.\d MB, over the 1000 bytes limit"):
            read_state_dict(source, max_bytes=1000)
        with pytest.raises(CheckpointError, match="over the"):
            read_state_dict(source, max_bytes=cap)


def test_default_cap_is_600_megabytes():
    assert checkpoint.DEFAULT_MAX_BYTES == 600 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", "empty"),
        (os.urandom(64) + b"\x80\x02garbage", "not a PyTorch checkpoint|damaged"),
        (b"PK\x03\x04" + b"\x00" * 100, "damaged or incomplete"),
    ],
)
def test_junk_is_refused(data, pattern):
    with pytest.raises(CheckpointError, match=pattern):
        read_state_dict(data)


@pytest.mark.parametrize("obj", [[1, 2, 3], {"epoch": 3}, {"weights": [torch.ones(2)]}, torch.ones(3), {}])
def test_files_without_a_state_dict_are_refused(obj):
    with pytest.raises(CheckpointError, match="does not contain a state dict"):
        read_state_dict(_saved(obj))


def test_non_finite_weights_are_refused(trained):
    _, state = trained
    bad = dict(state)
    bad["fc.bias"] = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(CheckpointError, match="'fc.bias' contain NaN or infinite"):
        read_state_dict(_saved(bad))


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no readable file"):
        read_state_dict(tmp_path / "absent.pt")
