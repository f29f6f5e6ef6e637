"""Integrated Gradients (Sundararajan et al. 2017), batched over the path's steps.

The path integral from the baseline to the input is taken with Gauss-Legendre quadrature
(captum's default rule): ``steps`` points ``b + alpha_k (x - b)`` with weights ``w_k``; the
attribution is ``(x - b) * sum_k w_k grad(b + alpha_k (x - b))``. All steps of all images run in
memory-sized chunks. The convergence delta is ``sum(attribution) - (f(x) - f(b))``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.gradients import chunk_size, sample_gradients, target_scores
from xaicore.explainers.registry import Attribution
from xaicore.runtime.device import run_chunked


def gauss_legendre(steps: int, *, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``alpha`` in (0, 1) and weights summing to 1 of the ``steps``-point rule."""
    if steps < 1:
        raise ParameterError(f"Integrated Gradients needs at least one step; got {steps}.")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor(0.5 * (1.0 + nodes), dtype=torch.float32, device=device)
    return alphas, torch.as_tensor(0.5 * weights, dtype=torch.float32, device=device)


def convergence_delta(
    model: nn.Module,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
) -> torch.Tensor:
    """``sum(attribution) - (f(x) - f(b))`` per image, from forward passes of both in
    memory-sized chunks (halved on out-of-memory)."""
    n = inputs.shape[0]
    points, targets = torch.cat([inputs, baseline]), target.repeat(2)

    def part(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            return target_scores(model(points[start:stop]), targets[start:stop])

    scores = run_chunked(part, 2 * n, chunk=chunk_size(inputs[0]), combine=torch.cat)
    return attribution.flatten(1).sum(1) - (scores[:n] - scores[n:])


def integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int,
) -> Attribution:
    """Integrated Gradients of ``inputs`` (N, 3, H, W) against ``baseline``, with delta."""
    alphas, weights = gauss_legendre(steps, device=inputs.device)
    n = inputs.shape[0]
    diff = inputs - baseline

    def points(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(start, stop, device=inputs.device)
        k, i = idx // n, idx % n
        return baseline[i] + alphas[k].view(-1, 1, 1, 1) * diff[i], target[i]

    def reduce(start: int, stop: int, grads: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(start, stop, device=inputs.device)
        k, i = idx // n, idx % n
        return torch.zeros_like(inputs).index_add_(0, i, grads * weights[k].view(-1, 1, 1, 1))

    avg_grad = sample_gradients(model, points, steps * n, reduce=reduce, example=inputs[0])
    values = diff * avg_grad
    return Attribution(values=values, delta=convergence_delta(model, inputs, baseline, target, values))
