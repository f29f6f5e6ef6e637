"""Confidence scores of heatmaps: the CO score and the AX process (Tjoa et al., docs/DESIGN.md idea 4).

The CO score of a heatmap ``h`` for image ``x`` and class ``c`` is ``kappa . (f(x + h) - f(x))`` on
raw logits, where ``kappa_c = 1`` and ``kappa_k = -1 / (C - 1)`` for every other class: how much
adding the heatmap raises the logit of ``c`` above the mean of the others. AX ("augmentative
explanation") turns an explainer's attribution into such a heatmap by dividing it by its absolute
maximum and adding it to the image (``x + h``), or multiplying (``x * h``).

Over an image set, :func:`co_scores` computes one :class:`CoRow` per image, method and variant, and
:class:`CoGap` figures say whether the CO scores of correctly predicted images differ from those of
wrongly predicted ones. :func:`iter_co_rows` yields the rows batch by batch, so a caller (the
dashboard) keeps every finished row when the run is interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.results import attribution_status
from xaicore.models.bundle import ModelBundle
from xaicore.models.inference import forward_logits

VARIANTS = ("x+h", "x*h")
"""AX variants: the normalized heatmap added to the image, or multiplied with it."""


def kappa(
    target: int | Sequence[int] | torch.Tensor,
    *,
    num_classes: int,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The CO weights: ``(N, C)`` with 1 at each row's target and ``-1 / (C - 1)`` elsewhere.

    ``target`` is one class index for every row (then ``batch`` gives the row count) or one index
    per row.
    """
    if num_classes < 2:
        raise ParameterError("The CO score needs a model with at least two classes.")
    t = torch.as_tensor(target, device=device).long().reshape(-1)
    if t.numel() == 1 and batch is not None:
        t = t.expand(batch)
    if bool(((t < 0) | (t >= num_classes)).any()):
        raise ParameterError(f"Target classes must lie between 0 and {num_classes - 1}.")
    weights = torch.full((t.numel(), num_classes), -1.0 / (num_classes - 1), dtype=dtype, device=t.device)
    weights.scatter_(1, t.view(-1, 1), 1.0)
    return weights


def co_score(
    logits_perturbed: torch.Tensor,
    logits_clean: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor,
    *,
    num_classes: int,
) -> torch.Tensor:
    """CO scores ``kappa . (f(x + h) - f(x))`` of a batch, shape ``(N,)``.

    Parameters
    ----------
    logits_perturbed, logits_clean:
        Raw logits ``(N, C)`` of the perturbed and of the clean images.
    target:
        The class of interest: one index for all rows, or one per row.
    num_classes:
        ``C``; must match the logits' last dimension.
    """
    if logits_perturbed.shape != logits_clean.shape or logits_perturbed.ndim != 2:
        raise ParameterError("Perturbed and clean logits must both have shape (N, C).")
    if logits_perturbed.shape[1] != num_classes:
        raise ParameterError(f"The logits have {logits_perturbed.shape[1]} classes, not {num_classes}.")
    weights = kappa(
        target,
        num_classes=num_classes,
        batch=logits_perturbed.shape[0],
        dtype=logits_perturbed.dtype,
        device=logits_perturbed.device,
    )
    if weights.shape[0] != logits_perturbed.shape[0]:
        raise ParameterError("Give one target class, or one per image.")
    return ((logits_perturbed - logits_clean) * weights).sum(dim=1)


def similarity_term(heatmap: torch.Tensor, image: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """GAX's distance of a heatmap to its image, ``mean((h - x + eps)^2 / (x + eps))`` per image.

    ``heatmap`` and ``image`` are ``(N, 3, H, W)`` with the image in [0, 1]; the mean runs over
    channels and pixels, giving shape ``(N,)``. GAX adds ``l_s`` divided by this term to its loss.
    """
    if heatmap.shape != image.shape:
        raise ParameterError("The heatmap and the image must have the same shape.")
    if eps <= 0:
        raise ParameterError("eps must be positive (it keeps the division finite on black pixels).")
    return ((heatmap - image + eps) ** 2 / (image + eps)).flatten(1).mean(dim=1)


def ax_heatmap(attribution: torch.Tensor) -> torch.Tensor:
    """An attribution batch ``(N, 3, H, W)`` divided per image by its absolute maximum.

    An all-zero map stays zero (no signal: adding it changes nothing, CO 0); a map with NaN or
    inf becomes all NaN, so its CO score is NaN and reported as a numerical error.
    """
    flat = attribution.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    peak = flat.abs().nan_to_num(0.0, posinf=0.0).amax(dim=1)
    scale = torch.where(peak > 0, 1.0 / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(peak))
    scaled = attribution * scale.view(-1, 1, 1, 1)
    return torch.where(finite.view(-1, 1, 1, 1), scaled, torch.full_like(scaled, float("nan")))


def ax_inputs(images: torch.Tensor, heatmap: torch.Tensor, *, variant: str) -> torch.Tensor:
    """The AX model input: ``x + h`` or ``x * h`` (not clipped: the model sees what was added)."""
    if variant == "x+h":
        return images + heatmap
    if variant == "x*h":
        return images * heatmap
    raise ParameterError(f"Unknown AX variant {variant!r}; use one of {', '.join(VARIANTS)}.")


@dataclass(frozen=True)
class AxScores:
    """CO scores of one method's AX heatmaps for a batch (all arrays length N)."""

    predicted: np.ndarray
    co_target: np.ndarray
    co: dict[str, np.ndarray]
    status: np.ndarray


def _logits(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``net(inputs)`` in one pass (halved on out-of-memory), through the model's checked inference
    copy on the CPU (:func:`~xaicore.models.inference.forward_logits`)."""
    return forward_logits(net, inputs, batch_size=max(1, len(inputs))).values


def ax_co_scores(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    *,
    method: str,
    true_labels: Sequence[int | None] | None = None,
    variants: Sequence[str] = VARIANTS,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    baseline: str = "black",
) -> AxScores:
    """AX with one explainer on a batch of model inputs ``(N, 3, H, W)``.

    The attribution is computed for the predicted class, scaled by its absolute maximum, and
    applied to the image in each variant; the CO score is taken against the true class where
    ``true_labels`` gives one, else against the predicted class. Raises
    :class:`~xaicore.errors.MethodUnavailable` when the method cannot run on this model.
    """
    from xaicore.explainers.api import attribute

    for variant in variants:
        if variant not in VARIANTS:
            raise ParameterError(f"Unknown AX variant {variant!r}; use one of {', '.join(VARIANTS)}.")
    net = bundle.model
    n = inputs.shape[0]
    labels = list(true_labels) if true_labels is not None else [None] * n
    if len(labels) != n:
        raise ParameterError("Give one true label (or None) per image.")
    with bundle.lock, torch.no_grad():
        clean = _logits(net, inputs)
    predicted = clean.argmax(dim=1)
    known = torch.tensor([lab is not None for lab in labels], device=inputs.device)
    given = torch.tensor([lab if lab is not None else 0 for lab in labels], device=inputs.device, dtype=torch.long)
    co_target = torch.where(known, given, predicted)
    result = attribute(bundle, inputs, method=method, target=predicted, seed=seed, params=params, baseline=baseline)
    heat = ax_heatmap(result.values.detach().to(inputs.dtype))
    stacked = torch.cat([ax_inputs(inputs, heat, variant=v) for v in variants])
    with bundle.lock, torch.no_grad():
        perturbed = _logits(net, stacked)
    scores = co_score(
        perturbed, clean.repeat(len(variants), 1), co_target.repeat(len(variants)), num_classes=clean.shape[1]
    )
    status = attribution_status(heat)
    per_variant = scores.view(len(variants), n).cpu().double().numpy()
    return AxScores(
        predicted=predicted.cpu().numpy(),
        co_target=co_target.cpu().numpy(),
        co={v: per_variant[i] for i, v in enumerate(variants)},
        status=status,
    )
