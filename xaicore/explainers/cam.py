"""The CAM family: Grad-CAM, Guided Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM and Score-CAM.

Each weighs the CAM layer's activation ``A`` (N, C, h, w) and sums over its channels to a coarse
(N, 1, h, w) map, which is upsampled bilinearly to the input size. They differ in the weights:

- Grad-CAM (Selvaraju et al. 2017): the spatial mean of each channel's gradient ``G``; the
  positive part of the map is kept (optional). Guided Grad-CAM multiplies that (positive) map by
  Guided Backprop.
- Grad-CAM++ (Chattopadhay et al. 2018): ``sum_ij alpha_ij relu(G_ij)`` with the pixel weights
  of the paper's eq. 19, ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)`` (0 where that is 0/0).
- XGrad-CAM (Fu et al. 2020): ``sum_ij G_ij A_ij / sum_ab A_ab``.
- LayerCAM (Jiang et al. 2021): a weight per position, ``relu(G)``, instead of per channel.
- Score-CAM (Wang et al. 2020): no gradients. Each channel, scaled to [0, 1] and upsampled, masks
  the image; the softmax over channels of the masked images' class scores weighs the channels.
  One forward pass per channel and image, batched in memory-sized chunks.

The gradient-based ones read the activation and its gradient from one
:class:`~xaicore.explainers.gradients.GradientPass` (the shared fused pass, see
:mod:`xaicore.explainers.fused`); all but Grad-CAM keep the positive part of the map, as their
papers do. Grad-CAM++ and LayerCAM use the gradient of the class logit ``S``; the papers' Grad-CAM++
writes the score as ``exp(S)``, whose gradient only scales every weight of an image by the same
positive factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from xaicore.errors import MethodUnavailable
from xaicore.explainers.gradients import GradientPass, chunk_size, grad_leaf, single_activation, target_scores
from xaicore.models.inference import forward_logits


def _check_conv_shaped(t: torch.Tensor) -> None:
    if t.ndim != 4:
        raise MethodUnavailable(
            f"Grad-CAM needs a convolutional layer with (N, C, H, W) output; the chosen layer gives shape "
            f"{tuple(t.shape)}. Choose a convolutional layer."
        )


def layer_cam(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Raw Grad-CAM map (N, 1, h, w) at the layer's resolution, before ReLU (captum LayerGradCam)."""
    cam = LayerGradCam(model, layer).attribute(grad_leaf(inputs), target=target, relu_attributions=False)
    _check_conv_shaped(cam)
    return cam.detach()


def _layer_pass(grads: GradientPass) -> tuple[torch.Tensor, torch.Tensor]:
    if grads.activation is None or grads.layer_grad is None:
        raise MethodUnavailable("This gradient pass did not record the CAM layer.")
    _check_conv_shaped(grads.activation)
    return grads.activation, grads.layer_grad


def cam_from_pass(grads: GradientPass) -> torch.Tensor:
    """The same raw map from a shared :class:`GradientPass` (activation and its gradient)."""
    activation, gradient = _layer_pass(grads)
    weights = torch.mean(gradient, dim=(2, 3), keepdim=True)
    return torch.sum(weights * activation, dim=1, keepdim=True)


def _weighted(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """The positive part of the channels' weighted sum: (N, 1, h, w)."""
    return F.relu(torch.sum(weights * activation, dim=1, keepdim=True))


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, 0 where the denominator is 0."""
    safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / safe)


def gradcam_pp_from_pass(grads: GradientPass) -> torch.Tensor:
    """Raw Grad-CAM++ map (N, 1, h, w), positive part, from a :class:`GradientPass`."""
    activation, gradient = _layer_pass(grads)
    g2 = gradient.pow(2)
    total = activation.sum(dim=(2, 3), keepdim=True)
    alpha = _ratio(g2, 2 * g2 + total * g2 * gradient)
    weights = (alpha * F.relu(gradient)).sum(dim=(2, 3), keepdim=True)
    return _weighted(weights, activation)


def xgradcam_from_pass(grads: GradientPass) -> torch.Tensor:
    """Raw XGrad-CAM map (N, 1, h, w), positive part, from a :class:`GradientPass`."""
    activation, gradient = _layer_pass(grads)
    weights = _ratio((gradient * activation).sum(dim=(2, 3), keepdim=True), activation.sum(dim=(2, 3), keepdim=True))
    return _weighted(weights, activation)


def layercam_from_pass(grads: GradientPass) -> torch.Tensor:
    """Raw LayerCAM map (N, 1, h, w), positive part, from a :class:`GradientPass`."""
    activation, gradient = _layer_pass(grads)
    return _weighted(F.relu(gradient), activation)


def layer_activation(model: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The CAM layer's (N, C, h, w) output for ``inputs``, without gradients."""
    captured: list[object] = []
    handle = layer.register_forward_hook(lambda _m, _a, out: captured.append(out))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    activation = single_activation(captured).detach()
    _check_conv_shaped(activation)
    return activation


def channel_masks(activation: torch.Tensor) -> torch.Tensor:
    """Each channel of ``activation`` (N, C, h, w) scaled to [0, 1] by its own minimum and
    maximum (a constant channel gives 0): Score-CAM's masks before upsampling."""
    low = activation.amin(dim=(2, 3), keepdim=True)
    span = activation.amax(dim=(2, 3), keepdim=True) - low
    return _ratio(activation - low, span)


def score_cam(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Raw Score-CAM map (N, 1, h, w), positive part: forward passes only.

    The masks are scaled on the layer's grid and then upsampled (bilinear) to the input, as
    torchcam 0.5.0 does. The ``N * C`` masked images are made a chunk at a time and go through
    the model in one forward-only job (:func:`xaicore.models.inference.forward_logits`). The
    weights are the softmax over channels of the masked images' class scores (the unmasked
    image's score, which the paper subtracts, cancels in the softmax); an image whose class
    score is the same under every mask gets an all-zero map (no signal), not the mean activation.
    """
    activation = layer_activation(model, layer, inputs)
    n, channels = activation.shape[:2]
    masks = channel_masks(activation).flatten(0, 1).unsqueeze(1)  # (N * C, 1, h, w), image-major
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))

    def masked(start: int, stop: int) -> torch.Tensor:
        rows = torch.arange(start, stop, device=inputs.device) // channels
        up = F.interpolate(masks[start:stop], size=size, mode="bilinear", align_corners=False)
        return up * inputs[rows]

    def score(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return target_scores(logits, target[torch.arange(start, stop, device=inputs.device) // channels])

    scores = forward_logits(model, masked, total=n * channels, batch_size=chunk_size(inputs[0]), reduce=score).values
    scores = scores.view(n, channels)
    weights = torch.softmax(scores, dim=1)
    # a class score that no mask changes carries no evidence; the softmax would weigh every
    # channel alike and draw the mean activation as if it did
    constant = scores.amax(dim=1, keepdim=True) == scores.amin(dim=1, keepdim=True)
    weights = torch.where(constant, torch.zeros_like(weights), weights)
    return _weighted(weights[:, :, None, None], activation)


def upsample_cam(cam: torch.Tensor, *, relu: bool, size: tuple[int, int]) -> torch.Tensor:
    """Raw map (N, 1, h, w) -> (N, 3, H, W): optional ReLU, bilinear upsampling, 3 channels."""
    if relu:
        cam = F.relu(cam)
    up = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    return up.expand(-1, 3, -1, -1).contiguous()


def guided_gradcam(guided: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Guided Backprop (N, 3, H, W) times the positive, upsampled Grad-CAM map."""
    return guided * upsample_cam(cam, relu=True, size=(guided.shape[-2], guided.shape[-1]))
