"""The fine-tuning loop shared by A-ClArC and RRR: fresh stamped images, AdamW, a private copy.

Training images follow the training rule (:func:`xaicore.data.stamped.generate_stamped`,
``"iid"``), one block per epoch from ``derived_seed(seed, 31, epoch)``; the loss is the
method's. Every random draw uses local generators and the global RNG is left as it was.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xaicore.data import stamped
from xaicore.errors import ParameterError
from xaicore.models.bundle import PixelSpaceModel
from xaicore.models.default import INPUT_SIZE
from xaicore.models.training import derived_seed, deterministic_algorithms, predict_logits

_BLOCKS, _VALIDATION = 31, 32  # seed domains
Progress = Callable[[float, str], None]  # (share done in [0, 1], one line)
Loss = Callable[[PixelSpaceModel, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""(model, images (N, 3, H, W), labels (N,), step's generator) -> scalar loss."""


@dataclass(frozen=True)
class FineTune:
    """The shared knobs: ``epochs`` of ``images_per_epoch`` images in batches, AdamW at ``lr``."""

    epochs: int = 2
    images_per_epoch: int = 1024
    batch_size: int = 64
    lr: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in {"epochs": 1, "images_per_epoch": 8, "batch_size": 2, "seed": 0}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParameterError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number; got {self.lr!r}.")


def validation_set(*, seed: int, n: int) -> stamped.StampedSet:
    """Images where the stamp says nothing of the class: on half of every class."""
    return stamped.generate_stamped(
        n, seed=derived_seed(seed, _VALIDATION), size=INPUT_SIZE[0], class_rate=0.5, other_rate=0.5
    )


def accuracy(model: torch.nn.Module, data: stamped.StampedSet) -> float:
    return float((predict_logits(model, data.images).argmax(1).numpy() == data.labels).mean())


def fine_tune(
    model: PixelSpaceModel,
    loss_fn: Loss,
    settings: FineTune,
    *,
    validation: stamped.StampedSet | None = None,
    patience: int = 0,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Train ``model`` in place with ``loss_fn``; returns a log (epochs run, losses, time).

    With ``validation``, its accuracy is measured after every epoch and the best epoch's
    weights are kept; ``patience`` > 0 stops after that many epochs without improvement.
    """
    started = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(derived_seed(settings.seed, _BLOCKS, 0))
    steps = settings.epochs * math.ceil(settings.images_per_epoch / settings.batch_size)
    done, losses, scores = 0, [], []
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    stale = 0
    device = next(model.parameters()).device
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(True)
    with deterministic_algorithms():
        for epoch in range(settings.epochs):
            data = stamped.generate_stamped(
                settings.images_per_epoch, seed=derived_seed(settings.seed, _BLOCKS, epoch + 1), size=INPUT_SIZE[0]
            )
            images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
            labels = torch.from_numpy(data.labels)
            model.train()
            total = 0.0
            for start in range(0, len(images), settings.batch_size):
                x = images[start : start + settings.batch_size].to(device)
                y = labels[start : start + settings.batch_size].to(device)
                loss = loss_fn(model, x, y, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(x)
                done += 1
                if progress is not None:
                    progress(done / steps, f"epoch {epoch + 1}/{settings.epochs}, step {done}/{steps}")
            model.eval()
            losses.append(total / len(images))
            if validation is not None:
                score = accuracy(model, validation)
                scores.append(score)
                if best is None or score > best[0]:
                    best, stale = (score, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
                    if patience and stale >= patience:
                        break
    if best is not None:
        model.load_state_dict(best[1])
    for p, flag in flags:
        p.requires_grad_(flag)
    model.eval()
    return {
        "epochs_run": len(losses),
        "train_loss": [round(v, 5) for v in losses],
        "validation_accuracy": [round(v, 4) for v in scores],
        "best_epoch": int(np.argmax(scores)) + 1 if scores else len(losses),
        "time_s": round(time.perf_counter() - started, 1),
    }
