"""Baselines (reference images) for the methods that compare the input with "absence of signal".

All baselines live in pixel space, like the inputs: (N, 3, H, W) float tensors in [0, 1] on
the inputs' device, one reference per image.

- ``"black"``: all zeros.
- ``"blur"``: the image under a strong Gaussian blur, sigma = :data:`BLUR_SIGMA_FRACTION` of
  the shorter image side (8 pixels at 64x64, 28 pixels at 224x224), reflected at the borders.
  Keeps the colours and the rough layout, removes shapes and edges.
- ``"mean"``: every pixel set to the image's own per-channel mean colour.
- ``"noise"``: uniform noise in [0, 1], drawn from the caller's generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from xaicore.errors import ParameterError

BLUR_SIGMA_FRACTION = 0.125


def _black(inputs: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
    return torch.zeros_like(inputs)


def _mean(inputs: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
    return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs).contiguous()


def _noise(inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)


def gaussian_kernel(sigma: float, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalized 1-D Gaussian of standard deviation ``sigma``, truncated at 3 sigma."""
    radius = max(1, int(3.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _blur_axis(x: torch.Tensor, kernel: torch.Tensor, *, dim: int) -> torch.Tensor:
    # x is (M, 1, H, W); the radius is capped below the side so that reflection is defined.
    center = kernel.numel() // 2
    radius = min(center, x.shape[dim] - 1)
    if radius == 0:
        return x
    k = kernel[center - radius : center + radius + 1]
    k = k / k.sum()
    if dim == 2:
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))


def gaussian_blur(images: torch.Tensor, *, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, borders reflected (scipy's "mirror")."""
    if sigma <= 0:
        raise ParameterError(f"The blur sigma must be positive; got {sigma}.")
    n, c, h, w = images.shape
    kernel = gaussian_kernel(sigma, device=images.device, dtype=images.dtype)
    out = images.reshape(n * c, 1, h, w)
    out = _blur_axis(_blur_axis(out, kernel, dim=2), kernel, dim=3)
    return out.reshape(n, c, h, w)


def _blur(inputs: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
    sigma = BLUR_SIGMA_FRACTION * min(inputs.shape[-2:])
    return gaussian_blur(inputs, sigma=sigma)


_KINDS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "black": _black,
    "blur": _blur,
    "mean": _mean,
    "noise": _noise,
}

BASELINE_KINDS: tuple[str, ...] = tuple(_KINDS)

DESCRIPTIONS: dict[str, str] = {
    "black": "an all-black image",
    "blur": "the image strongly blurred (Gaussian, sigma = 1/8 of the image side)",
    "mean": "the image's average colour everywhere",
    "noise": "uniform random noise (drawn from the seed)",
}


def make_baseline(kind: str, inputs: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """The baseline of kind ``kind`` for each image of ``inputs`` (N, 3, H, W).

    Parameters
    ----------
    kind:
        One of :data:`BASELINE_KINDS`.
    inputs:
        Pixel-space images in [0, 1].
    generator:
        Source of randomness for ``"noise"``; must live on ``inputs.device``.
    """
    try:
        build = _KINDS[kind]
    except KeyError:
        raise ParameterError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}.") from None
    if inputs.ndim != 4:
        raise ParameterError("Baselines are built for a batch of images shaped (N, 3, H, W).")
    return build(inputs.detach(), generator)


def jittered_references(
    baseline: torch.Tensor, *, count: int, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """``count`` references per image for the SHAP-style methods: (count, N, 3, H, W).

    Each reference is the baseline plus Gaussian noise of standard deviation ``noise``,
    clamped to [0, 1]; ``noise=0`` repeats the baseline itself.
    """
    if count < 1:
        raise ParameterError(f"At least one reference is needed; got {count}.")
    refs = baseline.unsqueeze(0).expand(count, *baseline.shape)
    if noise == 0:
        return refs.contiguous()
    jitter = torch.randn(refs.shape, generator=generator, device=baseline.device, dtype=baseline.dtype)
    return (refs + noise * jitter).clamp(0.0, 1.0)
