"""Small helpers that turn finished results into Streamlit elements and download files.

Nothing here computes an explanation: heatmaps are drawn by :mod:`xaicore.heatmaps` from the
stored attributions, so moving a view control never reruns a method.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import streamlit as st

from xaicore import heatmaps
from xaicore.explainers.results import ExplainResult, MethodResult, Prediction


def status_line(result: MethodResult) -> str:
    """One line under a tile: runtime and status, with xaicore's reason when there is one."""
    line = f"{result.runtime_s * 1000:.0f} ms · {result.status.value}"
    if result.reason:
        line += f": {result.reason}"
    if result.delta is not None and np.isfinite(result.delta):
        line += f" · convergence delta {result.delta:.2g}"
    return line


def unavailable_methods(unavailable: dict[str, str]) -> None:
    """List the methods the model cannot run, each with its reason, in a closed expander.

    Pages offer only the available methods; this says why the others are missing. Draws
    nothing when every method is available.
    """
    if not unavailable:
        return
    from xaicore.explainers.registry import get_method

    with st.expander(f"Not available for this model ({len(unavailable)})"):
        for name, reason in unavailable.items():
            st.markdown(f"- **{get_method(name).title}**: {reason}")


def predictions_rows(predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """Table rows of the top predictions: rank, class index, label, probability."""
    return [
        {"rank": rank, "class": p.index, "label": p.label, "probability": float(p.probability)}
        for rank, p in enumerate(predictions, start=1)
    ]


def predictions_table(predictions: Sequence[Prediction]) -> None:
    """The top predictions as a table with probability bars."""
    st.dataframe(
        predictions_rows(predictions),
        hide_index=True,
        column_config={
            "rank": st.column_config.NumberColumn("#", width="small"),
            "class": st.column_config.NumberColumn("Class", width="small"),
            "label": st.column_config.TextColumn("Label"),
            "probability": st.column_config.ProgressColumn("Probability", min_value=0.0, max_value=1.0, format="percent"),
        },
    )


def combine_results(parts: Sequence[ExplainResult]) -> ExplainResult:
    """One result holding every method of ``parts`` (all of one model, image and target)."""
    if not parts:
        raise ValueError("nothing to combine")
    methods = tuple(m for part in parts for m in part.methods)
    return replace(parts[0], methods=methods, total_runtime_s=float(sum(m.runtime_s for m in methods)))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` file holding ``arrays`` by name."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def json_bytes(record: dict[str, Any]) -> bytes:
    """A JSON file of ``record``, indented; NumPy scalars become plain numbers."""
    return json.dumps(record, indent=2, default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A PNG file of an (H, W, 3) image, floats in [0, 1] or uint8."""
    from PIL import Image

    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tile(image: np.ndarray, result: MethodResult, *, view: str, channel: str = "sum", alpha: float) -> tuple[np.ndarray, str]:
    """One method's tile (uint8 RGB) and its status in this view.

    Maps that are all zero, NaN/inf, unavailable or failed get xaicore's neutral grey tile
    and their status ("no signal", "numerical error", ...) instead of a stretched picture;
    so does a view with nothing to show (the positive view of a map with no positive value).
    """
    if result.attribution is None:
        return heatmaps.grey_tile(*image.shape[:2]), heatmaps.STATUS_TEXT.get(result.status, result.status.value)
    rendered = heatmaps.heatmap_tile(result.attribution, mode=view, channel=channel, image=image, alpha=alpha)
    return rendered.rgb, rendered.caption


def grid_png(result: ExplainResult, *, view: str, channel: str = "sum", alpha: float) -> bytes:
    """PNG of the whole grid as shown (xaicore.heatmaps.grid_image over the image)."""
    return png_bytes(heatmaps.grid_image(result, mode=view, channel=channel, overlay_image=True, alpha=alpha))
