"""Layer-wise Relevance Propagation (Bach et al. 2015) through captum's LRP.

Rules: the gamma rule on convolutions (favours positive contributions, gives less noisy maps;
``gamma=0`` turns it into the epsilon rule) and the epsilon rule on every other layer
(captum's defaults for pooling, linear and batch-norm layers); ``epsilon`` stabilizes every
denominator, the gamma rule's included (captum's own 1e-9 there leaves isolated extreme
pixels). With the epsilon rule everywhere and a tiny epsilon, LRP on a ReLU network equals
Input x Gradient (Ancona et al. 2018).

Captum's LRP writes attributes onto the modules and, for the gamma rule, changes weights
while it runs, so it works on a throw-away deep copy, never on the shared model. For a
:class:`~xaicore.models.bundle.PixelSpaceModel` it explains the inner network on the
normalized input, so the normalization does not distort relevance. Shape-only layers
(``nn.Flatten``, ``nn.Unflatten``, ``nn.Identity``) are passed through; any other layer without a rule makes the
method unavailable, with the reason.
"""

from __future__ import annotations

import copy

import torch
from captum.attr import LRP
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule
from torch import nn

from xaicore.errors import MethodUnavailable
from xaicore.explainers.gradients import grad_leaf
from xaicore.explainers.registry import Attribution
from xaicore.models.bundle import PixelSpaceModel

PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Identity)


class _PassThrough(nn.Module):
    """A shape-only layer behind a no-op Dropout leaf, through which LRP passes relevance
    unchanged (captum's IdentityRule cannot, as it keeps the output's shape). The wrapped
    layer is held outside the module tree, so LRP does not look for a rule for it."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.gate = nn.Dropout(p=0.0)
        self._layer = (layer,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layer[0](self.gate(x))


def _leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if name and not list(m.children())]


def prepare_copy(net: nn.Module, *, epsilon: float, gamma: float) -> nn.Module:
    """A deep copy of ``net`` with shape-only layers passed through and rules attached.

    Raises :class:`MethodUnavailable` naming the first layer LRP has no rule for.
    """
    work = copy.deepcopy(net)
    for name, module in _leaves(work):
        if isinstance(module, PASS_THROUGH):
            work.set_submodule(name, _PassThrough(module).train(module.training))
    for name, module in _leaves(work):
        kind = type(module)
        if kind in SUPPORTED_NON_LINEAR_LAYERS:
            continue
        if kind not in SUPPORTED_LAYERS_WITH_RULES:
            raise MethodUnavailable(
                f"LRP has no propagation rule for the {kind.__name__} layer {name!r} of this model; "
                "use DeepLift or Integrated Gradients instead."
            )
        module.rule = _gamma_rule(gamma, epsilon) if kind is nn.Conv2d and gamma > 0 else EpsilonRule(epsilon=epsilon)
    return work


def _gamma_rule(gamma: float, epsilon: float) -> GammaRule:
    # captum's gamma rule divides by z + 1e-9 sign(z); the same epsilon as the other layers
    # keeps near-zero denominators from turning into isolated extreme pixels
    rule = GammaRule(gamma=gamma)
    rule.STABILITY_FACTOR = epsilon
    return rule


def lrp(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, *, epsilon: float, gamma: float) -> Attribution:
    """LRP relevance (N, 3, H, W) and delta ``sum(relevance) - f(x)`` (signed like DeepLift's;
    non-zero by design for the gamma rule and a larger epsilon)."""
    pixels = inputs
    if isinstance(model, PixelSpaceModel):
        net = model.net
        with torch.no_grad():
            inputs = model.normalize(inputs)
    else:
        net = model
    work = prepare_copy(net, epsilon=epsilon, gamma=gamma)
    try:
        values, delta = LRP(work).attribute(grad_leaf(inputs), target=target, return_convergence_delta=True)
    except RuntimeError as exc:
        if "more than once" in str(exc):
            raise MethodUnavailable(
                "LRP cannot handle a layer that this model uses more than once in one forward pass."
            ) from exc
        raise
    # captum's delta is f(x) - sum(relevance)
    values = values.detach()
    if values.shape[1] == 1 and pixels.shape[1] == 3:
        values = luminance_shares(values, pixels.detach())
    return Attribution.complete(values, values.flatten(1).sum(1) + delta.detach(), reference="f(x)")


def luminance_shares(relevance: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """The relevance of a one-channel network's input (N, 1, H, W) shared among R, G and B (N, 3, H, W).

    Each channel gets its share of the luminance it contributed (``w_c x_c / sum_c w_c x_c``, ITU-R
    601 weights ``w``), the weights themselves where a pixel is black; the three shares add up to the
    pixel's relevance, so conservation is kept.
    """
    weights = pixels.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    parts = pixels * weights
    total = parts.sum(1, keepdim=True)
    shares = torch.where(total > 0, parts / total.clamp_min(1e-12), weights.expand_as(parts))
    return relevance * shares
