"""IG soft-masking (Apicella et al., "An XAI-based masking approach to improve classification
systems"), with the four test protocols that separate the explanation's gain from label leakage.

A frozen classifier C; an encoder E_x of the image x and an encoder E_A of a one-channel map A;
a mixer turns their concatenated features into a per-pixel mask M = sigmoid(...) in [0, 1],
(N, 1, H, W), shared by the colour channels; C classifies M * x. Only the encoders and the
mixer are trained (Adam on C's cross-entropy, early stopping on a held-out share of the
training images, the best validation epoch kept).

The encoders and the mixer are small convolutional networks (two 3x3 conv, batch norm, ReLU
layers of ``width`` channels each; the mixer one 3x3 conv block and a 1x1 conv to one channel)
rather than the paper's fully connected ones (512-256-128 and 512-H*W): on 32x32 images they
have about a hundred times fewer weights, train in seconds on a CPU, and keep the mask
spatially aligned with the image. The mixer sees, beside each pixel's features, their mean over
the image: without it a pixel sees only 7x7 pixels of A, so the one-hot label image (whose
information is in a few rows) would be out of sight of most pixels, which a fully connected
mixer never suffers from.

A is the Integrated Gradients map of C (the project's explainer, black baseline), summed over
the colour channels and scaled per image by its largest absolute value, computed once per image
in batches and kept in memory. Protocols at test time:

* ``true_ig`` (a): the IG map of the true class, as in the paper -- it leaks the label;
* ``predicted_ig`` (b): the IG map of C's predicted class, what can be deployed;
* ``zero`` (c): A = 0, the extra capacity of the mask alone;
* ``onehot`` (d): a one-hot label image (the rows of band ``y`` of ``K`` horizontal bands are 1),
  the ceiling of what the label alone can give.

(a) and (b) use one mask network trained with the true-class IG maps (as the paper trains);
(c) and (d) each train their own with their own kind of A, so that each measures what that
input can bring.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.api import attribute
from xaicore.improve.classifier import predict
from xaicore.improve.data import ImageSplit
from xaicore.models.bundle import ModelBundle

PROTOCOLS = ("true_ig", "predicted_ig", "zero", "onehot")
TRAINED_ON = {"true_ig": "true_ig", "predicted_ig": "true_ig", "zero": "zero", "onehot": "onehot"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SoftMaskParams:
    """The knobs of one soft-masking run."""

    width: int = 8
    epochs: int = 20
    patience: int = 4
    lr: float = 1e-3
    batch_size: int = 64
    validation_share: float = 0.3
    ig_steps: int = 16
    ig_batch: int = 250

    def __post_init__(self) -> None:
        if min(self.width, self.epochs, self.batch_size, self.ig_steps, self.ig_batch) < 1 or self.patience < 0:
            raise ParameterError("width, epochs, batch_size, ig_steps and ig_batch must be at least 1, patience >= 0.")
        if not 0.0 < self.validation_share < 1.0:
            raise ParameterError(f"validation_share must lie strictly between 0 and 1; got {self.validation_share}.")
        if self.lr <= 0:
            raise ParameterError(f"lr must be positive; got {self.lr}.")


def _encoder(cin: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    )


class SoftMask(nn.Module):
    """E_x, E_A and the mixer: ``(x, A) -> M`` with ``M`` (N, 1, H, W) in [0, 1]."""

    def __init__(self, *, width: int = 8) -> None:
        super().__init__()
        self.encode_x = _encoder(3, width)
        self.encode_a = _encoder(1, width)
        self.mixer = nn.Sequential(
            nn.Conv2d(4 * width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, 1, 1)
        )

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        local = torch.cat([self.encode_x(x), self.encode_a(a)], dim=1)
        # every pixel also sees the image-wide mean of the features, as a fully connected mixer would
        context = local.mean(dim=(2, 3), keepdim=True).expand_as(local)
        return torch.sigmoid(self.mixer(torch.cat([local, context], dim=1)))


def masked_logits(classifier: nn.Module, mask_net: SoftMask, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """C(M * x): the mask is broadcast over the colour channels."""
    return classifier(mask_net(x, a) * x)


# ---------------------------------------------------------------------------- the maps A


def ig_maps(
    bundle: ModelBundle, images: torch.Tensor, targets: torch.Tensor, *, steps: int, batch: int
) -> torch.Tensor:
    """C's Integrated Gradients maps (black baseline) for ``targets``, summed over the channels
    and scaled per image into [-1, 1]: (N, 1, H, W), computed in batches."""
    parts = []
    for start in range(0, len(images), batch):
        values = attribute(
            bundle,
            images[start : start + batch],
            method="integrated_gradients",
            target=targets[start : start + batch],
            params={"steps": steps},
        ).values.detach()
        parts.append(values.sum(dim=1, keepdim=True))
    maps = torch.cat(parts)
    scale = maps.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return maps / scale


def onehot_maps(labels: torch.Tensor, *, classes: int, side: int) -> torch.Tensor:
    """The one-hot label image: ``classes`` horizontal bands, band ``y`` is 1, the rest 0."""
    if side < classes:
        raise ParameterError(f"A one-hot label image of {classes} bands needs at least {classes} rows; got {side}.")
    band = torch.div(torch.arange(side) * classes, side, rounding_mode="floor")  # band of each row
    rows = (band.view(1, side) == labels.view(-1, 1)).float()  # (N, side)
    return rows.view(-1, 1, side, 1).expand(-1, 1, side, side).contiguous()


def protocol_maps(
    protocol: str, *, bundle: ModelBundle, data: ImageSplit, params: SoftMaskParams, cache: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The map A of every image of ``data`` under ``protocol``; IG maps are memoized in ``cache``."""
    if protocol not in PROTOCOLS:
        raise ParameterError(f"The protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    n, side = len(data), int(data.images.shape[-1])
    if protocol == "zero":
        return torch.zeros(n, 1, side, side)
    if protocol == "onehot":
        return onehot_maps(data.labels, classes=bundle.num_classes, side=side)
    if protocol not in cache:
        targets = data.labels if protocol == "true_ig" else predict(bundle, data.images)
        cache[protocol] = ig_maps(bundle, data.images, targets, steps=params.ig_steps, batch=params.ig_batch)
    return cache[protocol]


# ---------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Fit:
    """A trained mask network: the kept (best) epoch and the validation accuracy of every epoch."""

    mask_net: SoftMask
    best_epoch: int
    validation: tuple[float, ...]


@torch.no_grad()
def masked_accuracy(
    classifier: nn.Module, mask_net: SoftMask, x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, *, batch: int = 500
) -> float:
    """Accuracy of C(M * x) (mask network in eval mode)."""
    mask_net.eval()
    hits = sum(
        int(
            (
                masked_logits(classifier, mask_net, x[i : i + batch], a[i : i + batch]).argmax(1) == y[i : i + batch]
            ).sum()
        )
        for i in range(0, len(y), batch)
    )
    return hits / max(len(y), 1)


def best_epoch(validation: list[float] | tuple[float, ...]) -> int:
    """Index of the first epoch with the highest validation accuracy."""
    if not validation:
        raise ParameterError("No epoch was run.")
    return max(range(len(validation)), key=lambda i: (validation[i], -i))


def fit_mask(
    classifier: nn.Module,
    x: torch.Tensor,
    a: torch.Tensor,
    y: torch.Tensor,
    *,
    params: SoftMaskParams,
    seed: int,
    progress: Progress | None = None,
) -> Fit:
    """Train a :class:`SoftMask` on ``(x, a, y)`` through the frozen ``classifier``.

    ``params.validation_share`` of the images (a seeded draw) are held out; training stops after
    ``params.patience`` epochs without a better validation accuracy, and the best epoch's
    weights are returned.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=generator)
    n_val = max(1, round(params.validation_share * len(y)))
    val, train = order[:n_val], order[n_val:]
    if len(train) < 2:
        raise ParameterError("Too few images to train the mask network after holding out the validation share.")
    mask_net = SoftMask(width=params.width)
    optimizer = torch.optim.Adam(mask_net.parameters(), lr=params.lr)
    history: list[float] = []
    best_state, since_best = copy.deepcopy(mask_net.state_dict()), 0
    for epoch in range(params.epochs):
        mask_net.train()
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), params.batch_size):
            idx = shuffled[start : start + params.batch_size]
            if len(idx) < 2:  # batch norm needs two images
                continue
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(masked_logits(classifier, mask_net, x[idx], a[idx]), y[idx])
            loss.backward()
            optimizer.step()
        history.append(masked_accuracy(classifier, mask_net, x[val], a[val], y[val]))
        if progress is not None:
            progress(f"epoch {epoch + 1}: validation accuracy {history[-1]:.1%}")
        if best_epoch(history) == epoch:
            best_state, since_best = copy.deepcopy(mask_net.state_dict()), 0
        else:
            since_best += 1
            if since_best > params.patience:
                break
    mask_net.load_state_dict(best_state)
    return Fit(mask_net.eval(), best_epoch(history), tuple(history))


# ---------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class SoftMaskResult:
    """Test accuracies per protocol and of C alone, with what made them."""

    seed: int
    baseline: float
    accuracies: dict[str, float]
    best_epochs: dict[str, int]
    params: dict[str, Any]
    classifier: str
    train_images: int
    test_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.record(), sort_keys=True)


def run_softmask(
    bundle: ModelBundle,
    *,
    train: ImageSplit,
    test: ImageSplit,
    seed: int,
    params: SoftMaskParams | None = None,
    progress: Progress | None = None,
) -> SoftMaskResult:
    """Train the mask networks on ``train`` and measure the four protocols on ``test``.

    ``bundle``'s model is used frozen: its weights are never updated.
    """
    params = params or SoftMaskParams()
    say = progress or (lambda _line: None)
    classifier = bundle.model.eval()
    train_cache: dict[str, torch.Tensor] = {}
    test_cache: dict[str, torch.Tensor] = {}
    fits: dict[str, Fit] = {}
    for kind in dict.fromkeys(TRAINED_ON.values()):
        say(f"training the mask network with A = {kind}")
        a = protocol_maps(kind, bundle=bundle, data=train, params=params, cache=train_cache)
        fits[kind] = fit_mask(classifier, train.images, a, train.labels, params=params, seed=seed, progress=progress)
    accuracies = {}
    for protocol in PROTOCOLS:
        a = protocol_maps(protocol, bundle=bundle, data=test, params=params, cache=test_cache)
        accuracies[protocol] = masked_accuracy(
            classifier, fits[TRAINED_ON[protocol]].mask_net, test.images, a, test.labels
        )
    baseline = float((predict(bundle, test.images) == test.labels).float().mean())
    return SoftMaskResult(
        seed=seed,
        baseline=baseline,
        accuracies=accuracies,
        best_epochs={k: f.best_epoch for k, f in fits.items()},
        params=asdict(params),
        classifier=bundle.name,
        train_images=len(train),
        test_images=len(test),
    )
