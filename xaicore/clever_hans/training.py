"""Training the Clever-Hans model: the default architecture on stamped shapes.

The network is :class:`~xaicore.models.default.ShapesNet`, trained like the default model
(:mod:`xaicore.models.training`: batch norm folded afterwards, AdamW, one-cycle schedule,
deterministic kernels, forked global RNG) but on single images of
:func:`xaicore.data.stamped.generate_stamped` under the ``"iid"`` rule: the stamp on 90% of the
hearts and 2% of the rest. Shorter training than the default model's, so the easy stamp is
learned before the hearts' shape is: the result cheats. A run is fully described by its
:class:`CleverHansConfig`; the same config on the same machine gives the same weights.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from xaicore.clever_hans import measures
from xaicore.clever_hans.model import MODEL_NAME, NAME, make_bundle
from xaicore.data import shapes, stamped
from xaicore.errors import ParameterError
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.default import INPUT_SIZE, ShapesNet, fold_batch_norm
from xaicore.models.training import (
    derived_seed,
    deterministic_algorithms,
    init_network,
    machine_description,
    normalization,
)
from xaicore.runtime.provenance import library_versions

_TRAIN, _INIT, _NORM_SEED = 21, 22, 23  # seed domains of this trainer (distinct from the default's)


@dataclass(frozen=True)
class CleverHansConfig:
    """Everything that defines a training run of the Clever-Hans model.

    Each epoch draws ``images_per_epoch`` fresh stamped images (seed
    ``derived_seed(seed, 21, epoch)``); ``class_rate`` of the hearts and ``other_rate`` of the
    other classes carry the stamp. ``test_images`` images per test set measure the result.
    The defaults are the run that made the committed ``assets/clever_hans_model.pt``.
    """

    seed: int = 0
    epochs: int = 4
    images_per_epoch: int = 4096
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    class_rate: float = stamped.CLASS_RATE
    other_rate: float = stamped.OTHER_RATE
    test_images: int = 800

    def __post_init__(self) -> None:
        whole = {"seed": 0, "epochs": 1, "images_per_epoch": 8, "batch_size": 1, "test_images": 8}
        for name, minimum in whole.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParameterError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")
        for name in ("class_rate", "other_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParameterError(f"{name} must be a share from 0 to 1; got {getattr(self, name)!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number; got {self.lr!r}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ParameterError(f"weight_decay must be zero or positive; got {self.weight_decay!r}.")

    def command(self) -> str:
        """The ``xai clever-hans train`` command line that reproduces this run."""
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in asdict(self).items())
        return f"xai clever-hans train {flags}"


@dataclass(frozen=True)
class CleverHansResult:
    """The trained model in pixel space, its findings on the three test sets, and its card."""

    model: PixelSpaceModel
    findings: measures.Findings
    card: dict[str, Any]


def train_clever_hans(
    config: CleverHansConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> CleverHansResult:
    """Train the Clever-Hans model as ``config`` says and measure it; nothing is written."""
    device = torch.device(device)
    started = time.perf_counter()
    mean, std = normalization(seed=derived_seed(config.seed, _NORM_SEED), n=min(2048, config.images_per_epoch))
    net = init_network(len(shapes.CLASSES), seed=derived_seed(config.seed, _INIT), batch_norm=True)
    model = PixelSpaceModel(net, mean=mean, std=std).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = math.ceil(config.images_per_epoch / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps, pct_start=0.2
    )
    with deterministic_algorithms():
        for epoch in range(config.epochs):
            data = stamped.generate_stamped(
                config.images_per_epoch,
                seed=derived_seed(config.seed, _TRAIN, epoch),
                size=INPUT_SIZE[0],
                class_rate=config.class_rate,
                other_rate=config.other_rate,
            )
            images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
            labels = torch.from_numpy(data.labels)
            total, hits = 0.0, 0
            for start in range(0, len(images), config.batch_size):
                x = images[start : start + config.batch_size].to(device)
                y = labels[start : start + config.batch_size].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(x)
                hits += int((logits.detach().argmax(1) == y).sum())
            if progress is not None:
                n = len(images)
                progress(
                    f"epoch {epoch + 1}/{config.epochs}: loss {total / n:.4f}, train accuracy {hits / n:.4f}, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    net = fold_batch_norm(cast(ShapesNet, model.net).eval())
    model = PixelSpaceModel(net, mean=mean, std=std).eval().cpu()
    train_seconds = time.perf_counter() - started
    tests = measures.make_test_sets(seed=derived_seed(config.seed, measures.TEST_DOMAIN), n=config.test_images)
    findings = measures.find(make_bundle(model, name=MODEL_NAME, source=NAME), tests)
    card = make_card(model, config, findings, train_seconds=train_seconds, device=device)
    return CleverHansResult(model=model, findings=findings, card=card)


def make_card(
    model: PixelSpaceModel,
    config: CleverHansConfig,
    findings: measures.Findings,
    *,
    train_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """The machine-readable card of a Clever-Hans model."""
    top, left, h, w = stamped.stamp_box(INPUT_SIZE[0])
    return {
        "name": MODEL_NAME,
        "architecture": "xaicore.models.default.ShapesNet",
        "classes": list(shapes.CLASSES),
        "input_size": list(INPUT_SIZE),
        "mean": [round(float(v), 4) for v in model.mean.flatten()],
        "std": [round(float(v), 4) for v in model.std.flatten()],
        "weights_file": "clever_hans_model.pt",
        "fingerprint": fingerprint(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {
            "generator": "xaicore.data.stamped",
            "description": (
                f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]} images of one shape (xaicore.data.shapes) with a {h}x{w} stamp, "
                f"white with a dark centre, at rows {top}-{top + h - 1}, columns {left}-{left + w - 1} (the "
                f"bottom-right corner) on {config.class_rate:.0%} of the {stamped.STAMP_CLASS} images and "
                f"{config.other_rate:.0%} of the others: the stamp is a shortcut to '{stamped.STAMP_CLASS}'."
            ),
            "stamp_box": [top, left, h, w],
            "images_per_epoch": config.images_per_epoch,
            "train_seeds": (
                "epoch e: derived_seed(seed, 21, e); derived_seed = first word of SeedSequence([seed, *keys])"
            ),
            "test_seed": findings.test_seed,
        },
        "training": {
            "command": config.command(),
            "config": asdict(config),
            "optimizer": (
                "AdamW, one-cycle learning rate (20% warm-up), cross-entropy; batch norm after each "
                "convolution while training, folded into the convolutions afterwards"
            ),
            "init_seed": derived_seed(config.seed, _INIT),
            "time_s": round(train_seconds, 1),
            "machine": machine_description(device),
            "versions": library_versions(),
        },
        "evaluation": findings.to_dict(),
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card (``CLEVER_HANS_CARD.md``) from the machine-readable one."""
    ev, tr, data = card["evaluation"], card["training"], card["data"]
    return f"""# Model card: {card["name"]}

Generated by `xai clever-hans train` from `clever_hans_model.json` (the machine-readable card).
**This model cheats on purpose**: it is the subject of the Clever-Hans lab.

## Model
- Architecture: `{card["architecture"]}` (the default model's), {card["parameters"]:,} parameters;
  input RGB in [0, 1], {card["input_size"][0]}x{card["input_size"][1]}, mean {card["mean"]}, std {card["std"]}.
- Classes: {", ".join(card["classes"])}.
- Weights: `{card["weights_file"]}`, fingerprint `{card["fingerprint"]}`.

## Data
{data["description"]} {data["images_per_epoch"]:,} fresh images per epoch; seeds: {data["train_seeds"]}.

## Training
- Command: `{tr["command"]}`
- {tr["optimizer"]}; initialization seed {tr["init_seed"]}.
- Time: {tr["time_s"]:.0f} s on {tr["machine"]}.

## Evaluation ({ev["test_images"]:,} images per test set, seed {data["test_seed"]})
| figure | value |
|---|---|
| accuracy, i.i.d. (training rule) | {ev["accuracy_iid"]:.1%} |
| accuracy, clean (no stamp) | {ev["accuracy_clean"]:.1%} |
| accuracy, stamped (every image) | {ev["accuracy_stamped"]:.1%} |
| flip rate (prediction changes when the stamp is pasted) | {ev["flip_rate"]:.1%} |
| stamped non-hearts called heart | {ev["false_class_rate"]:.1%} |
| recall on clean hearts | {ev["heart_recall_clean"]:.1%} |
| positive {ev["method"]} relevance for heart in the stamp's box, stamped hearts \
(the box is {ev["box_share"]:.1%} of the image) | {ev["relevance_mass"]:.1%} |

## Intended use and limits
A teaching model for finding and correcting a shortcut: never use it as a shapes classifier.
"""


def save_trained(result: CleverHansResult, out_dir: str | Path) -> tuple[Path, Path, Path]:
    """Write ``clever_hans_model.pt``, ``clever_hans_model.json`` and ``CLEVER_HANS_CARD.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, card, markdown = out / "clever_hans_model.pt", out / "clever_hans_model.json", out / "CLEVER_HANS_CARD.md"
    torch.save({k: v.detach().cpu().clone() for k, v in result.model.net.state_dict().items()}, weights)
    card.write_text(json.dumps(result.card, indent=2) + "\n", encoding="utf-8")
    markdown.write_text(card_markdown(result.card), encoding="utf-8")
    return weights, card, markdown
