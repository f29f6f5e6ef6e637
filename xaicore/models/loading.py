"""Loading any supported model into a :class:`~xaicore.models.bundle.ModelBundle`.

Sources, one entry point, :func:`load_model`:

* ``"default"``: the embedded shapes CNN (offline, :mod:`xaicore.models.default`);
* ``"clever-hans"``: the same architecture trained to cheat on a stamp (:mod:`xaicore.clever_hans.model`);
* ``"xray"``: the embedded grayscale X-ray teaching CNN (offline, :mod:`xaicore.models.xray`);
* a torchvision name (``"resnet18"``, ``"vgg16"``...): ImageNet weights from the local cache,
  or random weights with ``weights=None`` (:mod:`xaicore.models.zoo`);
* a state dict file or its bytes, for a named torchvision architecture
  (:mod:`xaicore.models.checkpoint`).

Every torchvision-built network is made safe for hook-based explainers on a copy
(:func:`xaicore.models.safety.make_hook_safe`), wrapped in pixel space, put in eval mode with
frozen parameters, and fingerprinted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models import checkpoint, zoo
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order, last_conv_layer
from xaicore.models.preprocess import Preprocess
from xaicore.models.safety import make_hook_safe
from xaicore.runtime.device import default_device

DEFAULT_NAME = "default"
XRAY_NAME = "xray"
CLEVER_HANS_NAME = "clever-hans"  # the Clever-Hans lab's cheating model (xaicore.clever_hans.model)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)
"""Defaults for a one-channel model: ImageNet's mean and std averaged over R, G and B."""
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class ModelInfo:
    """One loadable model, as listed by :func:`list_models`.

    ``kind`` is ``"default"``, ``"embedded"`` (another shipped model) or ``"torchvision"``;
    ``weights_available`` says whether its trained weights are on this machine (no network
    needed); ``weights_location`` is the file they are read from. Random weights
    (``weights=None``) are always available for torchvision.
    """

    name: str
    display: str
    kind: str
    description: str
    weights_available: bool
    weights_location: str


def list_models() -> list[ModelInfo]:
    """The embedded default and Clever-Hans models, then the curated torchvision models, with
    offline availability."""
    from xaicore.clever_hans import model as clever_hans
    from xaicore.models import default

    infos = [
        ModelInfo(
            name=DEFAULT_NAME,
            display=default.MODEL_NAME,
            kind="default",
            description="Small VGG-style CNN trained on generated shapes (64x64); embedded, works offline.",
            weights_available=default.WEIGHTS_PATH.is_file() and default.CARD_PATH.is_file(),
            weights_location=str(default.WEIGHTS_PATH),
        ),
        ModelInfo(
            name=clever_hans.NAME,
            display=clever_hans.MODEL_NAME,
            kind="embedded",
            description="The default CNN trained on stamped shapes: it cheats on a corner stamp (Clever-Hans lab).",
            weights_available=clever_hans.WEIGHTS_PATH.is_file() and clever_hans.CARD_PATH.is_file(),
            weights_location=str(clever_hans.WEIGHTS_PATH),
        ),
    ]
    from xaicore.models import xray

    infos.append(
        ModelInfo(
            name=xray.NAME,
            display=xray.MODEL_NAME,
            kind="embedded",
            description="Small one-channel CNN trained on generated chest-X-ray-like images (64x64, grayscale): "
            "normal or finding; embedded, works offline.",
            weights_available=xray.available(),
            weights_location=str(xray.WEIGHTS_PATH),
        )
    )
    for entry in zoo.ZOO.values():
        weights = zoo.weights_for(entry.name)
        path = zoo.cached_weights_path(weights)
        infos.append(
            ModelInfo(
                name=entry.name,
                display=entry.title,
                kind="torchvision",
                description=entry.description,
                weights_available=path.is_file(),
                weights_location=str(path),
            )
        )
    return infos


def load_model(
    name_or_path: str | Path | bytes,
    *,
    device: torch.device | str | None = None,
    weights: str | None = "default",
    arch: str | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
) -> ModelBundle:
    """Load a model as a bundle in pixel space, made safe for hook-based explainers.

    Parameters
    ----------
    name_or_path:
        ``"default"``; a torchvision classification name (``"resnet18"``...); or a state dict
        file (``.pt``/``.pth``/``.safetensors`` path) or its bytes, which needs ``arch``.
    device:
        Where the model runs; default :func:`xaicore.runtime.device.default_device`.
    weights:
        torchvision only: ``"default"`` (ImageNet, from the local torch hub cache, downloaded
        only when online and ``XAI_OFFLINE`` is not set), a weights name like
        ``"IMAGENET1K_V1"``, or ``None`` for reproducible random weights.
    arch:
        torchvision architecture of a state dict.
    num_classes, class_names:
        Class count and names (default ``"class 0"``, ...); for a state dict the count is
        read from its classifier when not given. With pretrained ImageNet weights they
        must agree with ImageNet's 1000 classes.
    input_size, mean, std, grayscale:
        Preprocessing: input (height, width) or one side, per-channel mean and std, and
        whether the model wants grayscale (copied to three channels). Defaults: the
        weights' own (torchvision) or 224 and ImageNet's mean/std (state dicts).

    Raises
    ------
    UnknownNameError, ParameterError, ModelNotAvailable, CheckpointError
    """
    target = torch.device(device) if device is not None else default_device()
    if isinstance(name_or_path, (bytes, bytearray)):
        return load_checkpoint_model(
            bytes(name_or_path),
            arch=arch,
            device=target,
            num_classes=num_classes,
            class_names=class_names,
            input_size=input_size,
            mean=mean,
            std=std,
            grayscale=grayscale,
        )
    text = str(name_or_path).strip()
    if text.lower() in (DEFAULT_NAME, XRAY_NAME, CLEVER_HANS_NAME):
        _refuse_options_for_default(
            arch=arch,
            num_classes=num_classes,
            class_names=class_names,
            input_size=input_size,
            mean=mean,
            std=std,
            grayscale=grayscale,
            weights=weights,
        )
        return _load_embedded(text.lower(), device=target)
    if text.lower() in zoo.torchvision_names():
        return load_torchvision(
            text.lower(),
            weights=weights,
            device=target,
            num_classes=num_classes,
            class_names=class_names,
            input_size=input_size,
            mean=mean,
            std=std,
            grayscale=grayscale,
        )
    path = Path(text).expanduser()
    if path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return load_checkpoint_model(
            path,
            arch=arch,
            device=target,
            num_classes=num_classes,
            class_names=class_names,
            input_size=input_size,
            mean=mean,
            std=std,
            grayscale=grayscale,
        )
    known = ", ".join([DEFAULT_NAME, CLEVER_HANS_NAME, XRAY_NAME, *zoo.ZOO])
    raise UnknownNameError(
        f"No model named {text!r}. Use one of {known} (or another torchvision classifier), "
        "or the path of a .pt/.pth/.safetensors state dict."
    )


def _refuse_options_for_default(**given: object) -> None:
    defaults = {"weights": "default", "grayscale": False}
    odd = [k for k, v in given.items() if v != defaults.get(k)]
    if odd:
        raise ParameterError(
            f"The embedded models have fixed settings; {', '.join(sorted(odd))} cannot be changed for them."
        )


def load_torchvision(
    arch: str,
    *,
    weights: str | None = "default",
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
) -> ModelBundle:
    """A torchvision classifier by name, pretrained (from the local cache) or random (``weights=None``).

    Labels, input size and mean/std default to the pretrained weights' (ImageNet), also for
    random weights; so does the preprocessing (shorter side resized, then the centre crop, as
    ``weights.transforms()`` says: :meth:`Preprocess.from_weights`). See :func:`load_model`
    for the parameters.
    """
    arch = zoo.check_arch(arch)
    reference = zoo.weights_for(arch, "default" if weights is None else weights)
    pre = zoo.preprocessing_of(reference)
    if weights is not None and num_classes not in (None, len(pre.labels)):
        raise ParameterError(
            f"Pretrained {arch} weights have {len(pre.labels)} classes, not {num_classes}; use weights=None "
            "for a random model with another class count, or upload your own state dict."
        )
    labels = _labels(class_names, num_classes, fallback=pre.labels)
    net = zoo.build_net(arch, num_classes=len(labels))
    if weights is not None:
        zoo.load_pretrained(net, reference, arch)
    title = zoo.ZOO[arch].title if arch in zoo.ZOO else arch
    name = f"{title} ({'random weights' if weights is None else f'ImageNet, {reference.name}'})"
    source = f"torchvision:{arch}/{'random' if weights is None else reference.name}"
    size = _size(input_size, pre.input_size)
    return assemble_bundle(
        net,
        arch=arch,
        labels=labels,
        input_size=size,
        mean=pre.mean if mean is None else mean,
        std=pre.std if std is None else std,
        grayscale=grayscale,
        device=device,
        name=name,
        source=source,
        preprocess=Preprocess.from_weights(reference, input_size=size, random=weights is None),
    )


def load_checkpoint_model(
    source: bytes | str | Path,
    *,
    arch: str | None,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
    file_name: str | None = None,
    max_bytes: int = checkpoint.DEFAULT_MAX_BYTES,
) -> ModelBundle:
    """A user's state dict for the torchvision architecture ``arch``, read safely.

    The classifier head is sized by ``num_classes`` (or read from the state dict); keys and
    shapes must match exactly. Defaults: input 224, ImageNet mean/std, classes named
    ``"class 0"``... Images are preprocessed by :meth:`Preprocess.for_checkpoint` (shorter side
    resized to the input size, then the centre crop). ``file_name`` names the model (the upload's name);
    ``max_bytes`` caps the file size before anything is read. Raises :class:`CheckpointError` for refused files.
    """
    if not arch:
        raise ParameterError(
            "Say which architecture the state dict is for (arch=..., e.g. resnet18); "
            "a state dict holds only weights, not the network's structure."
        )
    arch = zoo.check_arch(arch)
    if class_names is not None and num_classes is None:
        num_classes = len(class_names)
    state = checkpoint.read_unchecked_values(source, max_bytes=max_bytes)
    if zoo.family_of(arch) == "densenet":
        state = zoo.rename_old_densenet_keys(state)
    found = checkpoint.resolve_num_classes(state, head_key=zoo.head_key(arch), num_classes=num_classes, arch=arch)
    if found is not None and not 1 <= found <= MAX_CLASSES:
        raise ParameterError(f"The number of classes must be between 1 and {MAX_CLASSES:,}, not {found:,}.")
    # Keys, shapes and sizes are compared with the architecture described on the meta device,
    # so a file that does not fit is refused before the real network is built or a value read.
    channels = zoo.input_channels(state, arch)
    expected = zoo.expected_state(arch, num_classes=found, in_channels=channels)
    checkpoint.check_total_elements(state, limit=sum(spec.numel for spec in expected.values()), arch=arch)
    checkpoint.match_architecture(state, expected, arch=arch)
    checkpoint.check_finite(state)
    mean, std = _normalization(mean, std, channels=channels)
    net = zoo.build_net(arch, num_classes=found, in_channels=channels)
    classes = found if found is not None else _out_features(net)
    labels = _labels(class_names, classes, fallback=None)
    checkpoint.load_into(net, state, arch=arch)
    shown = file_name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "uploaded state dict")
    size = _size(input_size, (224, 224))
    return assemble_bundle(
        net,
        arch=arch,
        labels=labels,
        input_size=size,
        mean=mean,
        std=std,
        grayscale=grayscale or channels == 1,
        device=device,
        name=f"{arch} from {shown}" + (" (grayscale, one channel)" if channels == 1 else ""),
        source=f"checkpoint:{shown}",
        preprocess=Preprocess.for_checkpoint(size),
    )


def _normalization(
    mean: Sequence[float] | None, std: Sequence[float] | None, *, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of a checkpoint's input: as given, or the defaults for its channel count.

    A one-channel model takes one value each (default :data:`GRAY_MEAN`, :data:`GRAY_STD`);
    a three-channel model three (default ImageNet's).
    """
    if channels == 1:
        chosen = (tuple(GRAY_MEAN if mean is None else mean), tuple(GRAY_STD if std is None else std))
        if len(chosen[0]) != 1 or len(chosen[1]) != 1:
            raise ParameterError(
                "This checkpoint's first layer takes one channel (a grayscale model): give one mean and one "
                f"std value, not {len(chosen[0])} and {len(chosen[1])} (without them {GRAY_MEAN[0]} and "
                f"{GRAY_STD[0]} are used)."
            )
        return chosen
    chosen = (tuple(IMAGENET_MEAN if mean is None else mean), tuple(IMAGENET_STD if std is None else std))
    if len(chosen[0]) != 3 or len(chosen[1]) != 3:
        raise ParameterError(
            "This checkpoint's first layer takes three channels (R, G, B): give three mean and three std values."
        )
    return chosen


def _out_features(net: nn.Module) -> int:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("This architecture has no linear classifier; give num_classes explicitly.")
    return int(linears[-1].out_features)


def _labels(
    class_names: Sequence[str] | None, num_classes: int | None, *, fallback: Sequence[str] | None
) -> tuple[str, ...]:
    if class_names is not None:
        names = tuple(str(c) for c in class_names)
        if num_classes is not None and len(names) != int(num_classes):
            raise ParameterError(f"{len(names)} class names were given for {num_classes} classes; give one per class.")
        if len(set(names)) != len(names):
            raise ParameterError("Class names must be different from each other.")
        return names
    if num_classes is None:
        if fallback is None:
            raise ParameterError("Give the number of classes or the class names.")
        return tuple(fallback)
    if int(num_classes) < 1:
        raise ParameterError(f"The number of classes must be at least 1, not {num_classes}.")
    if fallback is not None and len(fallback) == int(num_classes):
        return tuple(fallback)
    return tuple(f"class {i}" for i in range(int(num_classes)))


def _size(input_size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if input_size is None:
        return (default[0], default[1])
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(int(s) < 8 or int(s) > 4096 for s in size):
        raise ParameterError(f"The input size must be one or two sides between 8 and 4096 pixels, not {input_size!r}.")
    return int(size[0]), int(size[1])


def assemble_bundle(
    net: nn.Module,
    *,
    arch: str,
    labels: Sequence[str],
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    grayscale: bool,
    device: torch.device | str | None,
    name: str,
    source: str,
    unavailable: Mapping[str, str] | None = None,
    preprocess: Preprocess | None = None,
) -> ModelBundle:
    """Make ``net`` hook-safe (on a copy), wrap it in pixel space and describe it as a bundle.

    The model is in eval mode with parameters that do not require gradients; the CAM layer
    follows the architecture's family (else the last convolution) and the randomizable layers
    are in forward order. ``unavailable`` adds reasons to those the safety audit finds.
    ``preprocess`` is how images become input (default: a straight resize to ``input_size``).
    """
    channels = len(tuple(mean))
    audit_example = torch.randn(1, channels, *input_size, generator=torch.Generator().manual_seed(0))
    safe, reasons = make_hook_safe(net, input_size=input_size, example=audit_example)
    model = PixelSpaceModel(safe, mean=tuple(mean), std=tuple(std), grayscale=grayscale).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    example = torch.zeros(1, 3, *input_size)
    inner = zoo.cam_layer_of(safe, zoo.family_of(arch))
    cam = f"net.{inner}" if inner is not None else last_conv_layer(model, example)
    layers = tuple(forward_order(model, example))
    outputs = _logit_count(model, example)
    if len(labels) != outputs:
        raise ParameterError(f"The model has {outputs} outputs but {len(labels)} class names were given.")
    digest = fingerprint(model)
    target = torch.device(device) if device is not None else default_device()
    return ModelBundle(
        model=model.to(target),
        labels=tuple(labels),
        input_size=input_size,
        cam_layer=cam,
        layers=layers,
        name=name,
        fingerprint=digest,
        unavailable={**reasons, **dict(unavailable or {})},
        source=source,
        preprocess=preprocess,  # type: ignore[arg-type]  # None: the bundle makes a straight resize
    )


@torch.no_grad()
def _logit_count(model: nn.Module, example: torch.Tensor) -> int:
    return int(model(example).shape[-1])


def describe_unavailable(bundle: ModelBundle) -> str:
    """One line per unavailable method, for the CLI and logs."""
    if not bundle.unavailable:
        return "every explanation method can run on this model."
    return "\n".join(f"{method}: {reason}" for method, reason in sorted(bundle.unavailable.items()))


def _load_embedded(name: str, *, device: torch.device) -> ModelBundle:
    """One of the shipped models (imported on demand)."""
    if name == DEFAULT_NAME:
        from xaicore.models.default import load_default_bundle

        return load_default_bundle(device=device)
    if name == XRAY_NAME:
        from xaicore.models.xray import load_xray_bundle

        return load_xray_bundle(device=device)
    from xaicore.clever_hans.model import load_clever_hans_bundle

    return load_clever_hans_bundle(device=device)
