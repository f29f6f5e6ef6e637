"""Layer-wise Relevance Propagation (Bach et al. 2015) with zennit's composites and canonizers.

The class score f(x) is passed back layer by layer; each layer shares the relevance of its
outputs among its inputs by a rule. A *composite* chooses the rule per layer type (zennit's,
by name in :data:`COMPOSITES`):

``epsilon_plus_flat`` (default)
    flat rule on the first layer, z+ on the other convolutions, epsilon on linear layers:
    zennit's recommended composite for image classifiers.
``epsilon_gamma_box``
    the z-box rule on the first convolution, bounded by the lowest and highest value the input
    can take (the normalized images of all-0 and all-1 pixels, :func:`input_bounds`), gamma on
    the other convolutions, epsilon on linear layers.
``epsilon_alpha2_beta1``
    alpha=2, beta=1 on convolutions (positive evidence counted twice, negative once), epsilon on
    linear layers. Not conserving by design where a neuron has only positive or only negative
    contributions.

Residual sums and DenseNet's pooling get the proportional rule, batch norm is merged into the
layer before it (:mod:`xaicore.models.canonizers`). Captum's LRP is not used any more: zennit
serves every model captum's served (and ResNets, VGG with batch norm, DenseNet besides).

**Biases.** A bias is an input the image does not control; with ``biases="include"`` (the rules
as published) it takes its share of relevance, and the pixels' relevance adds up to f(x) minus
what the biases absorbed, reported per image as ``details["bias_relevance"]`` (= f(x) - sum).
With ``biases="exclude"`` (the default: zennit's ``zero_params="bias"``) the rules share each
neuron's relevance among its inputs only, so relevance is conserved (sum = f(x) up to the
stabilizers, the completeness figure) and the map accounts for the whole score.

zennit hooks modules and its canonizers change them in place, so the method works on a
throw-away deep copy of the network, never on the shared model, and removes everything from
the copy on every path as well. For a :class:`~xaicore.models.bundle.PixelSpaceModel` it
explains the inner network on the normalized input, so the normalization does not distort
relevance.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
from zennit.core import Composite

from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.explainers import gradients
from xaicore.explainers.registry import Attribution
from xaicore.models.bundle import PixelSpaceModel
from xaicore.models.canonizers import canonizers_for, registered
from xaicore.models.safety import LRP_PASSTHROUGH, LRP_RULES
from xaicore.runtime.device import run_chunked

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")
BIASES = ("exclude", "include")
REFERENCE = "f(x)"
SAME_FUNCTION_RTOL = 1e-4  # merged batch norms change the score by float rounding only


def input_bounds(model: nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each (1, 3, 1, 1): the network's input for all-0 and all-1 pixels, the box
    the z-box rule assumes (for a model without a normalization inside, 0 and 1)."""
    ones = like.new_ones(1, like.shape[1], 1, 1)
    if isinstance(model, PixelSpaceModel):
        with torch.no_grad():
            low, high = model.normalize(ones * 0), model.normalize(ones)
        return torch.minimum(low, high).to(like.dtype), torch.maximum(low, high).to(like.dtype)
    return ones * 0, ones


def refuse_unhandled_layers(net: nn.Module) -> None:
    """:class:`MethodUnavailable` naming the first leaf layer LRP has no rule for (the safety
    audit's table, :data:`~xaicore.models.safety.LRP_RULES`): zennit would let relevance flow
    through it as a plain gradient, which is not conserved."""
    handled = LRP_RULES | set(LRP_PASSTHROUGH)
    for name, module in net.named_modules():
        if name and not list(module.children()) and type(module) not in handled:
            raise MethodUnavailable(
                f"LRP has no propagation rule for the {type(module).__name__} layer {name!r} of this model; "
                "use DeepLift or Integrated Gradients instead."
            )


def make_composite(
    name: str, *, epsilon: float, gamma: float, biases: str, bounds: tuple[torch.Tensor, torch.Tensor], canonizers: list
) -> Composite:
    """zennit's composite ``name`` with the given stabilizer, gamma and bias treatment."""
    zero = "bias" if biases == "exclude" else None
    if biases not in BIASES:
        raise ParameterError(f"biases must be one of {', '.join(BIASES)}; got {biases!r}.")
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(epsilon=epsilon, zero_params=zero, canonizers=canonizers)
    if name == "epsilon_gamma_box":
        low, high = bounds
        return EpsilonGammaBox(
            low=low, high=high, epsilon=epsilon, gamma=gamma, zero_params=zero, canonizers=canonizers
        )
    if name == "epsilon_alpha2_beta1":
        return EpsilonAlpha2Beta1(epsilon=epsilon, zero_params=zero, canonizers=canonizers)
    raise ParameterError(f"Unknown LRP composite {name!r}; choose one of {', '.join(COMPOSITES)}.")


def lrp(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    composite: str,
    biases: str,
    epsilon: float,
    gamma: float,
) -> Attribution:
    """LRP relevance (N, 3, H, W) of class ``target`` (N,), with its completeness against f(x).

    One prepared copy serves the whole batch, in memory-sized chunks (halved on OOM). With
    ``biases="include"``, ``details["bias_relevance"]`` (N,) is f(x) - sum(relevance).
    """
    net, normalize = (model.net, model.normalize) if isinstance(model, PixelSpaceModel) else (model, None)
    with torch.no_grad():
        z = normalize(inputs) if normalize is not None else inputs
    refuse_unhandled_layers(net)
    work = copy.deepcopy(net).eval()
    with torch.no_grad():
        plain = work(z[:1])[0, target[0]]
    rules = make_composite(
        composite,
        epsilon=epsilon,
        gamma=gamma,
        biases=biases,
        bounds=input_bounds(model, z),
        canonizers=canonizers_for(work, z[:1]),
    )
    with registered(rules, work):
        relevance, score = run_chunked(
            lambda start, stop: _relevance(work, z[start:stop], target[start:stop]),
            z.shape[0],
            chunk=gradients.chunk_size(z[0]),
            combine=lambda parts: (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])),
        )
    _check_same_function(plain, score[0])
    details = {"bias_relevance": score - relevance.flatten(1).sum(1)} if biases == "include" else None
    if relevance.shape[1] == 1 and inputs.shape[1] == 3:
        relevance = luminance_shares(relevance, inputs.detach())
    return Attribution.complete(relevance, score, reference=REFERENCE, details=details)


def _check_same_function(plain: torch.Tensor, canonized: torch.Tensor) -> None:
    """The canonized network must compute the model's score (up to the rounding of merged
    weights); a merge the tracing got wrong would explain another function."""
    if not torch.isclose(canonized, plain.to(canonized.dtype), rtol=SAME_FUNCTION_RTOL, atol=1e-6):
        raise MethodUnavailable(
            f"LRP's canonical form of this model scores the first image {float(canonized):.6g} instead of "
            f"{float(plain):.6g} (batch norm merged into a layer whose output is also used elsewhere?); "
            "use DeepLift or Integrated Gradients instead."
        )


def _relevance(net: nn.Module, z: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One backward pass through the hooked ``net``: relevance at its input, and f(x) (N,)."""
    leaf = gradients.grad_leaf(z)
    with torch.enable_grad():
        out = net(leaf)
        score = out.gather(1, target.view(-1, 1).to(out.device)).squeeze(1)
        start = torch.zeros_like(out).scatter_(1, target.view(-1, 1).to(out.device), score.detach().view(-1, 1))
        (relevance,) = torch.autograd.grad(out, leaf, grad_outputs=start)
    return relevance.detach(), score.detach()


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
