"""``xai bench gax``: GAX steps per second, one image and a batch, against plain per-image loops.

Figures (all in the same run, on the bench's model and device):

- ``single``: :func:`~xaicore.confidence.gax.run_gax` on one image for :data:`STEPS` steps (the target CO is
  unreachable, so every step runs): seconds and steps per second; and the plain reference loop
  (``torch.optim.Adam``, a stopping check with a host sync at every step) on the same image.
- ``batch``: one batched run of ``ctx.batch`` images for :data:`BATCH_STEPS` steps against
  ``ctx.batch`` single runs one after the other (run_gax and the plain loop): image-steps per
  second and the speed-up of the batch. Both shapes are warmed up first; with ``--repeats``
  the single, batched and single-runs figures are each the best of that many runs.
- ``batch_full``: the batch for :data:`STEPS` steps with an unreachable target.
- ``to_target``: the default target (CO 48) and step cap (300), the batch against the
  single runs, and the distribution of the steps at which the images stopped.
- peak memory (CUDA: allocator peak; CPU: the process's peak resident set) and the bytes of
  history per step and image.

The plain loop of the ``batch`` figure and the single runs of ``to_target`` cover at most
:data:`PLAIN_LOOP_IMAGES` images; the plain loop's time is scaled to the batch (per-image
loops take the same time per image) and says how many images it timed.

Compare the per-step times with the floor that ``xai bench`` prints first (one forward and
backward pass of the model at batch 1 and at the bench batch): on a CPU the model's own
cost grows almost linearly with the batch, which bounds what batching can gain.
"""

from __future__ import annotations

import math
import resource
import time
from functools import partial

import numpy as np
import torch

from xaicore.bench.common import BenchContext, Workload, best_time, synchronize
from xaicore.confidence.co_ax import kappa, similarity_term
from xaicore.confidence.gax import run_gax
from xaicore.models.bundle import ModelBundle

STEPS = 300
BATCH_STEPS = 50
TARGET_CO = 48.0
TARGET_STEPS = 300
PLAIN_LOOP_IMAGES = 16  # the slow plain loop (and the single runs to the target) time at most this many images


def plain_gax(
    bundle: ModelBundle,
    image: torch.Tensor,
    *,
    target: int,
    target_co: float,
    max_steps: int,
    lr: float = 0.1,
    l_s: float = 100.0,
    eps: float = 1e-4,
) -> int:
    """The obvious one-image GAX loop with ``torch.optim.Adam``; returns the step it stopped at."""
    x = image.unsqueeze(0)
    with bundle.lock:
        with torch.no_grad():
            clean = bundle.model(x)
        weights = kappa(target, num_classes=clean.shape[1], batch=1, dtype=x.dtype, device=x.device)
        w = torch.ones_like(x, requires_grad=True)
        b = torch.full_like(x, 0.01, requires_grad=True)
        optimizer = torch.optim.Adam([w, b], lr=lr, betas=(0.9, 0.999))
        for step in range(max_steps + 1):
            optimizer.zero_grad()
            h = torch.tanh(w * x + b)
            co = ((bundle.model(x + h) - clean) * weights).sum()
            if co.item() >= target_co or step == max_steps:
                return step
            loss = -co + l_s / similarity_term(h, x, eps=eps).sum()
            loss.backward(inputs=[w, b])
            optimizer.step()
    return max_steps


def _timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _peak_memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"cuda_peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _images(bundle: ModelBundle, n: int) -> torch.Tensor:
    """Generated shapes for the default model's classes, else seeded noise."""
    try:
        from xaicore.data import shapes

        if tuple(shapes.CLASSES) == tuple(bundle.labels) and tuple(bundle.input_size) == (64, 64):
            arrays, _ = shapes.generate(n, seed=0, size=64)
            return bundle.to_input(arrays)
    except ImportError:
        pass
    h, w = bundle.input_size
    return bundle.to_input(np.random.default_rng(0).random((n, h, w, 3), dtype=np.float32))


def run(ctx: BenchContext) -> dict:
    bundle, device, n = ctx.bundle, ctx.device, ctx.batch
    x = _images(bundle, n)
    targets = bundle.logits(x).argmax(dim=1).tolist()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for warm in (x[:1], x):  # warm-up: oneDNN makes its kernels per shape, at their first use
        run_gax(bundle, warm, target_co=math.inf, max_steps=3)

    def best(fn) -> float:  # warmed up above
        return best_time(fn, device=device, repeats=ctx.repeats, warmup=0)

    single_s = best(lambda: run_gax(bundle, x[:1], target_co=math.inf, max_steps=STEPS))
    plain_single_s = _timed(
        lambda: plain_gax(bundle, x[0], target=targets[0], target_co=math.inf, max_steps=STEPS), device
    )
    batch_s = best(lambda: run_gax(bundle, x, target_co=math.inf, max_steps=BATCH_STEPS))
    loop_s = best(lambda: [run_gax(bundle, x[i : i + 1], target_co=math.inf, max_steps=BATCH_STEPS) for i in range(n)])
    few = min(n, PLAIN_LOOP_IMAGES)
    plain_loop_s = (
        _timed(
            lambda: [
                plain_gax(bundle, x[i], target=targets[i], target_co=math.inf, max_steps=BATCH_STEPS)
                for i in range(few)
            ],
            device,
        )
        * n
        / few
    )
    full_s = _timed(lambda: run_gax(bundle, x, target_co=math.inf, max_steps=STEPS), device)

    reached: dict = {}
    gax_to_target = partial(run_gax, target_co=TARGET_CO, max_steps=TARGET_STEPS)
    batch_target_s = _timed(lambda: reached.setdefault("batch", gax_to_target(bundle, x)), device)
    singles_target_s = _timed(
        lambda: reached.setdefault("singles", [gax_to_target(bundle, x[i : i + 1])[0] for i in range(few)]),
        device,
    )
    steps = np.array([r.steps for r in reached["batch"].images])
    hit = np.array([r.reached for r in reached["batch"].images])
    # float32 BLAS kernels may differ in the last bits between a batch and one image, which can
    # move an image's stop step when its CO score passes the target within that noise
    single_steps = np.array([r.steps for r in reached["singles"]])
    steps_few = steps[:few]
    history = reached["batch"][0].history
    return {
        "single": {
            "steps": STEPS,
            "seconds": single_s,
            "steps_per_s": STEPS / single_s,
            "plain_loop_seconds": plain_single_s,
            "plain_loop_steps_per_s": STEPS / plain_single_s,
            "within_3_s": single_s <= 3.0,
            **({"within_2_s_gpu": single_s <= 2.0} if device.type == "cuda" else {}),
        },
        "batch": {
            "images": n,
            "steps": BATCH_STEPS,
            "batched_seconds": batch_s,
            "batched_image_steps_per_s": n * BATCH_STEPS / batch_s,
            "single_runs_seconds": loop_s,
            "single_runs_image_steps_per_s": n * BATCH_STEPS / loop_s,
            "plain_loop_seconds": plain_loop_s,
            "plain_loop_images_timed": few,
            "speedup_vs_single_runs": loop_s / batch_s,
            "speedup_vs_plain_loop": plain_loop_s / batch_s,
            "at_least_3x": loop_s / batch_s >= 3.0,
        },
        "batch_full": {
            "images": n,
            "steps": STEPS,
            "seconds": full_s,
            "image_steps_per_s": n * STEPS / full_s,
            **({"64_images_within_10_s": full_s <= 10.0} if device.type == "cuda" and n >= 64 else {}),
        },
        "to_target": {
            "target_co": reached["batch"].target_co,
            "max_steps": reached["batch"].max_steps,
            "batched_seconds": batch_target_s,
            "single_runs_seconds_first_images": singles_target_s,
            "reached": f"{int(hit.sum())} of {n}",
            "steps_min_median_max": f"{int(steps.min())} / {float(np.median(steps)):g} / {int(steps.max())}",
            "single_runs_compared": few,
            "images_whose_stop_step_differs_batched_vs_single": int(np.sum(steps_few != single_steps)),
            "largest_stop_step_difference": int(np.max(np.abs(steps_few - single_steps))),
        },
        "memory": {
            **_peak_memory(device),
            "history_bytes_per_step_per_image": history.bytes_per_step,
            "history_dtype": reached["batch"].history_dtype,
        },
    }


WORKLOAD = Workload(name="gax", description="GAX steps per second: one image, a batch, plain loops", run=run)
