"""Training the grayscale X-ray teaching model on freshly generated images, and its card.

Like :mod:`xaicore.models.training`: every image is generated from a seed derived from the run's
seed, weights are initialized under ``torch.random.fork_rng`` and every other draw uses a local
generator, so a run is fully described by its :class:`XrayTrainConfig` and the global RNG is
left as it was.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from xaicore.data import xray as data
from xaicore.errors import ParameterError
from xaicore.models import xray
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.training import derived_seed, deterministic_algorithms
from xaicore.runtime.provenance import library_versions

_TRAIN, _TEST, _NORM = 1, 2, 4


@dataclass(frozen=True)
class XrayTrainConfig:
    """Everything that defines a training run of :class:`~xaicore.models.xray.XrayNet`.

    ``train_images`` images (half with a finding) are generated once and seen ``epochs`` times
    in a fresh order each time; AdamW with a one-cycle schedule peaking at ``lr``;
    ``test_images`` images of a seed no training image uses measure the result. The defaults
    made the committed ``assets/xray_model.pt``.
    """

    seed: int = 0
    epochs: int = 8
    train_images: int = 4000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    test_images: int = 1000

    def __post_init__(self) -> None:
        for name, minimum in {"seed": 0, "epochs": 1, "train_images": 2, "batch_size": 1, "test_images": 2}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParameterError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number; got {self.lr!r}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ParameterError(f"weight_decay must be zero or positive; got {self.weight_decay!r}.")

    def command(self) -> str:
        """The ``xai train-xray`` command line that reproduces this run."""
        return "xai train-xray " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class XrayEvaluation:
    """Accuracy on fresh images, overall, per class and per kind of finding."""

    accuracy: float
    per_class_accuracy: dict[str, float]
    per_kind_accuracy: dict[str, float]
    test_seed: int
    test_images: int


@dataclass(frozen=True)
class XrayTrainResult:
    model: PixelSpaceModel
    evaluation: XrayEvaluation
    card: dict[str, Any]


def held_out_seed(seed: int) -> int:
    """The seed of the test set of a run with ``seed`` (never used for training)."""
    return derived_seed(seed, _TEST)


def normalization(*, seed: int, n: int = 1024) -> tuple[float, float]:
    """Mean and std of ``n`` generated images, rounded to 4 decimals."""
    images, _, _ = data.generate(n, seed=derived_seed(seed, _NORM))
    return round(float(images.mean()), 4), round(float(images.std()), 4)


def as_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) gray images as pixel-space input (N, 3, H, W)."""
    return torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, *, batch: int = 500) -> np.ndarray:
    """Predicted class per image of (N, H, W) gray images."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(as_input(images[i : i + batch]).to(device)).argmax(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()


def evaluate(model: torch.nn.Module, *, seed: int, n: int) -> XrayEvaluation:
    """Accuracy of ``model`` on ``n`` fresh images of the set ``seed``."""
    cases = data.generate_cases(n, seed=seed)
    images = np.stack([c.image for c in cases])
    labels = np.array([c.label for c in cases])
    kinds = [c.finding.get("kind", "") for c in cases]
    correct = predict(model, images) == labels
    per_kind = {kind: float(correct[[k == kind for k in kinds]].mean()) for kind in data.FINDING_KINDS if kind in kinds}
    return XrayEvaluation(
        accuracy=float(correct.mean()),
        per_class_accuracy={name: float(correct[labels == i].mean()) for i, name in enumerate(data.CLASSES)},
        per_kind_accuracy=per_kind,
        test_seed=seed,
        test_images=n,
    )


def train_xray_model(
    config: XrayTrainConfig, *, device: torch.device | str = "cpu", progress: Callable[[str], None] | None = None
) -> XrayTrainResult:
    """Train :class:`~xaicore.models.xray.XrayNet` as ``config`` says and evaluate it; nothing is written."""
    device = torch.device(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    mean, std = normalization(seed=config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(config.seed, 0))
        net = xray.XrayNet(len(data.CLASSES), batch_norm=True)
    model = xray.wrap(net, mean, std).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(config.train_images / config.batch_size)
    images, labels, _ = data.generate(config.train_images, seed=derived_seed(config.seed, _TRAIN))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.2)
    with deterministic_algorithms():
        for epoch in range(config.epochs):
            order = np.random.default_rng(derived_seed(config.seed, _TRAIN, epoch, 1)).permutation(len(labels))
            x_all, y_all = as_input(images[order]), torch.from_numpy(labels[order])
            total_loss, hits = 0.0, 0
            model.train()
            for start in range(0, len(y_all), config.batch_size):
                x = x_all[start : start + config.batch_size].to(device)
                y = y_all[start : start + config.batch_size].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += float(loss.detach()) * len(y)
                hits += int((logits.detach().argmax(1) == y).sum())
            if progress is not None:
                progress(
                    f"epoch {epoch + 1}/{config.epochs}: loss {total_loss / len(y_all):.4f}, "
                    f"train accuracy {hits / len(y_all):.4f}, {time.perf_counter() - started:.0f} s"
                )
    model = xray.wrap(xray.fold_batch_norm(cast(xray.XrayNet, model.net).cpu().eval()), mean, std)
    train_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    evaluation = evaluate(model, seed=held_out_seed(config.seed), n=config.test_images)
    card = make_card(model, config, evaluation, train_seconds=train_seconds, device=device)
    card["training"]["cpu_seconds"] = round(cpu_seconds, 1)
    return XrayTrainResult(model=model, evaluation=evaluation, card=card)


def make_card(
    model: PixelSpaceModel,
    config: XrayTrainConfig,
    evaluation: XrayEvaluation,
    *,
    train_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """The machine-readable card of a trained model."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    return {
        "name": xray.MODEL_NAME,
        "architecture": "xaicore.models.xray.XrayNet",
        "classes": list(data.CLASSES),
        "input_size": list(xray.INPUT_SIZE),
        "input_channels": 1,
        "mean": [round(float(v), 4) for v in model.mean.flatten()],  # the same float32 as the model's
        "std": [round(float(v), 4) for v in model.std.flatten()],
        "weights_file": xray.WEIGHTS_PATH.name,
        "fingerprint": fingerprint(model),
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "data": {
            "generator": "xaicore.data.xray",
            "description": (
                "64x64 procedural chest-X-ray-like images (thorax, lungs, heart and mediastinum, spine, ribs, "
                "clavicles; random pose, exposure, blur and noise); half of them with a finding inside a lung: "
                "a nodule (radius 2-6 px, contrast 0.12-0.35) or an opacity (overlapping blobs, radius 5-9 px, "
                "contrast 0.10-0.22), with its ground-truth mask."
            ),
            "train_images": config.train_images,
            "train_seeds": "the set derived_seed(seed, 1), shuffled in epoch e by derived_seed(seed, 1, e, 1)",
            "test_seed": evaluation.test_seed,
        },
        "training": {
            "command": config.command(),
            "config": asdict(config),
            "optimizer": (
                "AdamW, one-cycle learning rate (20% warm-up), cross-entropy; batch norm after each convolution "
                "while training, folded into the convolutions afterwards"
            ),
            "seconds": round(train_seconds, 1),
            "device": f"{device.type}: {where}",
            "versions": library_versions(),
        },
        "evaluation": {
            "accuracy": evaluation.accuracy,
            "per_class_accuracy": evaluation.per_class_accuracy,
            "per_kind_accuracy": evaluation.per_kind_accuracy,
            "test_images": evaluation.test_images,
        },
    }


def markdown_card(card: dict[str, Any]) -> str:
    """The card for people, from the machine-readable one."""
    ev, tr = card["evaluation"], card["training"]
    rows = "\n".join(f"| {k} | {v:.1%} |" for k, v in {**ev["per_class_accuracy"], **ev["per_kind_accuracy"]}.items())
    return f"""# Model card: {card["name"]}

Generated by `xai train-xray` from `{Path(card["weights_file"]).with_suffix(".json").name}` (the machine-readable card).

## Model
- Architecture: `{card["architecture"]}`: four 3x3 convolutions, each with its own ReLU
  (channels {", ".join(str(c) for c in xray.CHANNELS)}), 2x2 max-pooling between them, the maximum of
  each feature map over the whole image (a finding may be anywhere), then {xray.HIDDEN} hidden units and
  {len(card["classes"])} outputs; {card["parameters"]:,} parameters.
- Input: **one channel** (grayscale), {card["input_size"][0]}x{card["input_size"][1]}. The bundle takes RGB in
  [0, 1] like every model here, turns it into luminance and normalizes it with mean {card["mean"][0]} and std
  {card["std"][0]} inside the model. Output: raw logits.
- Classes: {", ".join(card["classes"])}.
- Weights: `{card["weights_file"]}` (state dict, loads with `torch.load(..., weights_only=True)`),
  fingerprint `{card["fingerprint"]}`.

## Data
{card["data"]["description"]} Generated on the fly by `{card["data"]["generator"]}`,
{card["data"]["train_images"]:,} training images: {card["data"]["train_seeds"]}.

## Training
- Command: `{tr["command"]}`
- {tr["optimizer"]}.
- Time: {tr["seconds"]:.0f} s of wall time ({tr.get("cpu_seconds", float("nan")):.0f} s of CPU time) on {tr["device"]}.

## Evaluation
- Test accuracy: **{ev["accuracy"]:.2%}** on {ev["test_images"]:,} freshly generated images
  (seed {card["data"]["test_seed"]}, never used in training).

| class or kind of finding | accuracy |
|---|---|
{rows}

## Intended use and limits
A teaching model for explanation methods on grayscale images: every finding has a known mask,
so localization metrics (relevance mass on the finding, pointing game) can be computed. The
images are drawn by rules, not taken from patients: the model knows nothing about real
radiographs and must never be used on them for any decision.
"""


def save_trained(result: XrayTrainResult, folder: Path) -> list[Path]:
    """Write the weights, the JSON card and the Markdown card into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / xray.WEIGHTS_PATH.name
    card = folder / xray.CARD_PATH.name
    markdown = folder / xray.MARKDOWN_CARD_PATH.name
    torch.save({k: v.contiguous() for k, v in result.model.net.state_dict().items()}, weights)
    card.write_text(json.dumps(result.card, indent=2) + "\n", encoding="utf-8")
    markdown.write_text(markdown_card(result.card), encoding="utf-8")
    return [weights, card, markdown]
