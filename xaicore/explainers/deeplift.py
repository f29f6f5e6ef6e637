"""DeepLift (Shrikumar et al. 2017, rescale rule, captum) and DeepLiftShap.

DeepLift compares every neuron with its value on the baseline and distributes the change of
the class score back to the pixels; attributions should add up to ``f(x) - f(baseline)``. The
convergence delta ``sum(attribution) - (f(x) - f(b))`` is returned because that completeness can
fail silently (for example a ReLU right before a max-pool in captum 0.9).

DeepLiftShap averages DeepLift over several references per image; all (reference, image)
pairs run through captum in memory-sized chunks.
"""

from __future__ import annotations

import torch
from captum.attr import DeepLift
from torch import nn

from xaicore.device import run_chunked
from xaicore.explainers.gradients import chunk_size, grad_leaf
from xaicore.explainers.registry import Attribution


def deeplift(model: nn.Module, inputs: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor) -> Attribution:
    """DeepLift attribution and signed convergence delta for each image."""
    values, delta = DeepLift(model).attribute(
        grad_leaf(inputs), baselines=baseline.detach(), target=target, return_convergence_delta=True
    )
    return Attribution(values=values.detach(), delta=delta.detach())


def deeplift_shap(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, references: torch.Tensor
) -> Attribution:
    """Mean DeepLift over ``references`` (K, N, 3, H, W); the delta is the mean signed delta."""
    count, n = references.shape[:2]
    flat_refs = references.reshape(count * n, *inputs.shape[1:])

    def run(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(start, stop, device=inputs.device) % n
        part = deeplift(model, inputs[i], flat_refs[start:stop], target[i])
        values = torch.zeros_like(inputs).index_add_(0, i, part.values)
        delta = torch.zeros(n, device=inputs.device, dtype=part.delta.dtype).index_add_(0, i, part.delta)
        return values, delta

    def combine(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return sum(p[0] for p in parts), sum(p[1] for p in parts)  # type: ignore[return-value]

    # captum runs inputs and references together: twice the images per chunk
    values, delta = run_chunked(run, count * n, chunk=max(1, chunk_size(inputs[0]) // 2), combine=combine)
    return Attribution(values=values / count, delta=delta / count)
