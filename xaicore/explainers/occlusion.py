"""Occlusion (Zeiler and Fergus 2014), batched over all window positions.

A square window slides over the image; at each position the covered pixels (all channels) are
replaced by the baseline and the drop of the class score is recorded. Each pixel gets the
mean drop over the windows that cover it. Window positions start at 0 every ``stride``
pixels, plus one flush with the far edge when the stride does not land there, so every pixel
is covered (captum's Occlusion gives the same numbers whenever the stride lands on the edge).

Windows are separable (a row band times a column band), so perturbed images are built chunk
by chunk and the per-pixel sums are one ``einsum``. The images and their perturbed versions go
through the model in one forward-only job (:func:`xaicore.models.inference.forward_logits`): on
the CPU through the model's checked inference copy.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.errors import ParameterError
from xaicore.explainers.gradients import chunk_size, target_scores
from xaicore.models.inference import forward_logits

WINDOW_FRACTION = 8  # automatic window: 1/8 of the shorter image side


def auto_window(height: int, width: int, window: int, stride: int) -> tuple[int, int]:
    """``window`` and ``stride`` with 0 meaning automatic (1/8 of the side; half the window)."""
    window = window or max(1, min(height, width) // WINDOW_FRACTION)
    stride = stride or max(1, window // 2)
    if window > min(height, width):
        raise ParameterError(f"The occlusion window ({window} px) is larger than the image ({height}x{width}).")
    if stride > window:
        raise ParameterError(
            f"An occlusion stride ({stride} px) larger than the window ({window} px) leaves pixels uncovered; "
            "use a stride of at most the window."
        )
    return window, stride


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, plus one flush with the far edge."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def forward_passes(height: int, width: int, window: int, stride: int) -> int:
    """Forward passes per image: one per patch position, plus the unoccluded image."""
    window, stride = auto_window(height, width, window, stride)
    return len(window_starts(height, window, stride)) * len(window_starts(width, window, stride)) + 1


def _bands(length: int, window: int, stride: int, *, device: torch.device) -> torch.Tensor:
    starts = torch.tensor(window_starts(length, window, stride), device=device)
    pos = torch.arange(length, device=device)
    return ((pos >= starts[:, None]) & (pos < starts[:, None] + window)).float()


def occlusion(
    model: nn.Module,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    window: int,
    stride: int,
) -> torch.Tensor:
    """Occlusion attribution (N, 3, H, W); ``window``/``stride`` 0 means automatic."""
    n, channels, height, width = inputs.shape
    window, stride = auto_window(height, width, window, stride)
    rows = _bands(height, window, stride, device=inputs.device)  # (ny, H)
    cols = _bands(width, window, stride, device=inputs.device)  # (nx, W)
    ny, nx = rows.shape[0], cols.shape[0]

    def perturbed(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop, device=inputs.device)
        p, i = idx // n, idx % n
        mask = (rows[p // nx][:, :, None] * cols[p % nx][:, None, :]).unsqueeze(1)
        return inputs[i] * (1 - mask) + baseline[i] * mask

    def batch(start: int, stop: int) -> torch.Tensor:  # the N images first, then the perturbed ones
        parts = [inputs[start:stop]] if start < n else []
        if stop > n:
            parts.append(perturbed(max(start, n) - n, stop - n))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def score(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return target_scores(logits, target[torch.arange(start, stop, device=inputs.device) % n])

    total = n + ny * nx * n
    values = forward_logits(model, batch, total=total, batch_size=chunk_size(inputs[0]), reduce=score).values
    original, occluded = values[:n], values[n:]
    drop = (original.repeat(ny * nx) - occluded).view(ny, nx, n).permute(2, 0, 1)
    summed = torch.einsum("nij,ih,jw->nhw", drop, rows, cols)
    counts = torch.outer(rows.sum(0), cols.sum(0))
    return (summed / counts).unsqueeze(1).expand(n, channels, height, width).contiguous()
