"""Choosing the compute device, and retrying work with smaller chunks when memory runs out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch

from xaicore.errors import OutOfMemory, ParameterError

T = TypeVar("T")

ENV_VAR = "XAI_DEVICE"


def default_device() -> torch.device:
    """The device xaicore computes on.

    ``XAI_DEVICE`` (``cpu``, ``cuda``, ``cuda:1`` ...) overrides; otherwise CUDA when present,
    else the CPU.
    """
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as exc:
            raise ParameterError(f"{ENV_VAR}={wanted!r} is not a device name; use 'cpu' or 'cuda'.") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError(f"{ENV_VAR}={wanted!r} asks for CUDA, but no CUDA device is available here.")
        return device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error from PyTorch (CUDA or host)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_chunked(
    fn: Callable[[int, int], T],
    total: int,
    *,
    chunk: int,
    combine: Callable[[list[T]], T],
) -> T:
    """Run ``fn(start, stop)`` over ``range(total)`` in chunks, halving the chunk on OOM.

    ``fn`` must be side-effect free per call so a failed chunk can be redone. When a chunk of
    one item still runs out of memory, :class:`OutOfMemory` is raised with a plain message.
    """
    if total <= 0:
        raise ParameterError("Nothing to compute: the number of items must be positive.")
    size = max(1, min(chunk, total))
    parts: list[T] = []
    start = 0
    while start < total:
        stop = min(total, start + size)
        try:
            parts.append(fn(start, stop))
        except Exception as exc:  # only OOM is handled, everything else re-raised
            if not is_oom(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if size == 1:
                raise OutOfMemory(
                    "This computation does not fit in memory even one image at a time. "
                    "Try a smaller model or input size, fewer samples, or the CPU (XAI_DEVICE=cpu)."
                ) from exc
            size = max(1, size // 2)
            continue
        start = stop
    return combine(parts)
