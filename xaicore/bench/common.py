"""Shared pieces of the benchmark suite: timing, the model's floor, and the workload registry.

A workload module defines ``WORKLOAD = Workload(name, description, run)`` where
``run(ctx: BenchContext) -> dict`` returns a JSON-ready dict of figures (seconds, ratios,
``equal`` flags). ``xai bench NAME`` prints them; ``--out`` writes them all as JSON.
"""

from __future__ import annotations

import importlib
import pkgutil
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from xaicore.models.bundle import ModelBundle
from xaicore.runtime.timing import best_time, pass_time, synchronize

__all__ = ["BenchContext", "Workload", "best_time", "pass_time", "synchronize", "saturating_floor", "workloads"]


@dataclass(frozen=True)
class BenchContext:
    bundle: ModelBundle
    device: torch.device
    batch: int
    repeats: int = 3
    reference_seeds: int | None = None  # sanity: run the plain reference on the first K seeds only
    floor: dict[str, float] | None = None  # saturating_floor() of the model, when measured

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    run: Callable[[BenchContext], dict[str, Any]]


def saturating_floor(bundle: ModelBundle, *, repeats: int = 3) -> dict[str, float]:
    """The model's own speed: per-image seconds of forward+backward and of forward at the
    batch where throughput stops improving (by less than 10 % from one batch to the next,
    trying 1, 4, 16, 64 and, on a GPU, 128 and 256 images)."""
    batches = (1, 4, 16, 64, 128, 256) if bundle.device.type == "cuda" else (1, 4, 16, 64)

    def per_image(batch: int) -> dict[str, float]:
        t = pass_time(bundle, batch=batch, repeats=repeats)
        return {
            "forward_backward_s_per_image": t["forward_backward_s"] / batch,
            "forward_s_per_image": t["forward_s"] / batch,
            "batch": batch,
        }

    best = per_image(batches[0])
    for batch in batches[1:]:
        per = per_image(batch)
        improved = per["forward_backward_s_per_image"] < best["forward_backward_s_per_image"]
        saturated = per["forward_backward_s_per_image"] > 0.9 * best["forward_backward_s_per_image"]
        if improved:
            best = per
        if saturated:
            break
    return best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def workloads() -> dict[str, Workload]:
    """All workload modules of :mod:`xaicore.bench`, by name."""
    import xaicore.bench as package

    found: dict[str, Workload] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name == "common":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        workload = getattr(module, "WORKLOAD", None)
        if isinstance(workload, Workload):
            found[workload.name] = workload
    return found
