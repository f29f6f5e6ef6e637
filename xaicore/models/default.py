"""The embedded default model: a small VGG-style CNN trained on the procedural shapes.

Its weights (``assets/default_model.pt``, a plain state dict) and machine-readable card
(``assets/default_model.json``: classes, normalization, data, accuracy, fingerprint) are made
by ``xai train-default`` (:mod:`xaicore.models.training`). Nothing here downloads anything.
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

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
WEIGHTS_PATH = ASSETS_DIR / "default_model.pt"
CARD_PATH = ASSETS_DIR / "default_model.json"
MODEL_NAME = "Default shapes CNN"
INPUT_SIZE = (64, 64)
BLOCKS: tuple[tuple[int, ...], ...] = ((16,), (32,), (64,), (64,))
"""Output channels of each block's 3x3 convolutions; every block ends with 2x2 max-pooling."""
HIDDEN = (1024, 1024)
"""Widths of the hidden fully connected layers. 1024 rather than 128/64: with the narrower head GAX
reached its target for only 80-85% of generated images (docs/benchmarks.md, "The default model")."""

_RETRAIN = "Rebuild it with `xai train-default` (about 2 minutes on a 2-core CPU)."


def conv_count() -> int:
    """Number of convolutions in :data:`BLOCKS`."""
    return sum(len(block) for block in BLOCKS)


class ShapesNet(nn.Module):
    """Small VGG-style classifier for 64x64 RGB input.

    Blocks of 3x3 convolutions, each followed by a ReLU, and 2x2 max-pooling at the end of every
    block (channels per convolution: :data:`BLOCKS`), then fully connected layers
    (flattened features -> :data:`HIDDEN` -> ``num_classes``). Convolutions are numbered across
    blocks (``conv1`` ... with ``relu1`` ...; ``pool1`` ... per block). Every ReLU is its own
    non-in-place ``nn.ReLU`` module and sub-modules are registered in the order the forward
    pass runs them, so hook-based explainers and layer randomization see the real network.

    Parameters
    ----------
    num_classes:
        Number of output logits.
    batch_norm:
        Put a ``BatchNorm2d`` (``bn1`` ...) after each convolution. Only for training: the
        trainer folds them into the convolutions (:func:`fold_batch_norm`), so the shipped
        model is the plain network.
    """

    def __init__(self, num_classes: int, *, batch_norm: bool = False) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels, index = 3, 0
        for block_index, block in enumerate(BLOCKS, start=1):
            for channels in block:
                index += 1
                layers[f"conv{index}"] = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
                if batch_norm:
                    layers[f"bn{index}"] = nn.BatchNorm2d(channels)
                layers[f"relu{index}"] = nn.ReLU(inplace=False)
                in_channels = channels
            layers[f"pool{block_index}"] = nn.MaxPool2d(kernel_size=2)
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        widths = head_widths(num_classes)
        head: OrderedDict[str, nn.Module] = OrderedDict()
        for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:]), start=1):
            head[f"fc{index}"] = nn.Linear(fan_in, fan_out)
            if index < len(widths) - 1:
                head[f"relu_fc{index}"] = nn.ReLU(inplace=False)
        self.classifier = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def flat_side() -> int:
    """Side of the last feature map (the input side halved once per block)."""
    return INPUT_SIZE[0] // 2 ** len(BLOCKS)


def head_widths(num_classes: int) -> tuple[int, ...]:
    """Widths through the fully connected layers: flattened features, :data:`HIDDEN`, classes."""
    return (BLOCKS[-1][-1] * flat_side() ** 2, *HIDDEN, num_classes)


def from_state_dict(state: dict[str, torch.Tensor], num_classes: int) -> ShapesNet:
    """A plain :class:`ShapesNet` holding ``state`` (strict keys and shapes).

    Built on the meta device first, so no initialization runs and no RNG is touched.
    """
    with torch.device("meta"):
        net = ShapesNet(num_classes)
    net.load_state_dict(state, strict=True, assign=True)
    return net


@torch.no_grad()
def fold_batch_norm(net: ShapesNet) -> ShapesNet:
    """The plain :class:`ShapesNet` computing what ``net`` (built with ``batch_norm=True``)
    computes in eval mode: each ``BatchNorm2d`` merged into the convolution before it."""
    state = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("classifier.")}
    for index in range(1, conv_count() + 1):
        conv = cast(nn.Conv2d, net.features.get_submodule(f"conv{index}"))
        bn = cast(nn.BatchNorm2d, net.features.get_submodule(f"bn{index}"))
        if conv.bias is None or bn.running_mean is None or bn.running_var is None:
            raise ParameterError(
                f"conv{index} cannot be folded: give a ShapesNet built with batch_norm=True (convolutions "
                "with biases, batch norms with running statistics)."
            )
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        state[f"features.conv{index}.weight"] = conv.weight * scale.view(-1, 1, 1, 1)
        state[f"features.conv{index}.bias"] = (conv.bias - bn.running_mean) * scale + bn.bias
    state = {k: v.contiguous() for k, v in state.items()}
    return from_state_dict(state, cast(nn.Linear, net.classifier[-1]).out_features)


def read_card(path: Path = CARD_PATH) -> dict[str, Any]:
    """The default model's card as a dict; :class:`ModelNotAvailable` when missing or damaged."""
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"The default model's card {path} is missing. {_RETRAIN}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotAvailable(f"The default model's card {path} cannot be read. {_RETRAIN}") from exc
    required = ("classes", "mean", "std", "fingerprint")
    if not isinstance(card, dict) or any(key not in card for key in required):
        raise ModelNotAvailable(f"The default model's card {path} lacks {', '.join(required)}. {_RETRAIN}")
    return card


def wrap(net: nn.Module, card: dict[str, Any]) -> PixelSpaceModel:
    """``net`` in pixel space with the card's normalization, in eval mode."""
    return PixelSpaceModel(net, mean=tuple(card["mean"]), std=tuple(card["std"])).eval()


def load_default_bundle(*, device: torch.device | str | None = None) -> ModelBundle:
    """The embedded default model as a bundle, on ``device`` (default: :func:`default_device`).

    Raises
    ------
    ModelNotAvailable
        When the weights or the card are missing, damaged, or do not match each other.
    """
    card = read_card(CARD_PATH)
    try:
        state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"The default model's weights {WEIGHTS_PATH} are missing. {_RETRAIN}") from exc
    except Exception as exc:  # any failure to unpickle safely means a damaged file
        raise ModelNotAvailable(f"The default model's weights {WEIGHTS_PATH} cannot be read. {_RETRAIN}") from exc
    labels = tuple(str(c) for c in card["classes"])
    try:
        net = from_state_dict(state, len(labels))
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelNotAvailable(
            f"The default model's weights {WEIGHTS_PATH} do not fit its architecture. {_RETRAIN}"
        ) from exc
    model = wrap(net, card)
    digest = fingerprint(model)
    if digest != card["fingerprint"]:
        raise ModelNotAvailable(
            f"The default model's weights {WEIGHTS_PATH} do not match its card {CARD_PATH}. {_RETRAIN}"
        )
    target = torch.device(device) if device is not None else default_device()
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
        source="default",
        preprocess=Preprocess.direct(
            INPUT_SIZE, origin="the default model is trained on images resized straight to its input size"
        ),
    )
