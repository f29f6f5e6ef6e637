"""Plain gradients of a class score, the building block of most methods: input gradients at
many sample points in memory-sized chunks, chunk sizing, and :class:`GradientPass`, what the
fused pass (:mod:`xaicore.explainers.fused`) returns for the CAM layer. Nothing is accumulated
into ``.grad`` of the model's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xaicore.errors import MethodUnavailable
from xaicore.runtime.device import run_chunked

# Rough activation memory per image as a multiple of the input's bytes (forward + backward of
# a VGG/ResNet-style network); only sets the first chunk size, run_chunked halves it on OOM.
ACTIVATION_FACTOR = 120
CPU_CHUNK_BYTES = 512 * 2**20
GPU_MEMORY_SHARE = 0.5
MAX_CHUNK = 256


def chunk_size(sample: torch.Tensor) -> int:
    """How many images like ``sample`` (C, H, W) to push through the model at once.

    From free device memory on CUDA (half of it), from a fixed 512 MiB budget on the CPU;
    between 1 and :data:`MAX_CHUNK`.
    """
    per_item = sample.numel() * sample.element_size() * ACTIVATION_FACTOR
    if sample.device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(sample.device)
        budget = int(free * GPU_MEMORY_SHARE)
    else:
        budget = CPU_CHUNK_BYTES
    return max(1, min(MAX_CHUNK, budget // max(1, per_item)))


def grad_leaf(inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` detached from any graph, as a leaf that requires grad (what captum expects)."""
    return inputs.detach().requires_grad_(True)


def target_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logit of each row's target class: (N,) from (N, C) logits and (N,) targets."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def input_gradients(model: nn.Module, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit[target] / d input for each row of ``points`` (N, 3, H, W)."""
    with torch.enable_grad():
        x = points.detach().requires_grad_(True)
        scores = target_scores(model(x), target)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


def sample_gradients(
    model: nn.Module,
    make_points: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    total: int,
    *,
    reduce: Callable[[int, int, torch.Tensor], torch.Tensor],
    example: torch.Tensor,
) -> torch.Tensor:
    """Gradients at ``total`` sample points, computed in memory-sized chunks and reduced.

    Parameters
    ----------
    model:
        The pixel-space classifier.
    make_points:
        ``(start, stop) -> (points, target)`` for sample indices ``start:stop``.
    total:
        Number of sample points.
    reduce:
        ``(start, stop, gradients) -> partial`` turns one chunk's gradients into a partial
        result (for example a weighted sum per image); partials are added up.
    example:
        One input image (C, H, W), used to size the chunks.
    """

    def run(start: int, stop: int) -> torch.Tensor:
        pts, tgt = make_points(start, stop)
        return reduce(start, stop, input_gradients(model, pts, tgt))

    return run_chunked(run, total, chunk=chunk_size(example), combine=_add_all)


def _add_all(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


@dataclass(frozen=True)
class GradientPass:
    """What one forward+backward pass yields: the input gradient, the layer's activation
    and its gradient (``None`` for what was not asked for)."""

    input_grad: torch.Tensor | None
    activation: torch.Tensor | None
    layer_grad: torch.Tensor | None


def single_activation(captured: Sequence[object]) -> torch.Tensor:
    if not captured:
        raise MethodUnavailable("The CAM layer did not run in the forward pass, so there is no activation to use.")
    if len(captured) > 1:
        raise MethodUnavailable("The CAM layer runs more than once per forward pass; choose a layer used once.")
    out = captured[0]
    if not isinstance(out, torch.Tensor):
        raise MethodUnavailable("The CAM layer's output is not a single tensor; choose a convolutional layer.")
    return out
