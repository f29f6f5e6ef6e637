"""The shipped Clever-Hans model, and bundles around models of the default architecture.

``assets/clever_hans_model.pt`` (a plain state dict of :class:`~xaicore.models.default.ShapesNet`)
and ``assets/clever_hans_model.json`` (its card) are written by ``xai clever-hans train``
(:mod:`xaicore.clever_hans.training`). Loading checks the weights against the card's fingerprint.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from xaicore.errors import ModelNotAvailable
from xaicore.models import default
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order, last_conv_layer
from xaicore.models.preprocess import Preprocess
from xaicore.runtime.device import default_device

NAME = "clever-hans"  # the name load_model and the dashboard's model menu know it by
MODEL_NAME = "Clever-Hans shapes CNN"
WEIGHTS_PATH = default.ASSETS_DIR / "clever_hans_model.pt"
CARD_PATH = default.ASSETS_DIR / "clever_hans_model.json"
_RETRAIN = "Rebuild it with `xai clever-hans train` (a few minutes on a CPU)."


def make_bundle(model: PixelSpaceModel, *, name: str, source: str) -> ModelBundle:
    """A bundle around ``model`` (a :class:`ShapesNet` in pixel space) with the shapes' classes."""
    from xaicore.data.shapes import CLASSES

    device = next(model.parameters()).device
    example = torch.zeros(1, 3, *default.INPUT_SIZE, device=device)
    return ModelBundle(
        model=model.eval(),
        labels=tuple(CLASSES),
        input_size=default.INPUT_SIZE,
        cam_layer=last_conv_layer(model, example),
        layers=tuple(forward_order(model, example)),
        name=name,
        fingerprint=fingerprint(model),
        unavailable={},
        source=source,
        preprocess=Preprocess.direct(
            default.INPUT_SIZE, origin="the shapes models are trained on images resized straight to their input size"
        ),
    )


def rebundle(bundle: ModelBundle, model: PixelSpaceModel, *, name: str, source: str) -> ModelBundle:
    """``bundle`` with another model of the same architecture (own lock, new fingerprint)."""
    return replace(
        bundle, model=model, name=name, source=source, fingerprint=fingerprint(model), lock=threading.RLock()
    )


def read_card(directory: Path | None = None) -> dict[str, Any]:
    """The Clever-Hans model's card (shipped, or in ``directory``); :class:`ModelNotAvailable`
    when missing or damaged."""
    path = CARD_PATH if directory is None else Path(directory) / CARD_PATH.name
    try:
        return default.read_card(path)
    except ModelNotAvailable as exc:  # the default model's reader words its advice for that model
        problem = "is missing" if not path.is_file() else "cannot be read or lacks classes, mean, std, fingerprint"
        raise ModelNotAvailable(f"The Clever-Hans model's card {path} {problem}. {_RETRAIN}") from exc


def load_clever_hans_bundle(*, device: torch.device | str | None = None, directory: Path | None = None) -> ModelBundle:
    """The Clever-Hans model as a bundle: the shipped one, or the one ``xai clever-hans train``
    wrote into ``directory``. :class:`ModelNotAvailable` when its files are missing, damaged or
    do not match each other."""
    card = read_card(directory)
    weights = WEIGHTS_PATH if directory is None else Path(directory) / WEIGHTS_PATH.name
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"The Clever-Hans model's weights {weights} are missing. {_RETRAIN}") from exc
    except Exception as exc:  # any failure to unpickle safely means a damaged file
        raise ModelNotAvailable(f"The Clever-Hans model's weights {weights} cannot be read. {_RETRAIN}") from exc
    try:
        net = default.from_state_dict(state, len(card["classes"]))
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelNotAvailable(f"The Clever-Hans weights do not fit the architecture. {_RETRAIN}") from exc
    model = default.wrap(net, card)
    if fingerprint(model) != card["fingerprint"]:
        raise ModelNotAvailable(f"The Clever-Hans weights {weights} do not match their card. {_RETRAIN}")
    target = torch.device(device) if device is not None else default_device()
    return make_bundle(model.to(target), name=str(card.get("name", NAME)), source=NAME)
