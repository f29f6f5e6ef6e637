"""``xai bench faithfulness``: insertion and deletion curves against the one-step-at-a-time loop.

Workload: both curves (1 % steps, all pixels, black background) for every single-pass method
available on the model, for one generated image, computed by
:func:`xaicore.faithfulness.insertion_deletion` (all masked images of all methods in
memory-bounded batches). The plain reference (:func:`step_loop_curves`) does what a
straightforward script does: a NumPy argsort per map, then for every step one masked image,
one forward pass of one image, and one probability read back to the host. Both run in the same
process on the same attributions; the figures say whether they agree within 1e-5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xaicore.bench.common import BenchContext, Workload, best_time
from xaicore.faithfulness import curve_steps, insertion_deletion, make_background
from xaicore.models.bundle import ModelBundle

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
    curves = {"insertion": [], "deletion": []}
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


def single_pass_attributions(bundle: ModelBundle, inputs: torch.Tensor, target: int) -> dict[str, np.ndarray]:
    """Attributions (1, 3, H, W) of every single-pass method available on ``bundle``."""
    from xaicore.explainers.api import attribute
    from xaicore.explainers.registry import get_method, list_methods

    names = [m for m in list_methods() if get_method(m).single_pass and m not in bundle.unavailable]
    targets = torch.tensor([target], device=inputs.device)
    return {
        name: attribute(bundle, inputs, method=name, target=targets).values.detach().cpu().numpy() for name in names
    }


def _run(ctx: BenchContext) -> dict[str, Any]:
    from xaicore.data.shapes import MIN_SIZE, generate

    bundle = ctx.bundle
    images, _ = generate(1, seed=IMAGE_SEED, size=max(MIN_SIZE, *bundle.input_size))
    inputs = bundle.to_input(images)
    target = int(bundle.logits(inputs).argmax(dim=1)[0])
    maps = single_pass_attributions(bundle, inputs, target)
    first: Mapping[str, np.ndarray] = {next(iter(maps)): next(iter(maps.values()))}

    def batched(which: Mapping[str, np.ndarray]):
        return insertion_deletion(
            bundle, inputs, which, target=target, step_fraction=STEP_FRACTION, random_control=False
        )

    result = batched(maps)
    batched_s = best_time(lambda: batched(maps), device=ctx.device, repeats=ctx.repeats)
    one_method_s = best_time(lambda: batched(first), device=ctx.device, repeats=ctx.repeats)
    bg = make_background("black", inputs)[0]
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def loop() -> None:
        for name, attr in maps.items():
            reference[name] = step_loop_curves(
                bundle, inputs[0], attr[0], target=target, step_fraction=STEP_FRACTION, background=bg
            )

    loop_s = best_time(loop, device=ctx.device, repeats=1, warmup=0)
    worst = max(
        float(max(np.abs(result.get(name).insertion[0] - ins).max(), np.abs(result.get(name).deletion[0] - dele).max()))
        for name, (ins, dele) in reference.items()
    )
    forwards = len(maps) * 2 * len(result.steps)
    floor_s = _forward_floor(bundle, batch=result.params["batch_size"], repeats=ctx.repeats) * forwards
    speedup = loop_s / batched_s
    return {
        "methods": ", ".join(maps),
        "curve_points": len(result.steps),
        "masked_images": forwards,
        "batch_size": result.params["batch_size"],
        "batched_all_methods_s": batched_s,
        "batched_one_method_s": one_method_s,
        "step_loop_all_methods_s": loop_s,
        "speedup_vs_loop": speedup,
        "floor_s (forward-only, same number of images)": floor_s,
        "cost_in_floor_units": batched_s / floor_s,
        "max_abs_difference": worst,
        "equal": worst <= TOLERANCE,
        "targets": {
            f"speedup >= {TARGET_SPEEDUP:g}x": speedup >= TARGET_SPEEDUP,
            f"one method <= {TARGET_ONE_METHOD_S:g} s": one_method_s <= TARGET_ONE_METHOD_S,
        },
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
    description="insertion and deletion curves of all single-pass methods on one image vs the one-step loop",
    run=_run,
)
