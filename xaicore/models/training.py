"""Training and evaluating the embedded default model on freshly generated shapes.

Every image is generated on the fly from a seed derived from the run's seed, so a run is
fully described by its :class:`TrainConfig`; weights are initialized under
``torch.random.fork_rng`` and every other random draw uses a local generator, so the global
RNG is left as it was. The same config on the same machine (and thread count) gives the
same weights bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xaicore.data import shapes
from xaicore.errors import ParameterError
from xaicore.models import default as default_arch
from xaicore.models.bundle import PixelSpaceModel, fingerprint
from xaicore.models.default import INPUT_SIZE, MODEL_NAME, ShapesNet, fold_batch_norm
from xaicore.runtime.provenance import library_versions

# Domains of derived seeds: training blocks, test images, test scenes, normalization sample.
_TRAIN, _TEST, _SCENE_TEST, _NORM = 1, 2, 3, 4
_BLOCK = 2048  # training images generated at once


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for one purpose of a run: ``SeedSequence([seed, *keys])``'s first word."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run of :class:`~xaicore.models.default.ShapesNet`.

    Each epoch draws ``images_per_epoch`` fresh images, ``scene_fraction`` of them two-object
    scenes with soft targets 0.5 / 0.5. AdamW with a one-cycle learning-rate schedule peaking
    at ``lr``. ``test_images`` single-object images and ``test_scenes`` scenes (seeds distinct
    from every training seed) measure the result. The defaults are the run that made the
    committed ``assets/default_model.pt``.
    """

    seed: int = 0
    epochs: int = 6
    images_per_epoch: int = 8192
    scene_fraction: float = 0.2
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    test_images: int = 2000
    test_scenes: int = 1000

    def __post_init__(self) -> None:
        whole = {"seed": 0, "epochs": 1, "images_per_epoch": 1, "batch_size": 1, "test_images": 1, "test_scenes": 1}
        for name, minimum in whole.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParameterError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")
        if not 0.0 <= self.scene_fraction < 1.0:
            raise ParameterError(f"scene_fraction must be in [0, 1); got {self.scene_fraction!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number; got {self.lr!r}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ParameterError(f"weight_decay must be zero or positive; got {self.weight_decay!r}.")

    def command(self) -> str:
        """The ``xai train-default`` command line that reproduces this run."""
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in asdict(self).items())
        return f"xai train-default {flags}"


@dataclass(frozen=True)
class Evaluation:
    """Accuracy of a model on fresh single-object images and on two-object scenes.

    ``scene_top2_hit_rate``: fraction of scenes whose two most probable classes are exactly
    its two objects. ``scene_top1_in_scene``: fraction whose top class is one of them.
    """

    accuracy: float
    per_class_accuracy: dict[str, float]
    scene_top2_hit_rate: float
    scene_top1_in_scene: float
    test_seed: int
    scene_test_seed: int
    test_images: int
    test_scenes: int


@dataclass(frozen=True)
class TrainResult:
    """A trained network in pixel space, its evaluation and its card."""

    model: PixelSpaceModel
    evaluation: Evaluation
    card: dict[str, Any]


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Ask PyTorch for deterministic kernels inside the block; restore the setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def init_network(num_classes: int, *, seed: int, batch_norm: bool = False) -> ShapesNet:
    """A freshly initialized :class:`ShapesNet`; the global RNG is forked, so left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ShapesNet(num_classes, batch_norm=batch_norm)


def normalization(*, seed: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``n`` generated images, rounded to 4 decimals."""
    images, _ = shapes.generate(n, seed=derived_seed(seed, _NORM), size=INPUT_SIZE[0])
    mean = images.mean(axis=(0, 1, 2))
    std = images.std(axis=(0, 1, 2))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def training_block(config: TrainConfig, epoch: int, block: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` shuffled training images (N, 3, H, W) and soft targets (N, C) of one block."""
    size, classes = INPUT_SIZE[0], len(shapes.CLASSES)
    n_scenes = int(round(n * config.scene_fraction))
    singles, labels = shapes.generate(n - n_scenes, seed=derived_seed(config.seed, _TRAIN, epoch, block, 0), size=size)
    scenes, pairs, _ = shapes.generate_scene_arrays(
        n_scenes, seed=derived_seed(config.seed, _TRAIN, epoch, block, 1), size=size
    )
    targets = np.zeros((n, classes), dtype=np.float32)
    targets[np.arange(n - n_scenes), labels] = 1.0
    rows = np.arange(n - n_scenes, n)
    targets[rows, pairs[:, 0]] = 0.5
    targets[rows, pairs[:, 1]] = 0.5
    order = np.random.default_rng(derived_seed(config.seed, _TRAIN, epoch, block, 2)).permutation(n)
    images = np.concatenate([singles, scenes])[order]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(targets[order])


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, *, batch: int = 500) -> torch.Tensor:
    """Logits (N, C) on the CPU of (N, H, W, 3) images in [0, 1], batched, in eval mode."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).to(device)
        parts.append(model(x).cpu())
    return torch.cat(parts)


def evaluate(
    model: nn.Module, *, test_seed: int, scene_test_seed: int, test_images: int = 2000, test_scenes: int = 1000
) -> Evaluation:
    """Accuracy on fresh single-object images and the top-2 hit rate on fresh scenes."""
    was_training = model.training
    model.eval()
    try:
        images, labels = shapes.generate(test_images, seed=test_seed, size=INPUT_SIZE[0])
        predicted = predict_logits(model, images).argmax(dim=1).numpy()
        correct = predicted == labels
        per_class = {
            name: float(correct[labels == index].mean())
            for index, name in enumerate(shapes.CLASSES)
            if np.any(labels == index)
        }
        scenes, pairs, _ = shapes.generate_scene_arrays(test_scenes, seed=scene_test_seed, size=INPUT_SIZE[0])
        top2 = predict_logits(model, scenes).topk(2, dim=1).indices.numpy()
        hit = np.sort(top2, axis=1) == np.sort(pairs, axis=1)
        top1_in = (top2[:, :1] == pairs).any(axis=1)
    finally:
        model.train(was_training)
    return Evaluation(
        accuracy=float(correct.mean()),
        per_class_accuracy=per_class,
        scene_top2_hit_rate=float(hit.all(axis=1).mean()),
        scene_top1_in_scene=float(top1_in.mean()),
        test_seed=test_seed,
        scene_test_seed=scene_test_seed,
        test_images=test_images,
        test_scenes=test_scenes,
    )


def train_default_model(
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train :class:`ShapesNet` as ``config`` says and evaluate it; nothing is written.

    ``progress`` receives one line per epoch (loss, accuracy on the epoch's training images,
    elapsed time).
    """
    device = torch.device(device)
    started = time.perf_counter()
    mean, std = normalization(seed=config.seed, n=min(_BLOCK, config.images_per_epoch))
    net = init_network(len(shapes.CLASSES), seed=derived_seed(config.seed, 0), batch_norm=True)
    model = PixelSpaceModel(net, mean=mean, std=std)
    # Module.to takes memory_format (documented); torch's overloads leave it out
    model = model.to(device, memory_format=torch.channels_last).train()  # type: ignore[call-overload]  # faster convolutions
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = sum(math.ceil(n / config.batch_size) for n in _block_sizes(config.images_per_epoch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.2
    )
    with deterministic_algorithms():
        for epoch in range(config.epochs):
            total_loss, total_hits, seen = 0.0, 0.0, 0
            for block, n in enumerate(_block_sizes(config.images_per_epoch)):
                images, targets = training_block(config, epoch, block, n)
                for start in range(0, n, config.batch_size):
                    x = images[start : start + config.batch_size].to(device, memory_format=torch.channels_last)
                    y = targets[start : start + config.batch_size].to(device)
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    total_loss += float(loss.detach()) * len(x)
                    total_hits += float((y.gather(1, logits.detach().argmax(1, keepdim=True)) > 0).sum())
                    seen += len(x)
            if progress is not None:
                progress(
                    f"epoch {epoch + 1}/{config.epochs}: loss {total_loss / seen:.4f}, "
                    f"train hit rate {total_hits / seen:.4f}, {time.perf_counter() - started:.0f} s"
                )
    net = fold_batch_norm(model.net.to(memory_format=torch.contiguous_format).eval())
    model = PixelSpaceModel(net, mean=mean, std=std).to(device).eval()
    train_seconds = time.perf_counter() - started
    evaluation = evaluate(
        model,
        test_seed=derived_seed(config.seed, _TEST),
        scene_test_seed=derived_seed(config.seed, _SCENE_TEST),
        test_images=config.test_images,
        test_scenes=config.test_scenes,
    )
    model = model.cpu()
    card = make_card(model, config, evaluation, train_seconds=train_seconds, device=device)
    return TrainResult(model=model, evaluation=evaluation, card=card)


def _block_sizes(total: int) -> list[int]:
    return [min(_BLOCK, total - start) for start in range(0, total, _BLOCK)]


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU: {cpu}, {torch.get_num_threads()} torch threads, {platform.system()}"


def make_card(
    model: PixelSpaceModel,
    config: TrainConfig,
    evaluation: Evaluation,
    *,
    train_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """The machine-readable model card of a trained default model."""
    mean = [float(v) for v in model.mean.flatten()]
    std = [float(v) for v in model.std.flatten()]
    return {
        "name": MODEL_NAME,
        "architecture": "xaicore.models.default.ShapesNet",
        "classes": list(shapes.CLASSES),
        "input_size": list(INPUT_SIZE),
        "mean": [round(v, 4) for v in mean],
        "std": [round(v, 4) for v in std],
        "weights_file": "default_model.pt",
        "fingerprint": fingerprint(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {
            "generator": "xaicore.data.shapes",
            "description": (
                f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]} RGB images of one shape ({', '.join(shapes.CLASSES)}) with random "
                "colour, size, position, rotation and texture (flat, stripes, checker, noise) on a flat, gradient "
                "or noisy background; plus two-object scenes of two different classes."
            ),
            "images_per_epoch": config.images_per_epoch,
            "scene_fraction": config.scene_fraction,
            "scene_targets": "0.5 / 0.5 on the two classes of the scene",
            "train_seeds": (
                "block b of epoch e: single images seed derived_seed(seed, 1, e, b, 0), scenes "
                "derived_seed(seed, 1, e, b, 1), shuffle derived_seed(seed, 1, e, b, 2); "
                "derived_seed = first word of numpy SeedSequence([seed, *keys])"
            ),
            "normalization": (
                "per-channel mean and std of min(2048, images_per_epoch) single images of seed derived_seed(seed, 4)"
            ),
            "test_seed": evaluation.test_seed,
            "scene_test_seed": evaluation.scene_test_seed,
        },
        "training": {
            "command": config.command(),
            "config": asdict(config),
            "optimizer": (
                "AdamW, one-cycle learning rate (20% warm-up), soft-target cross-entropy; batch norm after "
                "each convolution while training, folded into the convolutions afterwards"
            ),
            "init_seed": derived_seed(config.seed, 0),
            "time_s": round(train_seconds, 1),
            "machine": machine_description(device),
            "versions": library_versions(),
        },
        "evaluation": {
            "test_accuracy": evaluation.accuracy,
            "test_images": evaluation.test_images,
            "per_class_accuracy": evaluation.per_class_accuracy,
            "scene_top2_hit_rate": evaluation.scene_top2_hit_rate,
            "scene_top1_in_scene": evaluation.scene_top1_in_scene,
            "test_scenes": evaluation.test_scenes,
        },
    }


def card_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card (``MODEL_CARD.md``) from the machine-readable one."""
    ev, tr, data = card["evaluation"], card["training"], card["data"]
    per_class = "\n".join(f"| {name} | {acc:.1%} |" for name, acc in ev["per_class_accuracy"].items())
    blocks = default_arch.BLOCKS
    channels = "; ".join(", ".join(str(c) for c in block) for block in blocks)
    widths = " -> ".join(str(w) for w in default_arch.head_widths(len(card["classes"])))
    return f"""# Model card: {card["name"]}

Generated by `xai train-default` from `default_model.json` (the machine-readable card).

## Model
- Architecture: `{card["architecture"]}`, a small VGG-style CNN: {default_arch.conv_count()} 3x3
  convolutions in {len(blocks)} blocks (channels {channels}), each convolution with its own
  non-in-place ReLU and each block ending in 2x2 max-pooling, then fully connected layers
  {widths}; {card["parameters"]:,} parameters.
- Input: RGB in [0, 1], {card["input_size"][0]}x{card["input_size"][1]}; normalization inside the
  model with mean {card["mean"]} and std {card["std"]}. Output: raw logits.
- Classes: {", ".join(card["classes"])}.
- Weights: `{card["weights_file"]}` (state dict, loads with `torch.load(..., weights_only=True)`),
  fingerprint `{card["fingerprint"]}`.

## Data
{data["description"]} Generated on the fly by `{data["generator"]}`, {data["images_per_epoch"]:,}
fresh images per epoch, {data["scene_fraction"]:.0%} of them scenes with targets
{data["scene_targets"]}. Seeds: {data["train_seeds"]}.

## Training
- Command: `{tr["command"]}`
- {tr["optimizer"]}; initialization seed {tr["init_seed"]}.
- Time: {tr["time_s"]:.0f} s on {tr["machine"]}.

## Evaluation
- Test accuracy: **{ev["test_accuracy"]:.2%}** on {ev["test_images"]:,} freshly generated images
  (seed {data["test_seed"]}, never used in training).
- Two-object scenes ({ev["test_scenes"]:,}, seed {data["scene_test_seed"]}): the two most probable
  classes are exactly the scene's two objects in **{ev["scene_top2_hit_rate"]:.1%}** of scenes; the top
  class is one of them in {ev["scene_top1_in_scene"]:.1%}.

| class | accuracy |
|---|---|
{per_class}

## Intended use and limits
A teaching and testing model for explanation methods: it runs in milliseconds on a CPU and its
objects have known masks. It knows nothing but these {len(card["classes"])} synthetic shapes: on
photographs its predictions are meaningless. In two-object scenes the top class is usually one of
the objects, but the other object ranks second only in the share of scenes given above: to
explain both objects of a scene, ask for their classes explicitly rather than for the top two.
"""


def save_trained(result: TrainResult, out_dir: str | Path) -> tuple[Path, Path, Path]:
    """Write ``default_model.pt``, ``default_model.json`` and ``MODEL_CARD.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "default_model.pt"
    card = out / "default_model.json"
    markdown = out / "MODEL_CARD.md"
    state = {k: v.detach().cpu().clone() for k, v in result.model.net.state_dict().items()}
    torch.save(state, weights)
    card.write_text(json.dumps(result.card, indent=2) + "\n", encoding="utf-8")
    markdown.write_text(card_markdown(result.card), encoding="utf-8")
    return weights, card, markdown
