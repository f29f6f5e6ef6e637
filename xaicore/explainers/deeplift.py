"""DeepLift (Shrikumar et al. 2017, rescale rule, captum) and DeepLiftShap.

DeepLift compares every neuron with its value on the baseline and distributes the change of
the class score back to the pixels; attributions should add up to ``f(x) - f(baseline)``.

Captum 0.9's rule for max-pooling does not keep that promise (on the default model the sum
misses the change of the score by 10% of it, median over generated images). So DeepLift runs on
a copy of the model whose max-poolings are written as networks of ReLU modules
(:func:`xaicore.models.rewrite.relu_max_pool_copy`: same outputs within 1e-5, checked before
use), where the rescale rule of every ReLU is exact and the attributions add up to the change
of the score up to float rounding. On a model without max-pooling the copy is the model itself
and the maps are captum's. The convergence delta ``sum(attribution) - (f(x) - f(b))`` is still
returned, as the measured figure.

DeepLiftShap averages DeepLift over several references per image; all (reference, image)
pairs run through captum in memory-sized chunks.
"""

from __future__ import annotations

from typing import cast

import torch
from captum.attr import DeepLift
from torch import nn

from xaicore.explainers.gradients import chunk_size, grad_leaf
from xaicore.explainers.registry import Attribution
from xaicore.models.rewrite import relu_max_pool_copy
from xaicore.runtime.device import run_chunked

REFERENCE = "f(x) - f({baseline})"
SHAP_REFERENCE = "f(x) - mean f(references around {baseline})"


def deeplift(model: nn.Module, inputs: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor) -> Attribution:
    """DeepLift attribution and signed convergence delta for each image, computed on ``model``
    with its max-poolings written as ReLU networks (checked equal to ``model`` first)."""
    exact = relu_max_pool_copy(model, inputs[:1].detach())
    values, delta = DeepLift(exact).attribute(
        grad_leaf(inputs), baselines=baseline.detach(), target=target, return_convergence_delta=True
    )
    return _complete(values, delta, reference=REFERENCE)


def deeplift_shap(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, references: torch.Tensor
) -> Attribution:
    """Mean DeepLift over ``references`` (K, N, 3, H, W); the delta is the mean signed delta."""
    count, n = references.shape[:2]
    flat_refs = references.reshape(count * n, *inputs.shape[1:])

    def run(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(start, stop, device=inputs.device) % n
        part = deeplift(model, inputs[i], flat_refs[start:stop], target[i])
        part_delta = cast(torch.Tensor, part.delta)  # deeplift always returns its delta
        values = torch.zeros_like(inputs).index_add_(0, i, part.values)
        delta = torch.zeros(n, device=inputs.device, dtype=part_delta.dtype).index_add_(0, i, part_delta)
        return values, delta

    def combine(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return sum(p[0] for p in parts), sum(p[1] for p in parts)  # type: ignore[return-value]

    # captum runs inputs and references together: twice the images per chunk
    values, delta = run_chunked(run, count * n, chunk=max(1, chunk_size(inputs[0]) // 2), combine=combine)
    return _complete(values / count, delta / count, reference=SHAP_REFERENCE)


def deeplift_and_shap(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    references: torch.Tensor,
) -> tuple[Attribution, Attribution]:
    """DeepLift with ``baseline`` and DeepLiftShap over ``references`` (K, N, 3, H, W) at once.

    DeepLift treats every (image, reference) pair on its own, so the baseline and the K
    references run as one batch of ``(K + 1) * N`` pairs; each result equals its separate
    computation up to float rounding. Used when both methods are asked for on a GPU, where one
    pass of more pairs costs about as much as one of fewer.
    """
    refs = torch.cat([baseline.detach().unsqueeze(0), references])
    count, n = refs.shape[:2]
    flat_refs = refs.reshape(count * n, *inputs.shape[1:])

    def run(start: int, stop: int) -> tuple[torch.Tensor, ...]:
        rows = torch.arange(start, stop, device=inputs.device)
        i, first = rows % n, rows < n
        part = deeplift(model, inputs[i], flat_refs[start:stop], target[i])
        part_delta = cast(torch.Tensor, part.delta)  # deeplift always returns its delta
        keep = first.view(-1, *([1] * (inputs.ndim - 1)))
        zero = torch.zeros((), dtype=part.values.dtype, device=inputs.device)
        return (
            torch.zeros_like(inputs).index_add_(0, i, torch.where(keep, part.values, zero)),
            torch.zeros(n, device=inputs.device, dtype=part_delta.dtype).index_add_(
                0, i, torch.where(first, part_delta, zero)
            ),
            torch.zeros_like(inputs).index_add_(0, i, torch.where(keep, zero, part.values)),
            torch.zeros(n, device=inputs.device, dtype=part_delta.dtype).index_add_(
                0, i, torch.where(first, zero, part_delta)
            ),
        )

    def combine(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        return tuple(sum(p[k] for p in parts) for k in range(4))  # type: ignore[misc]

    dl, dl_delta, shap, shap_delta = run_chunked(
        run, count * n, chunk=max(1, chunk_size(inputs[0]) // 2), combine=combine
    )
    k = count - 1
    return (
        _complete(dl, dl_delta, reference=REFERENCE),
        _complete(shap / k, shap_delta / k, reference=SHAP_REFERENCE),
    )


def _complete(values: torch.Tensor, delta: torch.Tensor, *, reference: str) -> Attribution:
    # captum's delta is sum(values) - (f(x) - f(b)), linear in the pairs averaged: the amount
    # the attributions should add up to is their sum less the delta
    values = values.detach()
    return Attribution.complete(values, values.flatten(1).sum(1) - delta.detach(), reference=reference)
