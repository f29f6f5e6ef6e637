"""Guided Backpropagation and Deconvolution: both change the backward pass of every ``nn.ReLU``
module. Guided Backprop keeps only positive gradients where the ReLU was active
(``relu(g) * (x > 0)``); Deconvolution passes the positive part of the incoming gradient
regardless of the ReLU's input (``relu(g)``). These equal Captum's ``GuidedBackprop`` and
``Deconvolution`` (tested against them) but cost one plain forward and backward pass: each ReLU
module gets a forward hook that routes its output through a small autograd function, and the
hooks are removed in ``finally``. Guided Backprop only adds a positive-part step after each
ReLU (the ReLU's own backward does the masking), so it costs no extra forward work.
Functional ReLUs are invisible to both (models are made safe on load, and the methods marked
unavailable where that is impossible).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from xaicore.explainers.gradients import grad_leaf, target_scores


class _PositiveGrad(torch.autograd.Function):
    """Identity forward; backward passes the positive part of the gradient. Placed after a
    ReLU, whose own backward then zeroes it where the ReLU was inactive: Guided Backprop's
    ``relu(g) * (x > 0)`` with no extra forward work."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


ReluHook = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]


@contextmanager
def relu_hooks(model: nn.Module, hook: ReluHook) -> Iterator[None]:
    """Within the block, ``hook`` is a forward hook of every ``nn.ReLU`` of ``model`` (its
    return value replaces the ReLU's output); removed on every path."""
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _relu_backward(model: nn.Module, rule: type[torch.autograd.Function]):
    """Within the block, every ``nn.ReLU`` of ``model`` back-propagates with ``rule``
    (:class:`_DeconvReLU` replaces the ReLU's output; :class:`_PositiveGrad` follows it)."""

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return rule.apply(output if rule is _PositiveGrad else inputs[0])

    return relu_hooks(model, hook)


def _modified_gradient(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, rule: type[torch.autograd.Function]
) -> torch.Tensor:
    x = grad_leaf(inputs)
    with _relu_backward(model, rule), torch.enable_grad():
        logits = model(x)
        selected = target_scores(logits, target).sum()
        (grad,) = torch.autograd.grad(selected, x)
    return grad.detach()


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided Backprop attribution (N, 3, H, W)."""
    return _modified_gradient(model, inputs, target, _PositiveGrad)


def deconvolution(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deconvolution attribution (N, 3, H, W)."""
    return _modified_gradient(model, inputs, target, _DeconvReLU)
