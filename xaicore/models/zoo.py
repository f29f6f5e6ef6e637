"""torchvision classifiers by name: the curated list, per-family facts, and offline weights.

Pretrained weights are read from the local torch hub cache (``torch.hub.get_dir()/checkpoints``,
the place torchvision itself uses). When a file is missing it is downloaded only if the machine
may go online (``XAI_OFFLINE=1`` forbids it); any failure becomes :class:`ModelNotAvailable`
saying exactly where to put the file. Cached files are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum, get_model, get_model_weights

from xaicore.errors import ModelNotAvailable, ParameterError, UnknownNameError

OFFLINE_ENV = "XAI_OFFLINE"
RANDOM_SEED = 0  # the seed of every random initialization, so random models are reproducible
# torchvision initializes from the global RNG; concurrent builds (two dashboard sessions) must
# not reseed it under each other, so building is serialized.
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ZooEntry:
    """A curated torchvision classifier: registry name, display title, family, one-line description."""

    name: str
    title: str
    family: str
    description: str


def _entry(name: str, title: str, family: str, description: str) -> tuple[str, ZooEntry]:
    return name, ZooEntry(name, title, family, description)


ZOO: dict[str, ZooEntry] = dict(
    [
        _entry("resnet18", "ResNet-18", "resnet", "18-layer residual network (ImageNet, 1000 classes)."),
        _entry("resnet34", "ResNet-34", "resnet", "34-layer residual network (ImageNet, 1000 classes)."),
        _entry("resnet50", "ResNet-50", "resnet", "50-layer residual network with bottleneck blocks (ImageNet)."),
        _entry("vgg16", "VGG-16", "vgg", "Plain 16-layer convolutional network (ImageNet); large, slow on CPU."),
        _entry("alexnet", "AlexNet", "alexnet", "The 2012 8-layer network (ImageNet); small and fast."),
        _entry("densenet121", "DenseNet-121", "densenet", "Densely connected 121-layer network (ImageNet)."),
        _entry(
            "mobilenet_v3_large",
            "MobileNetV3-Large",
            "mobilenet",
            "Efficient mobile network with Hardswish and squeeze-excitation (ImageNet).",
        ),
        _entry(
            "efficientnet_b0",
            "EfficientNet-B0",
            "efficientnet",
            "Compound-scaled network with SiLU and squeeze-excitation (ImageNet).",
        ),
    ]
)

_FAMILY_PREFIXES = (
    ("resnet", "resnet"),
    ("resnext", "resnet"),
    ("wide_resnet", "resnet"),
    ("vgg", "vgg"),
    ("alexnet", "alexnet"),
    ("densenet", "densenet"),
    ("mobilenet", "mobilenet"),
    ("efficientnet", "efficientnet"),
)


def torchvision_names() -> list[str]:
    """Every classification architecture torchvision can build by name."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: str) -> str:
    """``arch`` normalized to a torchvision classification name; :class:`UnknownNameError` if not one."""
    name = arch.strip().lower()
    if name not in torchvision_names():
        raise UnknownNameError(
            f"{arch!r} is not a torchvision classification architecture. Try one of: {', '.join(ZOO)}."
        )
    return name


def family_of(arch: str) -> str:
    """``"resnet"``, ``"vgg"``, ``"alexnet"``, ``"densenet"``, ``"mobilenet"``, ``"efficientnet"`` or ``"other"``."""
    for prefix, family in _FAMILY_PREFIXES:
        if arch.startswith(prefix):
            return family
    return "other"


def cam_layer_of(net: nn.Module, family: str) -> str | None:
    """Default Grad-CAM layer inside ``net`` for ``family``; ``None`` when the family is unknown.

    resnet: last block of ``layer4``; vgg and alexnet: last convolution of ``features``;
    densenet: ``features``; mobilenet and efficientnet: the last block of ``features``.
    """
    if family == "resnet":
        return f"layer4.{len(cast(nn.Sequential, net.layer4)) - 1}"
    if family in ("vgg", "alexnet"):
        convs = [i for i, m in enumerate(cast(nn.Sequential, net.features)) if isinstance(m, nn.Conv2d)]
        return f"features.{convs[-1]}"
    if family == "densenet":
        return "features"
    if family in ("mobilenet", "efficientnet"):
        return f"features.{len(cast(nn.Sequential, net.features)) - 1}"
    return None


def build_net(arch: str, *, num_classes: int | None = None, in_channels: int = 3) -> nn.Module:
    """A randomly initialized ``arch`` on the CPU, the same every time (seed :data:`RANDOM_SEED`).

    torchvision initializes from the global RNG, so it is forked (its state is left as it was)
    and builds are serialized by a lock, which keeps concurrent builds reproducible.
    ``in_channels=1`` replaces the first convolution (:func:`stem_key`) by one that takes a
    single channel and is otherwise the same, as grayscale models of medical imaging are made.
    """
    if in_channels not in (1, 3):
        raise ParameterError(f"A model takes one (grayscale) or three (RGB) input channels, not {in_channels}.")
    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = get_model(arch, weights=None, **kwargs)
        if in_channels == 1:
            _one_channel_stem(net, arch)
    return net.eval()


def _one_channel_stem(net: nn.Module, arch: str) -> None:
    key = stem_key(arch)
    if key is None:
        raise ParameterError(f"{arch} has no convolution to take a one-channel input.")
    name = key.removesuffix(".weight")
    old = cast(nn.Conv2d, net.get_submodule(name))
    new = nn.Conv2d(
        1,
        old.out_channels,
        old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        groups=1,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, new)


def stem_key(arch: str) -> str | None:
    """State-dict key of the weight of ``arch``'s first convolution (the one that sees the image).

    Found on the meta device; ``None`` for an architecture without convolutions.
    """
    return _meta_description(arch, None).stem_key


def input_channels(state: Mapping[str, torch.Tensor], arch: str) -> int:
    """How many channels the first convolution of a state dict for ``arch`` takes (1 or 3)."""
    key = stem_key(arch)
    weight = state.get(key) if key else None
    if weight is not None and weight.ndim == 4 and int(weight.shape[1]) == 1:
        return 1
    return 3


def head_key(arch: str) -> str | None:
    """State-dict key of the classifier's weight: the last ``nn.Linear`` (the last convolution
    for SqueezeNets, which have none), or ``None`` if neither.

    Found on the meta device, so nothing is allocated or initialized.
    """
    return _meta_description(arch, None).head_key


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one entry of an architecture's state dict."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        count = 1
        for side in self.shape:
            count *= side
        return count


def expected_state(arch: str, *, num_classes: int | None = None, in_channels: int = 3) -> dict[str, TensorSpec]:
    """The keys, shapes and dtypes of ``arch``'s state dict, without building the real network.

    The network is built with its parameters and buffers on the meta device (no memory, no
    initialization), in a few milliseconds to about a second even for ViT-H/14. Cached per
    architecture and class count. ``in_channels=1``: the first convolution takes one channel.
    """
    arch = check_arch(arch)
    state = dict(_meta_description(arch, None if num_classes is None else int(num_classes)).state)
    key = stem_key(arch)
    if in_channels == 1 and key is not None:
        spec = state[key]
        state[key] = TensorSpec((spec.shape[0], 1, *spec.shape[2:]), spec.dtype)
    return state


def state_dict_bytes(arch: str) -> int:
    """Bytes of ``arch``'s state dict as ``torch.save`` writes it (float32 weights), from the meta device."""
    return sum(spec.numel * torch.empty((), dtype=spec.dtype).element_size() for spec in expected_state(arch).values())


def checkpoint_architectures(*, max_bytes: int) -> list[str]:
    """Architectures whose float32 state dict fits under ``max_bytes``: those a checkpoint can be.

    The rest (ConvNeXt-Large, ViT-L and ViT-H, RegNetY-128GF at the default 600 MB cap) are not
    offered for uploads: their saved weights are refused by the size cap before being read.
    """
    return [name for name in torchvision_names() if state_dict_bytes(name) <= max_bytes]


@dataclass(frozen=True)
class _MetaDescription:
    state: tuple[tuple[str, TensorSpec], ...]
    head_key: str | None
    stem_key: str | None = None


class _ParametersOnMeta(torch.overrides.TorchFunctionMode):
    """Like ``with torch.device("meta")``, except for the factories that compute a structure.

    RegNets compute their stage widths with ``torch.arange(...).tolist()`` while they are
    built, which has no data on the meta device; ``arange`` and ``tensor`` stay on the CPU (they
    make small index tensors), every other factory (``empty``, ``zeros``, ``ones``...: the
    parameters and buffers) goes to meta. The mode is thread-local, like ``torch.device``.
    """

    _KEEP = (torch.arange, torch.tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _meta_constructors() and func not in self._KEEP and kwargs.get("device") is None:
            kwargs["device"] = torch.device("meta")
        return func(*args, **kwargs)


def _meta_constructors() -> frozenset:
    from torch.utils._device import _device_constructors

    return frozenset(_device_constructors())


_META_CACHE: dict[tuple[str, int | None], _MetaDescription] = {}
_META_LOCK = threading.Lock()


def _meta_description(arch: str, num_classes: int | None) -> _MetaDescription:
    key = (arch, num_classes)
    with _META_LOCK:
        found = _META_CACHE.get(key)
    if found is not None:
        return found
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # GoogLeNet/Inception's init_weights notice
        with _ParametersOnMeta():
            net = get_model(arch, weights=None, **kwargs)
    state = tuple((k, TensorSpec(tuple(int(s) for s in v.shape), v.dtype)) for k, v in net.state_dict().items())
    # The classifier is the last Linear; SqueezeNets classify with a final 1x1 convolution.
    heads = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)] or [
        name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)
    ]
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    described = _MetaDescription(
        state=state,
        head_key=f"{heads[-1]}.weight" if heads else None,
        stem_key=f"{convs[0]}.weight" if convs else None,
    )
    with _META_LOCK:
        _META_CACHE[key] = described
    return described


@dataclass(frozen=True)
class Preprocessing:
    """What the pretrained weights of an architecture expect: labels, input size, mean, std."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def weights_for(arch: str, weights: str = "default") -> WeightsEnum:
    """The torchvision weights entry: ``"default"`` (the recommended one) or a name like ``"IMAGENET1K_V1"``."""
    available = get_model_weights(arch)
    if weights.strip().lower() == "default":
        return available.DEFAULT
    try:
        return available[weights.strip().upper()]
    except KeyError as exc:
        names = ", ".join(w.name for w in available)
        raise ParameterError(f"{arch} has no weights named {weights!r}; choose default, {names} or None.") from exc


def preprocessing_of(weights: WeightsEnum) -> Preprocessing:
    """Labels from ``meta["categories"]``, crop size and mean/std from the weights' transforms."""
    transform = weights.transforms()
    crop = transform.crop_size
    size = (int(crop[0]), int(crop[-1]))
    return Preprocessing(
        labels=tuple(weights.meta["categories"]),
        input_size=size,
        # three values each (RGB) for every torchvision classifier's weights
        mean=cast(tuple[float, float, float], tuple(float(v) for v in transform.mean)),
        std=cast(tuple[float, float, float], tuple(float(v) for v in transform.std)),
    )


# ------------------------------------------------------------------------------------------
# Pretrained weights: cache, download, load


def is_offline() -> bool:
    """Whether downloads are forbidden (``XAI_OFFLINE`` set to 1, true or yes)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(weights: WeightsEnum) -> Path:
    """The file the weights are (or would be) cached in."""
    return cache_dir() / Path(urllib.parse.urlparse(weights.url).path).name


def _missing_message(weights: WeightsEnum, arch: str, why: str) -> str:
    path = cached_weights_path(weights)
    return (
        f"The pretrained weights of {arch} are not on this machine ({why}). "
        f"Download {weights.url} and put it at {path}, or use random weights (weights=None), "
        "or upload your own state dict."
    )


_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")


def _download(url: str, dest: Path, *, timeout: float) -> None:
    """Fetch ``url`` to ``dest`` atomically, checking the sha256 prefix in the file name if any."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = _HASH_PREFIX.findall(dest.name)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        if expected and not digest.hexdigest().startswith(expected[-1]):
            raise OSError(f"the downloaded file's checksum does not match {expected[-1]}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_weights(weights: WeightsEnum, arch: str, *, timeout: float = 30.0) -> Path:
    """Path of the cached weights file, downloading it first when allowed.

    Raises :class:`ModelNotAvailable` when the file is absent and the machine is offline, or
    the download fails for any reason.
    """
    path = cached_weights_path(weights)
    if path.is_file():
        return path
    if is_offline():
        raise ModelNotAvailable(_missing_message(weights, arch, f"{OFFLINE_ENV}=1 forbids downloading"))
    try:
        _download(weights.url, path, timeout=timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ModelNotAvailable(_missing_message(weights, arch, f"the download failed: {exc}")) from exc
    return path


# torchvision's old DenseNet files name layers "norm.1" where modules are now "norm1".
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def rename_old_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with DenseNet keys of the old ``norm.1`` form renamed to today's ``norm1``."""
    return {_DENSENET_OLD_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def load_pretrained(net: nn.Module, weights: WeightsEnum, arch: str, *, timeout: float = 30.0) -> None:
    """Load the cached (or fetched) pretrained weights into ``net``, strictly, ``weights_only=True``."""
    path = fetch_weights(weights, arch, timeout=timeout)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read means a damaged cache file
        raise ModelNotAvailable(
            f"The cached weights file {path} could not be read ({type(exc).__name__}); "
            "delete it and download it again, or use weights=None."
        ) from exc
    if family_of(arch) == "densenet":
        state = rename_old_densenet_keys(state)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelNotAvailable(
            f"The cached weights file {path} does not fit {arch}; delete it and download it again."
        ) from exc


def weights_cached(arch: str, weights: str = "default") -> bool:
    """Whether the pretrained weights of ``arch`` are in the local cache (no network access)."""
    return cached_weights_path(weights_for(arch, weights)).is_file()
