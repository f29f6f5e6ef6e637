"""``xai bench faithfulness``: insertion and deletion curves against the one-step-at-a-time loop.

Workload: both curves (1 % steps, all pixels, black background) for one generated image,
computed by :func:`xaicore.metrics.faithfulness.insertion_deletion` (all masked images of all methods in
memory-bounded batches, through the model's inference copy on the CPU). Two figures:

* the headline figure: every single-pass method available on the model, without the random control
  (``batched_all_methods_s``, ``batched_one_method_s`` for the first of them alone, the speed-up
  and the equality check); ``batched_all_methods_first_call_s`` is the same call right after
  the inference copies were forgotten, so it includes making the copy (tracing, freezing,
  checking it against the plain model) - what a fresh ``xai faithfulness`` run pays;
* ``every_method``: every method available on the model (13 on the default model, 12 on the
  torchvision ResNets) plus the random control.

The plain reference (:func:`step_loop_curves`) does what a straightforward script does: a NumPy
argsort per map, then for every step one masked image, one forward pass of one image through
the plain model, and one probability read back to the host. It runs once, over every method and
the random control (its order given to the loop as the map ``-rank``), each method timed on its
own (``step_loop_s_per_method``); the single-pass figure sums its methods' times, so the loop is
not run twice. Both run in the same process on the same attributions; the figures say whether
they agree within 1e-5.

Where the speed-up comes from, measured step by step, is in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xaicore.bench.common import BenchContext, Workload, best_time, synchronize
from xaicore.metrics.faithfulness import RANDOM, curve_steps, insertion_deletion, make_background
from xaicore.models.bundle import ModelBundle
from xaicore.models.inference import clear_inference_copies

IMAGE_SEED = 5
STEP_FRACTION = 0.01
TOLERANCE = 1e-5
TARGET_SPEEDUP = 5.0
TARGET_ONE_METHOD_S = 0.5


def step_loop_curves(
    bundle: ModelBundle,
    image: torch.Tensor,
    attribution: np.ndarray,
    *,
    target: int,
    step_fraction: float = STEP_FRACTION,
    fraction: float = 1.0,
    background: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain reference: insertion and deletion curves of one map, one step at a time.

    ``image`` (3, H, W) on the bundle's device; ``attribution`` (3, H, W) or (H, W).
    Returns the two curves (K,) as float64 arrays.
    """
    _, h, w = image.shape
    relevance = np.asarray(attribution, dtype=np.float64)
    relevance = relevance.sum(axis=0) if relevance.ndim == 3 else relevance
    flat = relevance.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))  # most relevant first, ties by index
    bg = torch.zeros_like(image) if background is None else background
    curves: dict[str, list[float]] = {"insertion": [], "deletion": []}
    for k in curve_steps(h * w, step_fraction=step_fraction, fraction=fraction):
        mask = np.zeros(h * w, dtype=bool)
        mask[order[:k]] = True
        top = torch.from_numpy(mask.reshape(1, h, w)).to(image.device)
        for kind, shown in (("insertion", top), ("deletion", ~top)):
            masked = torch.where(shown, image, bg).unsqueeze(0)
            with torch.no_grad(), bundle.lock:
                probability = torch.softmax(bundle.model(masked), dim=1)[0, target]
            curves[kind].append(float(probability))
    return np.array(curves["insertion"]), np.array(curves["deletion"])


def method_attributions(
    bundle: ModelBundle, inputs: torch.Tensor, target: int, *, single_pass_only: bool = False
) -> dict[str, np.ndarray]:
    """Attributions (1, 3, H, W) of every method available on ``bundle`` (or only the
    single-pass ones), in registry order."""
    from xaicore.explainers.api import attribute
    from xaicore.explainers.registry import get_method

    names = [m for m in bundle.available_methods() if get_method(m).single_pass or not single_pass_only]
    targets = torch.tensor([target], device=inputs.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's notes about hooks on activations
        return {
            name: attribute(bundle, inputs, method=name, target=targets).values.detach().float().cpu().numpy()
            for name in names
        }


def single_pass_attributions(bundle: ModelBundle, inputs: torch.Tensor, target: int) -> dict[str, np.ndarray]:
    """Attributions (1, 3, H, W) of every single-pass method available on ``bundle``."""
    return method_attributions(bundle, inputs, target, single_pass_only=True)


def _run(ctx: BenchContext) -> dict[str, Any]:
    from xaicore.data.shapes import MIN_SIZE, generate
    from xaicore.explainers.registry import get_method

    bundle = ctx.bundle
    images, _ = generate(1, seed=IMAGE_SEED, size=max(MIN_SIZE, *bundle.input_size))
    inputs = bundle.to_input(images)
    target = int(bundle.logits(inputs).argmax(dim=1)[0])
    every = method_attributions(bundle, inputs, target)
    maps = {name: attr for name, attr in every.items() if get_method(name).single_pass}
    first: Mapping[str, np.ndarray] = {next(iter(maps)): next(iter(maps.values()))}

    def batched(which: Mapping[str, np.ndarray], *, control: bool = False):
        return insertion_deletion(
            bundle, inputs, which, target=target, step_fraction=STEP_FRACTION, random_control=control
        )

    clear_inference_copies()  # the first call below pays for making the inference copy
    start = time.perf_counter()
    result = batched(maps)
    synchronize(ctx.device)
    first_call_s = time.perf_counter() - start
    batched_s = best_time(lambda: batched(maps), device=ctx.device, repeats=ctx.repeats)
    one_method_s = best_time(lambda: batched(first), device=ctx.device, repeats=ctx.repeats)
    everything = batched(every, control=True)
    all_batched_s = best_time(lambda: batched(every, control=True), device=ctx.device, repeats=ctx.repeats)

    # The plain reference, run once over every method and the random control (its order given
    # to the loop as the map -rank), each method timed on its own.
    bg = make_background("black", inputs)[0]
    rankings = dict(every)
    rankings[RANDOM] = -everything.get(RANDOM).rank.astype(np.float64)
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loop_s: dict[str, float] = {}
    for name, attr in rankings.items():
        synchronize(ctx.device)
        start = time.perf_counter()
        reference[name] = step_loop_curves(
            bundle, inputs[0], attr[0], target=target, step_fraction=STEP_FRACTION, background=bg
        )
        synchronize(ctx.device)
        loop_s[name] = time.perf_counter() - start

    def worst(res, names) -> float:
        return max(
            float(
                max(
                    np.abs(res.get(n).insertion[0] - reference[n][0]).max(),
                    np.abs(res.get(n).deletion[0] - reference[n][1]).max(),
                )
            )
            for n in names
        )

    single_worst = worst(result, maps)
    all_worst = worst(everything, rankings)
    single_loop_s = sum(loop_s[name] for name in maps)
    all_loop_s = sum(loop_s.values())
    forwards = len(maps) * 2 * len(result.steps)
    floor_s = _forward_floor(bundle, batch=result.params["batch_size"], repeats=ctx.repeats) * forwards
    speedup = single_loop_s / batched_s
    all_speedup = all_loop_s / all_batched_s
    return {
        "methods": ", ".join(maps),
        "curve_points": len(result.steps),
        "masked_images": forwards,
        "batch_size": result.params["batch_size"],
        "inference_copy": result.params["inference_copy"],
        "head_apart": result.params["head_apart"],
        "batched_all_methods_s": batched_s,
        "batched_all_methods_first_call_s (making the inference copy included)": first_call_s,
        "batched_one_method_s": one_method_s,
        "step_loop_all_methods_s": single_loop_s,
        "speedup_vs_loop": speedup,
        "floor_s (forward-only, same number of images)": floor_s,
        "cost_in_floor_units": batched_s / floor_s,
        "max_abs_difference": single_worst,
        "equal": single_worst <= TOLERANCE,
        "targets": {
            f"speedup >= {TARGET_SPEEDUP:g}x": speedup >= TARGET_SPEEDUP,
            f"one method <= {TARGET_ONE_METHOD_S:g} s": one_method_s <= TARGET_ONE_METHOD_S,
        },
        "every_method": {
            "methods": ", ".join(every),
            "rankings (methods + random control)": len(rankings),
            "masked_images": len(rankings) * 2 * len(result.steps),
            "batched_s (with the random control)": all_batched_s,
            "step_loop_s (with the random control)": all_loop_s,
            "speedup_vs_loop": all_speedup,
            "max_abs_difference": all_worst,
            "equal": all_worst <= TOLERANCE,
        },
        "step_loop_s_per_method": loop_s,
    }


def _forward_floor(bundle: ModelBundle, *, batch: int, repeats: int) -> float:
    """Seconds per image of a plain forward pass at ``batch`` images, in the layout the
    workload uses (channels-last)."""
    h, w = bundle.input_size
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(bundle.device)
    x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.no_grad(), bundle.lock:
            bundle.model(x)

    return best_time(forward, device=bundle.device, repeats=repeats) / batch


WORKLOAD = Workload(
    name="faithfulness",
    description=(
        "insertion and deletion curves on one image vs the one-step loop: all single-pass methods, "
        "then every available method with the random control"
    ),
    run=_run,
)
