"""GradientShap (Lundberg and Lee 2017; "expected gradients"), with our own sampling.

Each sample draws a reference ``r`` (the baseline jittered by Gaussian noise, see
:func:`xaicore.explainers.baselines.jittered_references`) and a point ``alpha ~ U(0, 1)`` on
the straight path from ``r`` to ``x``; the attribution is the mean over samples of
``grad(r + alpha (x - r)) * (x - r)``. Captum's GradientShap draws from the global RNG, so the
sampling is done here from the caller's generator, before any work, and all samples of all
images then run in memory-sized chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.baselines import jittered_references
from xaicore.explainers.gradients import sample_gradients


def draw_samples(
    baseline: torch.Tensor, *, samples: int, reference_noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """References (S, N, 3, H, W) then path points alpha (S, N), in that drawing order."""
    if samples < 1:
        raise ParameterError(f"GradientShap needs at least one sample; got {samples}.")
    references = jittered_references(baseline, count=samples, noise=reference_noise, generator=generator)
    alphas = torch.rand(references.shape[:2], generator=generator, device=baseline.device, dtype=baseline.dtype)
    return references, alphas


def gradient_shap(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    references: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """Mean over samples of ``grad(r + alpha (x - r)) * (x - r)``."""
    samples, n = alphas.shape
    flat_refs = references.reshape(samples * n, *inputs.shape[1:])
    flat_alphas = alphas.reshape(-1, 1, 1, 1)

    def points(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(start, stop, device=inputs.device) % n
        r = flat_refs[start:stop]
        return r + flat_alphas[start:stop] * (inputs[i] - r), target[i]

    def reduce(start: int, stop: int, grads: torch.Tensor) -> torch.Tensor:
        i = torch.arange(start, stop, device=inputs.device) % n
        return torch.zeros_like(inputs).index_add_(0, i, grads * (inputs[i] - flat_refs[start:stop]))

    return sample_gradients(model, points, samples * n, reduce=reduce, example=inputs[0]) / samples
