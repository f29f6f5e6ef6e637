"""``xai bench explain``: every explanation method against the model's own speed.

Measured in one process on one generated image at the model's input size: the time of one
plain forward+backward pass (the unit), each method's time through :func:`attribute` and in
units of that pass, all methods together through :func:`explain` (shared passes), and a plain
reference: captum's classes (zennit's attributor for LRP) with their default settings (one call per
method, no shared passes, occlusion one perturbation per forward pass), for SmoothGrad /
GradientShap a loop over samples of captum's Saliency fed with the same noise, torchcam's
XGradCAM, LayerCAM and ScoreCAM for those, and Grad-CAM++'s eq. 19 over captum's layer
gradients; DeepLift and DeepLiftShap on the model with its max-poolings written as ReLU
networks, as the product runs them. The reference runs on a
private copy of the model. ``equal`` says whether a method's map matches its reference within
1e-4 of the map's largest value. The single-pass methods are also timed on a batch, against
the floor at that batch. ``time_to_tiles``: the Explain page's wait after choosing a new image
(estimate, then tiles as they come): to the first tile, to the single-pass tiles, to the methods
the page starts by itself, to the last. ``occlusion_inference_copy``: Occlusion with its forward
passes through the model's inference copy and through the plain model (``speedup``), and the
first call with the copy, which makes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import (
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torchcam.methods import LayerCAM, ScoreCAM, XGradCAM
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

from xaicore.bench.common import BenchContext, Workload, best_time, pass_time, synchronize
from xaicore.data.shapes import generate
from xaicore.explainers import cost, shap, smoothgrad
from xaicore.explainers.api import attribute, explain, method_generator
from xaicore.explainers.baselines import jittered_references, make_baseline
from xaicore.explainers.occlusion import auto_window
from xaicore.explainers.registry import get_method, single_pass_methods
from xaicore.models import inference
from xaicore.models.bundle import ModelBundle
from xaicore.models.canonizers import canonizers_for
from xaicore.models.rewrite import with_relu_max_pools

IMAGE_SEED = 7
TARGET_ALL_S = 3.0
TARGET_SINGLE_PASS_TILES_S = 2.0  # ResNet-18 at 224x224 on a 2-core CPU
TARGET_SINGLE_PASS_UNITS = 1.5
TOLERANCE = 1e-4  # relative to the map's largest value

Reference = Callable[[], torch.Tensor]


def bench_image(bundle: ModelBundle) -> np.ndarray:
    """One generated shape image at (at least) the model's input size."""
    side = max(32, max(bundle.input_size))
    images, _labels = generate(1, seed=IMAGE_SEED, size=side)
    return images[0]


def _sample_loop(model: torch.nn.Module, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    saliency = Saliency(model)
    return torch.stack([saliency.attribute(p.unsqueeze(0), target=target, abs=False)[0] for p in points])


def references(ref: ModelBundle, x: torch.Tensor, target: torch.Tensor) -> dict[str, Reference]:
    """Plain captum calls per method, with the same parameters and baselines as the defaults."""
    model = ref.model
    # captum's DeepLift rule on the model with its max-poolings as ReLU networks, as the product
    # runs it (the model itself where it has no max-pooling)
    exact = with_relu_max_pools(model) or model
    layer = ref.module(ref.cam_layer)
    size = (x.shape[-2], x.shape[-1])

    def defaults(name: str) -> dict[str, Any]:
        return get_method(name).resolve_params(None)

    def setup(name: str) -> tuple[torch.Tensor, torch.Generator]:
        g = method_generator(0, name, x.device)
        return make_baseline("black", x, generator=g), g

    def gradcam() -> torch.Tensor:
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear").expand(-1, 3, -1, -1)

    # captum's rule with the steps ours chose for this image (chosen once, outside the timing)
    ig_steps = defaults("integrated_gradients")["steps"] or int(
        attribute(ref, x, method="integrated_gradients", target=target).details["steps"][0]
    )

    def integrated() -> torch.Tensor:
        b, _ = setup("integrated_gradients")
        return IntegratedGradients(model).attribute(x, baselines=b, target=target, n_steps=ig_steps)

    def smooth() -> torch.Tensor:
        _, g = setup("smoothgrad")
        p = defaults("smoothgrad")
        noise = smoothgrad.draw_noise(x, samples=p["samples"], noise=p["noise"], generator=g)
        return _sample_loop(model, x[0] + noise[:, 0], target).mean(0, keepdim=True)

    def deeplift_shap() -> torch.Tensor:
        b, g = setup("deeplift_shap")
        p = defaults("deeplift_shap")
        refs = jittered_references(b, count=p["references"], noise=p["reference_noise"], generator=g)
        return DeepLiftShap(exact).attribute(x, baselines=refs[:, 0], target=target)

    def gradient_shap() -> torch.Tensor:
        b, g = setup("gradient_shap")
        p = defaults("gradient_shap")
        refs, alphas = shap.draw_samples(b, samples=p["samples"], reference_noise=p["reference_noise"], generator=g)
        r = refs[:, 0]
        points = r + alphas[:, 0].view(-1, 1, 1, 1) * (x[0] - r)
        return (_sample_loop(model, points, target) * (x[0] - r)).mean(0, keepdim=True)

    def occlusion() -> torch.Tensor:
        b, _ = setup("occlusion")
        p = defaults("occlusion")
        window, stride = auto_window(*size, p["window"], p["stride"])
        return Occlusion(model).attribute(
            x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=b, target=target
        )

    def lrp_reference() -> torch.Tensor:
        # zennit's own attributor with the default composite on the reference copy's inner
        # network (normalized input), with the canonizers this model needs (zennit's
        # ResNetCanonizer expects torchvision's blocks, which a bundle holds in hook-safe form)
        p = defaults("lrp")
        with torch.no_grad():
            z = model.normalize(x)
        net = model.net.eval()
        composite = EpsilonPlusFlat(epsilon=p["epsilon"], zero_params="bias", canonizers=canonizers_for(net, z))
        with Gradient(model=net, composite=composite) as attributor:
            with torch.no_grad():
                logits = net(z)
            start = torch.zeros_like(logits).scatter_(1, target.view(-1, 1), logits.gather(1, target.view(-1, 1)))
            return attributor(z, start)[1]

    def deeplift() -> torch.Tensor:
        b, _ = setup("deeplift")
        return DeepLift(exact).attribute(x, baselines=b, target=target)

    def torchcam(extractor: type) -> Reference:
        def run() -> torch.Tensor:
            # torchcam's raw map (its ReLU, not normalized), upsampled as ours are
            leaf = x.detach().requires_grad_(True)
            with extractor(model, target_layer=ref.cam_layer, input_shape=tuple(x.shape[1:])) as extract:
                scores = model(leaf)
                raw = extract(class_idx=target.tolist(), scores=scores, normalized=False)[0].detach()
            return F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False).expand(
                -1, 3, -1, -1
            )

        return run

    def gradcam_pp() -> torch.Tensor:
        # eq. 19 of the paper written out over captum's layer gradients (torchcam 0.5.0's GradCAMpp
        # skips the division by its denominator, so it is no reference)
        grads, acts = compute_layer_gradients_and_eval(model, layer, x, target_ind=target)
        g, a = grads[0].detach(), acts[0].detach()
        denominator = 2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3
        alpha = torch.where(denominator != 0, g**2 / denominator, torch.zeros_like(g))
        weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
        raw = torch.relu((weights * a).sum(dim=1, keepdim=True))
        return F.interpolate(raw, size=size, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)

    return {
        "saliency": lambda: Saliency(model).attribute(x, target=target, abs=True),
        "input_x_gradient": lambda: InputXGradient(model).attribute(x, target=target),
        "deconvolution": lambda: Deconvolution(model).attribute(x, target=target),
        "guided_backprop": lambda: GuidedBackprop(model).attribute(x, target=target),
        "gradcam": gradcam,
        "guided_gradcam": lambda: GuidedGradCam(model, layer).attribute(x, target=target, interpolate_mode="bilinear"),
        "integrated_gradients": integrated,
        "smoothgrad": smooth,
        "deeplift": deeplift,
        "deeplift_shap": deeplift_shap,
        "gradient_shap": gradient_shap,
        "occlusion": occlusion,
        "lrp": lrp_reference,
        "gradcam_pp": gradcam_pp,
        "xgradcam": torchcam(XGradCAM),
        "layercam": torchcam(LayerCAM),
        "scorecam": torchcam(ScoreCAM),
    }


def _equal(ours: torch.Tensor, reference: torch.Tensor) -> bool:
    scale = float(reference.abs().max()) or 1.0
    return bool(torch.allclose(ours, reference.to(ours.dtype), rtol=0.0, atol=TOLERANCE * scale))


def time_to_tiles(bundle: ModelBundle, image: np.ndarray, names: list[str]) -> dict[str, Any]:
    """What a person waits for on the Explain page after choosing an image: the estimate (the
    model's pass time, measured once per model: timed here as for a model never used before),
    then one ``explain`` call handing over each method as it finishes. Times from the choice."""
    cost.forget_pass_times()  # a model used for the first time
    single = [n for n in names if get_method(n).single_pass]
    arrived: dict[str, float] = {}
    synchronize(bundle.device)
    start = time.perf_counter()
    quick = cost.estimate(bundle, names).quick()
    estimated = time.perf_counter() - start

    def handed(part) -> None:
        arrived[part.methods[0].method] = time.perf_counter() - start

    explain(bundle, image, methods=names, on_result=handed)
    return {
        "estimate_s": estimated,
        "first_tile_s": min(arrived.values()),
        "single_pass_tiles_s": max(arrived[n] for n in single),
        "single_pass_methods": single,
        "automatic_methods": quick,
        "automatic_tiles_s": max(arrived[n] for n in quick) if quick else 0.0,
        "all_tiles_s": max(arrived.values()),
        "order": sorted(arrived, key=arrived.__getitem__),
    }


def occlusion_inference_copy(bundle: ModelBundle, x: torch.Tensor, target: torch.Tensor, *, repeats: int) -> dict:
    """Occlusion (default settings) with its forward passes through the inference copy and through the
    plain model (:func:`~xaicore.models.inference.plain_forwards`), same image; ``first_call_s``: the
    first call with the copy, including making and checking it."""

    def run() -> None:
        attribute(bundle, x, method="occlusion", target=target)

    with inference.plain_forwards():
        plain_s = best_time(run, device=bundle.device, repeats=repeats, warmup=0)
    inference.clear_inference_copies()  # the first call makes the copy
    first_s = best_time(run, device=bundle.device, repeats=1, warmup=0)
    copy_s = best_time(run, device=bundle.device, repeats=repeats, warmup=0)
    return {
        "copy_s": copy_s,
        "plain_s": plain_s,
        "speedup": plain_s / copy_s,
        "first_call_s": first_s,
        "copy_used": inference.cached_inference_copy(bundle.model) is not None,
        "threads": torch.get_num_threads(),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    bundle = ctx.bundle
    image = bench_image(bundle)
    x = bundle.to_input(image)
    target = bundle.logits(x).argmax(1)
    unit = pass_time(bundle, batch=1)["forward_backward_s"]
    ref_bundle = bundle.private_copy()
    plain = references(ref_bundle, x.clone(), target.clone())
    names = bundle.available_methods()

    methods: dict[str, Any] = {}
    for name in names:
        seconds = best_time(
            partial(attribute, bundle, x, method=name, target=target), device=ctx.device, repeats=ctx.repeats
        )
        ref_seconds = best_time(plain[name], device=ctx.device, repeats=ctx.repeats)
        entry: dict[str, Any] = {
            "s": seconds,
            "passes": seconds / unit,
            "reference_s": ref_seconds,
            "speedup": ref_seconds / seconds,
        }
        ours, ref = attribute(bundle, x, method=name, target=target).values, plain[name]().detach()
        entry["equal"] = _equal(ours, ref)
        entry["max_difference_rel_to_max"] = float((ours - ref.to(ours.dtype)).abs().max() / (ref.abs().max() or 1.0))
        methods[name] = entry

    all_s = best_time(lambda: explain(bundle, image, methods=names), device=ctx.device, repeats=ctx.repeats)
    ref_all = sum(m["reference_s"] for m in methods.values())
    batch = max(1, ctx.batch)
    floor_b = pass_time(bundle, batch=batch)["forward_backward_s"]
    xb = x.expand(batch, -1, -1, -1).contiguous()
    tb = target.expand(batch).contiguous()
    batched_s = {
        name: best_time(partial(attribute, bundle, xb, method=name, target=tb), device=ctx.device, repeats=ctx.repeats)
        for name in single_pass_methods()
        if name in names
    }
    batched = {name: s / floor_b for name, s in batched_s.items()}
    # a single-pass method's work in passes: one per backward rule it needs (Guided Grad-CAM: two)
    units = {name: cost.method_units(name, None, (x.shape[-2], x.shape[-1])) for name in batched}
    per_image = (ctx.floor or {}).get("forward_backward_s_per_image")
    saturating = {name: s / (batch * per_image) for name, s in batched_s.items()} if per_image else {}
    # a new image each time (nothing cached), the model's first use each time
    tiles = min(
        (
            time_to_tiles(bundle, generate(1, seed=IMAGE_SEED + r, size=image.shape[0])[0][0], names)
            for r in range(1, 1 + max(1, ctx.repeats))
        ),
        key=lambda t: t["single_pass_tiles_s"],
    )
    no_occlusion = [n for n in names if n != "occlusion"]
    no_occlusion_s = best_time(
        lambda: explain(bundle, image, methods=no_occlusion), device=ctx.device, repeats=ctx.repeats
    )
    return {
        "image": f"{x.shape[-2]}x{x.shape[-1]}",
        "pass_s": unit,
        "methods": methods,
        "all_methods_s": all_s,
        "all_methods_passes": all_s / unit,
        "reference_all_s": ref_all,
        "speedup_all": ref_all / all_s,
        "all_methods_but_occlusion_s": no_occlusion_s,
        "occlusion_inference_copy": occlusion_inference_copy(bundle, x, target, repeats=ctx.repeats)
        if "occlusion" in names
        else {},
        "time_to_tiles": tiles,
        f"single_pass_floor_units_batch_{batch}": batched,
        f"single_pass_saturating_floor_units_batch_{batch}": saturating,
        "targets": _gpu_targets(all_s, no_occlusion_s, saturating, units)
        if ctx.gpu
        else {
            f"all_methods_within_{TARGET_ALL_S:g}s": all_s <= TARGET_ALL_S,
            f"single_pass_tiles_within_{TARGET_SINGLE_PASS_TILES_S:g}s": tiles["single_pass_tiles_s"]
            <= TARGET_SINGLE_PASS_TILES_S,
            f"single_pass_within_{TARGET_SINGLE_PASS_UNITS:g}_passes": {
                n: methods[n]["passes"] <= TARGET_SINGLE_PASS_UNITS * units[n] for n in batched
            },
        },
    }


def _gpu_targets(
    all_s: float, no_occlusion_s: float, saturating: dict[str, float], units: dict[str, float]
) -> dict[str, Any]:
    """The targets for ResNet-50 at 224x224 on an H100 (docs/benchmarks.md), per pass a method needs."""
    return {
        "all_maps_within_0.5s": all_s <= 0.5,
        "all_maps_but_occlusion_within_0.15s": no_occlusion_s <= 0.15,
        "single_pass_within_1.3_saturating_floor_units": {n: u <= 1.3 * units[n] for n, u in saturating.items()},
    }


WORKLOAD = Workload(
    "explain",
    "every explanation method on one image: time, in forward+backward passes, shared passes, plain captum reference",
    run,
)
