"""Timing on the model's device: wall time that waits for queued GPU work, and the model's own
pass time (one plain forward+backward pass), the unit in which work is counted
(:mod:`xaicore.explainers.cost`, ``xai bench``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from xaicore.models.bundle import ModelBundle


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], *, device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` after ``warmup`` calls, in seconds."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def pass_time(bundle: ModelBundle, *, batch: int = 1, repeats: int = 5, forward: bool = True) -> dict[str, float]:
    """Time of one plain forward+backward pass and (unless ``forward=False``) one forward pass at
    ``batch`` images, the best of ``repeats`` after one warm-up."""
    device = bundle.device
    h, w = bundle.input_size
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)  # global RNG untouched
    model = bundle.model

    def fwd_bwd() -> None:
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out[:, 0].sum().backward(inputs=[xi])

    @torch.no_grad()
    def fwd() -> None:
        model(x)

    with bundle.lock:
        found = {"forward_backward_s": best_time(fwd_bwd, device=device, repeats=repeats), "batch": batch}
        if forward:
            found["forward_s"] = best_time(fwd, device=device, repeats=repeats)
        return found
