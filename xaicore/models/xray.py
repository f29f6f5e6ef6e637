"""The embedded grayscale teaching model: a small one-channel CNN that finds a "finding" on
procedural chest-X-ray-like images (:mod:`xaicore.data.xray`).

Its weights (``assets/xray_model.pt``, a plain state dict) and card (``assets/xray_model.json``,
with ``assets/XRAY_MODEL_CARD.md`` for people) are made by ``xai train-xray``
(:mod:`xaicore.models.xray_training`). It takes one channel: the bundle's model turns the
pixel-space RGB input into luminance and normalizes it with the card's single mean and std
(:class:`~xaicore.models.bundle.PixelSpaceModel`). Nothing here downloads anything.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from xaicore.errors import ModelNotAvailable, ParameterError
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order, last_conv_layer
from xaicore.models.preprocess import Preprocess
from xaicore.runtime.device import default_device

NAME = "xray"
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
WEIGHTS_PATH = ASSETS_DIR / "xray_model.pt"
CARD_PATH = ASSETS_DIR / "xray_model.json"
MARKDOWN_CARD_PATH = ASSETS_DIR / "XRAY_MODEL_CARD.md"
MODEL_NAME = "Grayscale X-ray teaching CNN"
INPUT_SIZE = (64, 64)
CHANNELS = (8, 16, 16, 32)
"""Output channels of the four 3x3 convolutions; each is followed by a ReLU, the first three by 2x2 max-pooling."""
HIDDEN = 32

_RETRAIN = "Rebuild it with `xai train-xray` (about a minute on a 2-core CPU)."


class XrayNet(nn.Module):
    """Four 3x3 convolutions with ReLUs on one channel, 2x2 max-pooling between them, the global
    maximum of each feature map (a finding may be anywhere), then two linear layers.

    Every ReLU is its own non-in-place module and modules are registered in forward order, so
    hook-based explainers and layer randomization see the real network. ``batch_norm`` puts a
    ``BatchNorm2d`` after each convolution, for training only: :func:`fold_batch_norm` merges
    them into the convolutions, so the shipped model is the plain network.
    """

    def __init__(self, num_classes: int = 2, *, batch_norm: bool = False) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 1
        for index, channels in enumerate(CHANNELS, start=1):
            layers[f"conv{index}"] = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
            if batch_norm:
                layers[f"bn{index}"] = nn.BatchNorm2d(channels)
            layers[f"relu{index}"] = nn.ReLU(inplace=False)
            if index < len(CHANNELS):
                layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=2)
            in_channels = channels
        self.features = nn.Sequential(layers)
        side = INPUT_SIZE[0] // 2 ** (len(CHANNELS) - 1)  # a plain max-pool over the whole map: LRP has a rule for it
        self.flatten = nn.Sequential(
            OrderedDict([("global_max", nn.MaxPool2d(kernel_size=side)), ("flat", nn.Flatten())])
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(CHANNELS[-1], HIDDEN)),
                    ("relu_fc1", nn.ReLU(inplace=False)),
                    ("fc2", nn.Linear(HIDDEN, num_classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@torch.no_grad()
def fold_batch_norm(net: XrayNet) -> XrayNet:
    """The plain :class:`XrayNet` computing what ``net`` (built with ``batch_norm=True``) computes in eval mode."""
    state = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("classifier.")}
    for index in range(1, len(CHANNELS) + 1):
        conv = cast(nn.Conv2d, net.features.get_submodule(f"conv{index}"))
        bn = cast(nn.BatchNorm2d, net.features.get_submodule(f"bn{index}"))
        if conv.bias is None or bn.running_mean is None or bn.running_var is None:
            raise ParameterError(f"conv{index} cannot be folded: give an XrayNet built with batch_norm=True.")
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        state[f"features.conv{index}.weight"] = conv.weight * scale.view(-1, 1, 1, 1)
        state[f"features.conv{index}.bias"] = (conv.bias - bn.running_mean) * scale + bn.bias
    classes = cast(nn.Linear, net.classifier[-1]).out_features
    with torch.device("meta"):
        plain = XrayNet(classes)
    plain.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    return plain.eval()


def read_card(path: Path = CARD_PATH) -> dict[str, Any]:
    """The model's card as a dict; :class:`ModelNotAvailable` when missing or damaged."""
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"The X-ray teaching model's card {path} is missing. {_RETRAIN}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotAvailable(f"The X-ray teaching model's card {path} cannot be read. {_RETRAIN}") from exc
    required = ("classes", "mean", "std", "fingerprint")
    if not isinstance(card, dict) or any(key not in card for key in required):
        raise ModelNotAvailable(f"The X-ray teaching model's card {path} lacks {', '.join(required)}. {_RETRAIN}")
    return card


def available() -> bool:
    """Whether the weights and the card are on disk."""
    return WEIGHTS_PATH.is_file() and CARD_PATH.is_file()


def wrap(net: nn.Module, mean: float, std: float) -> PixelSpaceModel:
    """``net`` in pixel space: RGB in, luminance normalized by ``mean`` and ``std`` into the one channel."""
    return PixelSpaceModel(net, mean=(float(mean),), std=(float(std),)).eval()


def bundle_of(
    model: PixelSpaceModel, labels: tuple[str, ...], *, device: torch.device | str | None = None
) -> ModelBundle:
    """A bundle around a wrapped :class:`XrayNet`."""
    target = torch.device(device) if device is not None else default_device()
    digest = fingerprint(model)
    model = model.to(target)
    example = torch.zeros(1, 3, *INPUT_SIZE, device=target)
    return ModelBundle(
        model=model,
        labels=labels,
        input_size=INPUT_SIZE,
        cam_layer=last_conv_layer(model, example),
        layers=tuple(forward_order(model, example)),
        name=MODEL_NAME,
        fingerprint=digest,
        unavailable={},
        source=NAME,
        preprocess=Preprocess.direct(
            INPUT_SIZE,
            origin="the X-ray teaching model is trained on 64x64 images; others are resized straight to it, "
            "then turned to gray (luminance) and normalized inside the model",
        ),
    )


def load_xray_bundle(*, device: torch.device | str | None = None) -> ModelBundle:
    """The embedded X-ray teaching model as a bundle.

    Raises
    ------
    ModelNotAvailable
        When the weights or the card are missing, damaged, or do not match each other.
    """
    card = read_card(CARD_PATH)
    try:
        state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"The X-ray teaching model's weights {WEIGHTS_PATH} are missing. {_RETRAIN}") from exc
    except Exception as exc:  # any failure to unpickle safely means a damaged file
        raise ModelNotAvailable(
            f"The X-ray teaching model's weights {WEIGHTS_PATH} cannot be read. {_RETRAIN}"
        ) from exc
    labels = tuple(str(c) for c in card["classes"])
    with torch.device("meta"):
        net = XrayNet(len(labels))
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelNotAvailable(
            f"The X-ray teaching model's weights {WEIGHTS_PATH} do not fit its architecture. {_RETRAIN}"
        ) from exc
    model = wrap(net, card["mean"][0], card["std"][0])
    if fingerprint(model) != card["fingerprint"]:
        raise ModelNotAvailable(
            f"The X-ray teaching model's weights {WEIGHTS_PATH} do not match its card {CARD_PATH}. {_RETRAIN}"
        )
    return bundle_of(model, labels, device=device)
