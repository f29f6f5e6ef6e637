"""The catalogue of explanation methods: what each computes, its parameters and flags.

Importing this module registers every method, in the order the dashboard shows them. The
algorithms live one per module next to this one; the functions here only bind a
:class:`~xaicore.explainers.registry.MethodCall` to them. Deterministic methods run over the
images in memory-sized chunks; the sampling methods draw all their randomness from
``call.generator`` first and then chunk over (sample, image) pairs themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from captum.attr import InputXGradient, Saliency

from xaicore.errors import MethodUnavailable
from xaicore.explainers import cam, deeplift, integrated, lrp, modified_relu, occlusion, shap, smoothgrad
from xaicore.explainers.baselines import jittered_references
from xaicore.explainers.fused import FusedPass, fused_pass
from xaicore.explainers.gradients import GradientPass, chunk_size, grad_leaf
from xaicore.explainers.registry import Attribution, FusedRule, MethodCall, Param, register_method
from xaicore.runtime.device import run_chunked

JITTER_HELP = "standard deviation of the jitter added to the baseline"
# Work per image in plain forward+backward passes, where it is not a parameter (``xai bench explain``
# prints the measured "passes"; docs/benchmarks.md).
DEEPLIFT_UNITS = 3.0  # the image and its reference forward, and the rescaled backward pass
FORWARD_UNITS = 0.4  # one batched forward pass without a backward pass
# zennit's LRP per composite, copy and batch-norm trace included: measured 2.6 / 3.0 / 5.9 on the
# default model, 3.6 for epsilon_plus_flat on ResNet-18 at 224x224 (CPU, docs/benchmarks.md)
LRP_UNITS = {"epsilon_plus_flat": 3.0, "epsilon_gamma_box": 3.5, "epsilon_alpha2_beta1": 6.0}


def over_image_chunks(call: MethodCall, compute: Callable[[MethodCall], Attribution]) -> Attribution:
    """Run a deterministic method over the batch in chunks of images (halved on OOM)."""

    def part(start: int, stop: int) -> Attribution:
        return compute(
            MethodCall(
                model=call.model,
                inputs=call.inputs[start:stop],
                target=call.target[start:stop],
                baseline=call.baseline[start:stop],
                generator=call.generator,
                params=call.params,
                layer=call.layer,
            )
        )

    return run_chunked(part, call.inputs.shape[0], chunk=chunk_size(call.inputs[0]), combine=Attribution.cat)


def _fused_cam(fused: FusedPass) -> torch.Tensor:
    """The raw Grad-CAM map from a fused pass that recorded the CAM layer."""
    if fused.cam is None:
        raise MethodUnavailable("This gradient pass did not record the CAM layer.")
    return cam.cam_from_pass(fused.cam)


def _fused_gradcam(inputs: torch.Tensor, params: Mapping[str, Any], fused: FusedPass) -> Attribution:
    raw = _fused_cam(fused)
    return Attribution(cam.upsample_cam(raw, relu=bool(params["relu"]), size=(inputs.shape[-2], inputs.shape[-1])))


def _layer(call: MethodCall) -> torch.nn.Module:
    if call.layer is None:
        raise MethodUnavailable("This method needs a convolutional layer, and none was given for this model.")
    return call.layer


@register_method(
    "saliency",
    title="Saliency",
    description="""The absolute gradient of the class score with respect to each pixel: how much a tiny
    change of that pixel would change the score. Cheap (one backward pass) but noisy, and it
    describes the model's local sensitivity, not which pixels the decision rests on; it often
    lights up edges everywhere.""",
    fused=FusedRule(("plain",), lambda _inputs, _params, fused: Attribution(fused.grads["plain"].abs())),
)
def _saliency(call: MethodCall) -> Attribution:
    def compute(c: MethodCall) -> Attribution:
        return Attribution(Saliency(c.model).attribute(grad_leaf(c.inputs), target=c.target, abs=True).detach())

    return over_image_chunks(call, compute)


@register_method(
    "input_x_gradient",
    title="Input x Gradient",
    description="""The gradient multiplied by the pixel value: a first-order estimate of each pixel's
    contribution relative to a black image. One backward pass. Inherits the gradient's noise,
    and dark pixels get no attribution whatever their importance.""",
    fused=FusedRule(("plain",), lambda inputs, _params, fused: Attribution(inputs * fused.grads["plain"])),
)
def _input_x_gradient(call: MethodCall) -> Attribution:
    def compute(c: MethodCall) -> Attribution:
        return Attribution(InputXGradient(c.model).attribute(grad_leaf(c.inputs), target=c.target).detach())

    return over_image_chunks(call, compute)


@register_method(
    "deconvolution",
    title="Deconvolution",
    description="""Backpropagates the class score but lets only positive signals through every ReLU,
    whatever the ReLU saw in the forward pass (Zeiler and Fergus). Produces crisp, image-like
    maps, but they depend little on the class asked for or on the trained weights: it largely
    reconstructs the image's edges and fails the sanity checks.""",
    hook_based=True,
    fused=FusedRule(("deconv",), lambda _inputs, _params, fused: Attribution(fused.grads["deconv"])),
)
def _deconvolution(call: MethodCall) -> Attribution:
    return over_image_chunks(call, lambda c: Attribution(modified_relu.deconvolution(c.model, c.inputs, c.target)))


@register_method(
    "guided_backprop",
    title="Guided Backprop",
    description="""The gradient, keeping at every ReLU only positive gradients where the neuron was
    active (Springenberg et al.). Sharp, detailed maps of the object's edges; but they barely
    change when the model's weights are randomized or another class is asked for, so they show
    what the image contains more than what the model used.""",
    hook_based=True,
    fused=FusedRule(("guided",), lambda _inputs, _params, fused: Attribution(fused.grads["guided"])),
)
def _guided_backprop(call: MethodCall) -> Attribution:
    return over_image_chunks(call, lambda c: Attribution(modified_relu.guided_backprop(c.model, c.inputs, c.target)))


@register_method(
    "gradcam",
    title="Grad-CAM",
    description="""Weights the channels of a late convolutional layer by their average gradient and
    sums them, giving a coarse map of where the class's evidence is, upsampled to the image
    (Selvaraju et al.). Class-discriminative and passes the sanity checks, but blurry: its
    resolution is that of the layer (8x8 for the default model's last convolution), and it
    depends on the layer.""",
    params=(Param("relu", True, "keep only the positive evidence (as in the paper)"),),
    needs_layer=True,
    fused=FusedRule(("plain",), _fused_gradcam),
)
def _gradcam(call: MethodCall) -> Attribution:
    def compute(c: MethodCall) -> Attribution:
        raw = cam.layer_cam(c.model, _layer(c), c.inputs, c.target)
        return Attribution(
            cam.upsample_cam(raw, relu=bool(c.params["relu"]), size=(int(c.inputs.shape[-2]), int(c.inputs.shape[-1])))
        )

    return over_image_chunks(call, compute)


@register_method(
    "guided_gradcam",
    title="Guided Grad-CAM",
    description="""Guided Backprop multiplied by the (positive) Grad-CAM map: fine detail restricted to
    the region Grad-CAM finds. Sharper than Grad-CAM and more class-specific than Guided
    Backprop, but it inherits Guided Backprop's insensitivity to the model's weights.""",
    needs_layer=True,
    hook_based=True,
    fused=FusedRule(
        ("plain", "guided"),
        lambda _inputs, _params, fused: Attribution(cam.guided_gradcam(fused.grads["guided"], _fused_cam(fused))),
    ),
    units=lambda _p, _size: 2.0,  # the plain and the guided backward pass
)
def _guided_gradcam(call: MethodCall) -> Attribution:
    def compute(c: MethodCall) -> Attribution:
        guided = modified_relu.guided_backprop(c.model, c.inputs, c.target)
        return Attribution(cam.guided_gradcam(guided, cam.layer_cam(c.model, _layer(c), c.inputs, c.target)))

    return over_image_chunks(call, compute)


def _fused_map(from_pass: Callable[[GradientPass], torch.Tensor]) -> FusedRule:
    """A CAM method read from the plain rows' layer pass, upsampled to the input."""

    def read(inputs: torch.Tensor, _params: Mapping[str, Any], fused: FusedPass) -> Attribution:
        if fused.cam is None:
            raise MethodUnavailable("This gradient pass did not record the CAM layer.")
        return Attribution(cam.upsample_cam(from_pass(fused.cam), relu=False, size=_size(inputs)))

    return FusedRule(("plain",), read)


def _size(inputs: torch.Tensor) -> tuple[int, int]:
    return (int(inputs.shape[-2]), int(inputs.shape[-1]))


def _alone(rule: FusedRule) -> Callable[[MethodCall], Attribution]:
    """A gradient CAM method run on its own: the plain pass with the layer recorded, read by ``rule``."""

    def compute(call: MethodCall) -> Attribution:
        fused = fused_pass(call.model, call.inputs, call.target, rules=("plain",), layer=_layer(call))
        return rule.read(call.inputs, call.params, fused)

    return compute


GRADCAM_PP = _fused_map(cam.gradcam_pp_from_pass)
XGRADCAM = _fused_map(cam.xgradcam_from_pass)
LAYERCAM = _fused_map(cam.layercam_from_pass)


@register_method(
    "gradcam_pp",
    title="Grad-CAM++",
    description="""Grad-CAM with each channel weighted by its positive gradients, every position
    counted with its own weight (Chattopadhay et al., eq. 19; torch-cam 0.5.0 skips that weight's
    division): better than Grad-CAM when a class shows up in several places. Positive part only;
    as coarse as the layer, and it depends on the layer.""",
    needs_layer=True,
    fused=GRADCAM_PP,
)
def _gradcam_pp(call: MethodCall) -> Attribution:
    return _alone(GRADCAM_PP)(call)


@register_method(
    "xgradcam",
    title="XGrad-CAM",
    description="""Grad-CAM with each channel weighted by its gradient averaged with the activation
    as weights (Fu et al.), chosen so that the map satisfies two axioms (sensitivity and
    conservation) more closely. Positive part only; as coarse as the layer.""",
    needs_layer=True,
    fused=XGRADCAM,
)
def _xgradcam(call: MethodCall) -> Attribution:
    return _alone(XGRADCAM)(call)


@register_method(
    "layercam",
    title="LayerCAM",
    description="""Weighs the layer's activation by its positive gradient at every position instead
    of one weight per channel (Jiang et al.), so that it also gives sensible maps on early, fine
    layers: choose an earlier layer for a sharper map. Positive part only.""",
    needs_layer=True,
    fused=LAYERCAM,
)
def _layercam(call: MethodCall) -> Attribution:
    return _alone(LAYERCAM)(call)


@register_method(
    "scorecam",
    title="Score-CAM",
    description="""No gradients: each channel of the layer, scaled to [0, 1] and upsampled, masks the
    image, and the channels are weighted by the softmax of the class score of their masked
    images (Wang et al.). Free of gradient noise, but costs one forward pass per channel of the
    layer (64 for the default model's last convolution, 512 for a ResNet-18's last block).""",
    needs_layer=True,
    units=lambda _p, _size: FORWARD_UNITS,  # the pass that records the layer; plus one per channel
    per_channel=FORWARD_UNITS,
)
def _scorecam(call: MethodCall) -> Attribution:
    def compute(c: MethodCall) -> Attribution:
        raw = cam.score_cam(c.model, _layer(c), c.inputs, c.target)
        return Attribution(cam.upsample_cam(raw, relu=False, size=_size(c.inputs)))

    return over_image_chunks(call, compute)


@register_method(
    "integrated_gradients",
    title="Integrated Gradients",
    description="""Averages the gradient along the straight path from the baseline to the image and
    multiplies by the difference (Sundararajan et al.); the attributions add up to the change
    of the score from baseline to image, up to the error of the numerical integration, which
    is shown. By default the number of steps is doubled from 32 until that error is under 1%
    (at most 512). Principled, but the map depends strongly on the baseline chosen, and costs
    one backward pass per step.""",
    params=(
        Param(
            "steps",
            0,
            "points on the path (Gauss-Legendre rule); 0 = chosen per image: doubled from 32 until "
            "the completeness error is under 1% (at most 512)",
            minimum=0,
            maximum=1024,
        ),
    ),
    needs_baseline=True,
    # and the input and baseline forward, for the completeness error; automatic steps cost at least the first rule
    units=lambda p, _size: (p["steps"] or integrated.AUTO_START) + 2 * FORWARD_UNITS,
)
def _integrated_gradients(call: MethodCall) -> Attribution:
    return integrated.integrated_gradients(
        call.model, call.inputs, call.baseline, call.target, steps=int(call.params["steps"])
    )


@register_method(
    "smoothgrad",
    title="SmoothGrad",
    description="""The gradient averaged over copies of the image with Gaussian noise added (Smilkov et
    al.): removes much of the gradient's speckle and gives cleaner maps. Costs one backward pass
    per sample, depends on the noise level, and is still a (smoothed) sensitivity map.""",
    params=(
        Param("samples", 16, "noisy copies averaged", minimum=1, maximum=1024),
        Param("noise", 0.15, "noise standard deviation, as a fraction of the pixel range", minimum=0.0, maximum=1.0),
    ),
    stochastic=True,
    units=lambda p, _size: float(p["samples"]),
)
def _smoothgrad(call: MethodCall) -> Attribution:
    noise = smoothgrad.draw_noise(
        call.inputs, samples=int(call.params["samples"]), noise=float(call.params["noise"]), generator=call.generator
    )
    return Attribution(smoothgrad.smoothgrad(call.model, call.inputs, call.target, noise))


@register_method(
    "deeplift",
    title="DeepLift",
    description="""Compares every neuron with its value on the baseline and shares the change of the
    score out to the pixels with the rescale rule (Shrikumar et al.); one pass, and the
    attributions add up to the change of the score, f(x) - f(baseline). Unlike captum's rule for
    max-pooling, which loses part of that change (2-10% of it on the default model, median),
    each max-pooling is run as an equivalent network of ReLUs, max(a, b) = b + relu(a - b),
    where the rescale rule is exact; the maps then differ from captum's on models with
    max-pooling. Depends on the baseline.""",
    hook_based=True,
    needs_baseline=True,
    units=lambda _p, _size: DEEPLIFT_UNITS,
)
def _deeplift(call: MethodCall) -> Attribution:
    return over_image_chunks(call, lambda c: deeplift.deeplift(c.model, c.inputs, c.baseline, c.target))


@register_method(
    "deeplift_shap",
    title="DeepLiftShap",
    description="""DeepLift averaged over several references (the chosen baseline with random
    jitter), approximating SHAP values (Lundberg and Lee). Less tied to one baseline than
    DeepLift, at one pass per reference; the result varies with the seed. Adds up to f(x) minus
    the mean score of the references, with max-poolings run as ReLU networks as for DeepLift
    (captum's max-pool rule misses by 8-17% on the default model, median).""",
    params=(
        Param("references", 8, "references per image", minimum=1, maximum=256),
        Param("reference_noise", 0.1, JITTER_HELP, minimum=0.0, maximum=1.0),
    ),
    hook_based=True,
    stochastic=True,
    needs_baseline=True,
    units=lambda p, _size: DEEPLIFT_UNITS * p["references"],
)
def _deeplift_shap(call: MethodCall) -> Attribution:
    return deeplift.deeplift_shap(call.model, call.inputs, call.target, deeplift_shap_references(call))


def deeplift_shap_references(call: MethodCall) -> torch.Tensor:
    """DeepLiftShap's (references, N, 3, H, W) jittered references, drawn from the call's generator."""
    return jittered_references(
        call.baseline,
        count=int(call.params["references"]),
        noise=float(call.params["reference_noise"]),
        generator=call.generator,
    )


@register_method(
    "gradient_shap",
    title="GradientShap",
    description="""Gradients at random points between random references (the baseline with jitter)
    and the image, times the difference, averaged (expected gradients; Lundberg and Lee). A
    stochastic Integrated Gradients over many baselines: smoother than IG, noisier with few
    samples, and the result varies with the seed.""",
    params=(
        Param("samples", 16, "random (reference, path point) samples", minimum=1, maximum=1024),
        Param("reference_noise", 0.1, JITTER_HELP, minimum=0.0, maximum=1.0),
    ),
    stochastic=True,
    needs_baseline=True,
    units=lambda p, _size: float(p["samples"]),
)
def _gradient_shap(call: MethodCall) -> Attribution:
    refs, alphas = shap.draw_samples(
        call.baseline,
        samples=int(call.params["samples"]),
        reference_noise=float(call.params["reference_noise"]),
        generator=call.generator,
    )
    return Attribution(shap.gradient_shap(call.model, call.inputs, call.target, refs, alphas))


@register_method(
    "occlusion",
    title="Occlusion",
    description="""Slides a patch of baseline over the image and records how much the class score drops
    at each position (Zeiler and Fergus). Model-agnostic and easy to read, but coarse (the
    patch size sets the resolution), blind to evidence spread over several patches, and costs
    one forward pass per position.""",
    params=(
        Param("window", 0, "patch side in pixels; 0 = 1/8 of the image side", minimum=0, maximum=4096),
        Param("stride", 0, "step between patches in pixels; 0 = half the window", minimum=0, maximum=4096),
    ),
    needs_baseline=True,
    units=lambda p, size: occlusion.forward_passes(*size, p["window"], p["stride"]) * FORWARD_UNITS,
)
def _occlusion(call: MethodCall) -> Attribution:
    values = occlusion.occlusion(
        call.model,
        call.inputs,
        call.baseline,
        call.target,
        window=int(call.params["window"]),
        stride=int(call.params["stride"]),
    )
    return Attribution(values)


@register_method(
    "lrp",
    title="LRP",
    description="""Layer-wise Relevance Propagation (Bach et al.), computed with zennit: passes the class
    score back layer by layer, each layer sharing its relevance among its inputs by a rule the
    composite chooses (default: flat on the first layer, z+ on convolutions, epsilon on dense
    layers; or z-box bounded by the input's range with gamma; or alpha2-beta1). Residual sums
    are split between their branches and batch norm is merged into the layer before it, so it
    runs on ResNets, VGG with batch norm and DenseNet. With biases excluded (default) relevance
    is conserved: the map adds up to the class score f(x), and the completeness figure shows how
    well; with biases included they absorb part of it, reported separately as the bias
    relevance. Sharper and less noisy than gradients, but the map depends on the rules.""",
    params=(
        Param(
            "composite",
            lrp.COMPOSITES[0],
            "rules per layer: epsilon_plus_flat (flat first layer, z+ convolutions, epsilon dense layers); "
            "epsilon_gamma_box (z-box first layer bounded by the input range, gamma convolutions); "
            "epsilon_alpha2_beta1 (alpha=2, beta=1 convolutions; does not conserve relevance by design)",
            choices=lrp.COMPOSITES,
        ),
        Param(
            "biases",
            lrp.BIASES[0],
            "exclude: biases take no relevance, so it adds up to the class score; include: they absorb "
            "their share (the rules as published), reported as the bias relevance",
            choices=lrp.BIASES,
        ),
        Param(
            "epsilon",
            1e-6,
            "stabilizer of the dense layers' epsilon rule (larger values absorb weak, noisy relevance)",
            minimum=0.0,
            maximum=10.0,
        ),
        Param(
            "gamma",
            0.25,
            "extra weight of positive contributions in convolutions (epsilon_gamma_box only)",
            minimum=0.0,
            maximum=10.0,
        ),
    ),
    hook_based=True,
    units=lambda p, _size: LRP_UNITS[p["composite"]],
)
def _lrp(call: MethodCall) -> Attribution:
    return lrp.lrp(
        call.model,
        call.inputs,
        call.target,
        composite=str(call.params["composite"]),
        biases=str(call.params["biases"]),
        epsilon=float(call.params["epsilon"]),
        gamma=float(call.params["gamma"]),
    )
