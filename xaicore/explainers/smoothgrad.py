"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the input.

``mean_s grad(x + eps_s)`` with ``eps_s ~ N(0, noise^2)`` per pixel; ``noise`` is a fraction of
the pixel range [0, 1]. The noise is drawn from the caller's generator before any work, as one
(samples, N, 3, H, W) tensor, so the result does not depend on chunk sizes; all samples of all
images then run in memory-sized chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.gradients import sample_gradients


def draw_noise(inputs: torch.Tensor, *, samples: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """The noise added to each image in each sample: (samples, N, 3, H, W)."""
    if samples < 1:
        raise ParameterError(f"SmoothGrad needs at least one sample; got {samples}.")
    shape = (samples, *inputs.shape)
    return noise * torch.randn(shape, generator=generator, device=inputs.device, dtype=inputs.dtype)


def smoothgrad(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean gradient of the target score at ``inputs + noise[s]`` over the samples ``s``."""
    samples, n = noise.shape[:2]
    flat_noise = noise.reshape(samples * n, *inputs.shape[1:])

    def points(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(start, stop, device=inputs.device) % n
        return inputs[i] + flat_noise[start:stop], target[i]

    def reduce(start: int, stop: int, grads: torch.Tensor) -> torch.Tensor:
        i = torch.arange(start, stop, device=inputs.device) % n
        return torch.zeros_like(inputs).index_add_(0, i, grads)

    return sample_gradients(model, points, samples * n, reduce=reduce, example=inputs[0]) / samples
