"""Guided Backpropagation and Deconvolution (captum), which change the backward pass of every
``nn.ReLU`` module: Guided Backprop keeps only positive gradients where the ReLU was active,
Deconvolution passes the positive part of the incoming gradient regardless of the ReLU's input.
Captum removes its hooks in ``finally``; functional ReLUs are invisible to both (models are
made safe on load, and the methods marked unavailable where that is impossible).
"""

from __future__ import annotations

import torch
from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from xaicore.explainers.gradients import grad_leaf


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided Backprop attribution (N, 3, H, W)."""
    return GuidedBackprop(model).attribute(grad_leaf(inputs), target=target).detach()


def deconvolution(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deconvolution attribution (N, 3, H, W)."""
    return Deconvolution(model).attribute(grad_leaf(inputs), target=target).detach()
