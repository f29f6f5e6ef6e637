"""``xai bench evaluate``: the data-set evaluation in this process against Ray with 1 and 2 actors.

Four batches of generated images (``--batch`` images each), two single-pass methods, insertion
and deletion curves. For each engine: the wall time of the whole run and images per second; for
Ray also the start of its local instance and of the actor pool (until the first batch is back),
and the steady rate after the first batch, which is what a large set approaches. With GPUs,
Ray's actors share them (one per GPU, or an even share of one) and the rate per GPU is given.
Every engine's rows are checked equal to the local engine's.
"""

from __future__ import annotations

import time
from typing import Any

from xaicore.bench.common import BenchContext, Workload
from xaicore.data.imagesets import generated_test_set
from xaicore.errors import EngineUnavailable
from xaicore.evaluation.ray_engine import RayEngine, ray_session
from xaicore.evaluation.rows import EvalSettings, Evaluation, evaluate, make_settings

METHODS = ("saliency", "gradcam")
BATCHES = 4
ACTOR_COUNTS = (1, 2)
STEP = 0.05


class _Clock:
    """Timestamps of a run's progress: its start and every batch that comes back."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.batches: list[tuple[float, int]] = []  # (time, images done so far)

    def __call__(self, done: int, total: int, message: str) -> None:
        if message.endswith(" done"):
            self.batches.append((time.perf_counter(), done))

    def figures(self, evaluation: Evaluation, n: int, gpus: float) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        out: dict[str, Any] = {"wall_s": wall, "images_per_s": n / wall}
        if len(self.batches) >= 2:
            (first, done_first), (last, done_last) = self.batches[0], self.batches[-1]
            out["first_batch_s"] = first - self.started
            out["steady_images_per_s"] = (done_last - done_first) / max(last - first, 1e-9)
        if gpus:
            out["images_per_s_per_gpu"] = out["images_per_s"] / gpus
        return out


def _run_local(ctx: BenchContext, images: Any, settings: EvalSettings) -> tuple[Evaluation, dict[str, Any]]:
    clock = _Clock()
    evaluation = evaluate(ctx.bundle, images, settings, progress=clock)
    return evaluation, clock.figures(evaluation, settings.n_images, 1.0 if ctx.gpu else 0.0)


def run(ctx: BenchContext) -> dict[str, Any]:
    return measure(ctx, actor_counts=ACTOR_COUNTS)


def measure(ctx: BenchContext, *, actor_counts: tuple[int, ...]) -> dict[str, Any]:
    """The figures of the module docstring, for Ray pools of each size in ``actor_counts``."""
    n = BATCHES * ctx.batch
    images = generated_test_set(n, seed=0)  # 64x64, brought to the model's input like any image
    settings = make_settings(
        ctx.bundle,
        images,
        methods=list(METHODS),
        metrics=["insertion", "deletion"],
        step_fraction=STEP,
        batch_size=ctx.batch,
    )
    local, figures = _run_local(ctx, images, settings)
    out: dict[str, Any] = {"images": n, "methods": ", ".join(METHODS), "local": figures}
    try:
        out.update(_run_ray(ctx, images, settings, local, actor_counts))
    except EngineUnavailable as exc:
        out["ray"] = str(exc)
    return out


def _run_ray(
    ctx: BenchContext, images: Any, settings: EvalSettings, local: Evaluation, actor_counts: tuple[int, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    started = time.perf_counter()
    with ray_session() as ray:
        out["ray_start_s"] = time.perf_counter() - started
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        out["ray_cpus"], out["ray_gpus"] = float(resources.get("CPU", 0.0)), gpus
        for actors in actor_counts:
            share = min(1.0, gpus / actors)  # one GPU each, or an even share of the ones there are
            clock = _Clock()
            evaluation = RayEngine(actors=actors, gpus_per_actor=share)(ctx.bundle, images, settings, progress=clock)
            entry = clock.figures(evaluation, settings.n_images, actors * share)
            entry["rows_equal_local"] = evaluation.rows == local.rows
            out[f"ray_{actors}_actor{'s' if actors > 1 else ''}"] = entry
    return out


WORKLOAD = Workload(
    "evaluate",
    f"data-set evaluation ({BATCHES} batches): local engine vs Ray with 1 and 2 actors",
    run,
)
