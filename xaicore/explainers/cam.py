"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017).

Grad-CAM weighs the CAM layer's channels by the spatial mean of their gradients, sums them,
keeps the positive part (optional) and upsamples the coarse map bilinearly to the input size.
Guided Grad-CAM multiplies that map (always with the positive part) by Guided Backprop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from xaicore.errors import MethodUnavailable
from xaicore.explainers.gradients import GradientPass, grad_leaf


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


def cam_from_pass(grads: GradientPass) -> torch.Tensor:
    """The same raw map from a shared :class:`GradientPass` (activation and its gradient)."""
    if grads.activation is None or grads.layer_grad is None:
        raise MethodUnavailable("This gradient pass did not record the CAM layer.")
    _check_conv_shaped(grads.activation)
    weights = torch.mean(grads.layer_grad, dim=(2, 3), keepdim=True)
    return torch.sum(weights * grads.activation, dim=1, keepdim=True)


def upsample_cam(cam: torch.Tensor, *, relu: bool, size: tuple[int, int]) -> torch.Tensor:
    """Raw map (N, 1, h, w) -> (N, 3, H, W): optional ReLU, bilinear upsampling, 3 channels."""
    if relu:
        cam = F.relu(cam)
    up = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    return up.expand(-1, 3, -1, -1).contiguous()


def guided_gradcam(guided: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Guided Backprop (N, 3, H, W) times the positive, upsampled Grad-CAM map."""
    return guided * upsample_cam(cam, relu=True, size=(guided.shape[-2], guided.shape[-1]))
