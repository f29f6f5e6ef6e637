"""Integrated Gradients (Sundararajan et al. 2017), batched over the path's steps.

The path integral from the baseline to the input is taken with Gauss-Legendre quadrature
(captum's default rule): ``steps`` points ``b + alpha_k (x - b)`` with weights ``w_k``; the
attribution is ``(x - b) * sum_k w_k grad(b + alpha_k (x - b))``. All steps of all images run in
memory-sized chunks. The attributions should add up to ``f(x) - f(b)``; what they miss is
quadrature error, which shrinks as the steps grow, so by default the steps are chosen per
image until the error is under 1% of that amount (:func:`integrated_gradients`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.gradients import chunk_size, sample_gradients, target_scores
from xaicore.explainers.registry import Attribution
from xaicore.runtime.device import run_chunked

REFERENCE = "f(x) - f({baseline})"
AUTO_START = 32  # the first rule tried when the steps are chosen automatically
MAX_AUTO_STEPS = 512
TOLERANCE = 0.01  # of |f(x) - f(b)|
ABSOLUTE_FLOOR = 1e-5  # logit units: below this the error is rounding, whatever the score gap


def gauss_legendre(steps: int, *, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``alpha`` in (0, 1) and weights summing to 1 of the ``steps``-point rule."""
    if steps < 1:
        raise ParameterError(f"Integrated Gradients needs at least one step; got {steps}.")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor(0.5 * (1.0 + nodes), dtype=torch.float32, device=device)
    return alphas, torch.as_tensor(0.5 * weights, dtype=torch.float32, device=device)


def score_gap(model: nn.Module, inputs: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``f(x) - f(b)`` per image, the amount the attributions should add up to, from forward
    passes of both in memory-sized chunks (halved on out-of-memory)."""
    n = inputs.shape[0]
    points, targets = torch.cat([inputs, baseline]), target.repeat(2)

    def part(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            return target_scores(model(points[start:stop]), targets[start:stop])

    scores = run_chunked(part, 2 * n, chunk=chunk_size(inputs[0]), combine=torch.cat)
    return scores[:n] - scores[n:]


def path_integral(
    model: nn.Module, inputs: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, *, steps: int
) -> torch.Tensor:
    """``(x - b) * sum_k w_k grad f(b + alpha_k (x - b))`` for every image, all steps of all
    images in memory-sized chunks."""
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

    return diff * sample_gradients(model, points, steps * n, reduce=reduce, example=inputs[0])


def integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int,
    tolerance: float = TOLERANCE,
    max_steps: int = MAX_AUTO_STEPS,
) -> Attribution:
    """Integrated Gradients of ``inputs`` (N, 3, H, W) against ``baseline``, with its
    completeness error against ``f(x) - f(b)`` and the steps used (``details["steps"]``).

    ``steps=0`` chooses them: :data:`AUTO_START` points, doubled for the images whose relative
    error ``|delta| / |f(x) - f(b)|`` is still above ``tolerance`` (one batched pass of those
    images per doubling), up to ``max_steps``. Any other ``steps`` is used as given.
    """
    gap = score_gap(model, inputs, baseline, target)
    if steps:
        values = path_integral(model, inputs, baseline, target, steps=steps)
        used = torch.full_like(gap, float(steps))
        return Attribution.complete(values, gap, reference=REFERENCE, details={"steps": used})
    current = AUTO_START
    values = path_integral(model, inputs, baseline, target, steps=current)
    used = torch.full_like(gap, float(current))
    todo = ~converged(values, gap, tolerance=tolerance)
    while current < max_steps and bool(todo.any()):  # one host sync per doubling
        current = min(2 * current, max_steps)
        rows = todo.nonzero().flatten()
        values[rows] = path_integral(model, inputs[rows], baseline[rows], target[rows], steps=current)
        used[rows] = float(current)
        todo[rows] = ~converged(values[rows], gap[rows], tolerance=tolerance)
    return Attribution.complete(values, gap, reference=REFERENCE, details={"steps": used})


def converged(values: torch.Tensor, gap: torch.Tensor, *, tolerance: float) -> torch.Tensor:
    """Per image: is the completeness error within ``tolerance`` of ``|f(x) - f(b)|`` (or below
    :data:`ABSOLUTE_FLOOR`, for an image whose score hardly changes from the baseline)?"""
    error = (values.flatten(1).sum(1) - gap).abs()
    return (error <= tolerance * gap.abs()) | (error <= ABSOLUTE_FLOOR)
