"""Small helpers that turn finished results into Streamlit elements and download files.

Nothing here computes an explanation: heatmaps are drawn by :mod:`xaicore.render.heatmaps` from the
stored attributions, so moving a view control never reruns a method.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import streamlit as st

from xaicore.explainers.results import COMPLETENESS_TOLERANCE, ExplainResult, MethodResult, Prediction
from xaicore.render import heatmaps


def status_line(result: MethodResult) -> str:
    """One line under a tile: runtime and status, with xaicore's reason when there is one, and
    the layer a CAM method used."""
    line = f"{result.runtime_s * 1000:.0f} ms · {result.status.value}"
    if result.reason:
        line += f": {result.reason}"
    for text in (completeness_text(result), bias_text(result)):
        if text:
            line += f" · {text}"
    if result.layer:
        line += f" · layer {result.layer}"
    return line


def bias_text(result: MethodResult) -> str:
    """The share of the reference the biases absorbed (LRP with biases included), in words;
    empty when the method did not report it."""
    absorbed = result.details.get("bias_relevance")
    if absorbed is None or not result.expected or not np.isfinite(absorbed):
        return ""
    return f"the biases absorbed {absorbed / result.expected:.1%} of {result.reference}"


def completeness_text(result: MethodResult) -> str:
    """How well the attributions add up to what the method promises, in words, with the
    reference named: ``completeness error 2.3% of f(x) - f(black)``; above 1% it says what that
    means. Empty for a method that promises no such sum."""
    if result.delta is None or not np.isfinite(result.delta):
        return ""
    error = result.relative_error
    if error is None:
        return f"completeness error {result.delta:.2g} ({result.reference} is zero, so the error has no scale)"
    text = f"completeness error {error:.1%} of {result.reference}"
    if result.incomplete and "bias_relevance" in result.details:
        text += ": with biases included, as chosen, the rest went to the biases"
    elif result.incomplete:
        text += (
            f": above {COMPLETENESS_TOLERANCE:.0%}, the attributions do not add up to {result.reference}; "
            "compare their sizes with care"
        )
    return text


def unavailable_methods(unavailable: Mapping[str, str]) -> None:
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
            "probability": st.column_config.ProgressColumn(
                "Probability", min_value=0.0, max_value=1.0, format="percent"
            ),
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
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # mypy matches **arrays against allow_pickle
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


def tile(
    image: np.ndarray,
    result: MethodResult,
    *,
    view: str,
    channel: str = "sum",
    alpha: float,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
    over_image: bool = True,
) -> tuple[np.ndarray, str]:
    """One method's tile (uint8 RGB) and its status in this view.

    Maps that are all zero, NaN/inf, unavailable or failed get xaicore's neutral grey tile
    and their status ("no signal", "numerical error", ...) instead of a stretched picture;
    so does a view with nothing to show (the positive view of a map with no positive value).
    """
    rendered = rendered_tile(
        image, result, view=view, channel=channel, alpha=alpha, percentile=percentile, over_image=over_image
    )
    return rendered.rgb, rendered.caption


def rendered_tile(
    image: np.ndarray,
    result: MethodResult,
    *,
    view: str,
    channel: str = "sum",
    alpha: float,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
    over_image: bool = True,
) -> heatmaps.Tile:
    """Like :func:`tile`, with the clip value the map was drawn at (``heatmaps.Tile``)."""
    if result.attribution is None:
        note = heatmaps.STATUS_TEXT.get(result.status, result.status.value)
        return heatmaps.Tile(
            heatmaps.grey_tile(*image.shape[:2]), result.status, note, percentile=percentile, mode=view
        )
    return heatmaps.heatmap_tile(
        result.attribution,
        mode=view,
        channel=channel,
        image=image if over_image else None,
        alpha=alpha,
        percentile=percentile,
    )


def colorbar_png(rendered: heatmaps.Tile, *, alpha: float, width: int = 320, over_image: bool = True) -> bytes | None:
    """PNG of the colour bar of a rendered map (its clip value in attribution units), or
    ``None`` for a degenerate map, which has no scale."""
    if rendered.status.value != "ok" or not np.isfinite(rendered.clip) or rendered.clip <= 0:
        return None
    return png_bytes(
        heatmaps.colorbar(rendered.clip, mode=rendered.mode, width=width, alpha=alpha, over_white=not over_image)
    )


def colorbar_alt(rendered: heatmaps.Tile) -> str:
    """Text of a colour bar for screen readers and tests: its numbers and the clip rule."""
    return heatmaps.colorbar_text(rendered.clip, mode=rendered.mode, percentile=rendered.percentile)


def legend(view: str, percentile: float) -> str:
    """One line saying how the maps are scaled and what the colours mean."""
    meaning = heatmaps.COLOR_MEANING if view == "all" else "darker red: stronger evidence for the class"
    return (
        f"Colours: {meaning}. Each map is clipped at the {percentile:g}th percentile of its |attribution|; "
        "the bar under a tile gives that value in attribution units (grey tiles: nothing to scale)."
    )


def view_record(
    result: ExplainResult, *, view: str, channel: str, alpha: float, percentile: float, over_image: bool = True
) -> dict[str, Any]:
    """How the maps were drawn, for the JSON record: view settings and each map's clip value."""
    clips: dict[str, float | None] = {}
    for item in result.methods:
        rendered = rendered_tile(
            result.image, item, view=view, channel=channel, alpha=alpha, percentile=percentile, over_image=False
        )
        clips[item.method] = float(rendered.clip) if np.isfinite(rendered.clip) else None
    return {
        "view": view,
        "channel": channel,
        "opacity": float(alpha),
        "over_image": bool(over_image),
        "clip_percentile": float(percentile),
        "clip_rule": "percentile of |view values| (numpy.percentile)",
        "clip_values": clips,
    }


def record_with_view(result: ExplainResult, **view: Any) -> dict[str, Any]:
    """The result's JSON record with a ``view`` section (:func:`view_record`) added."""
    record = dict(result.record())
    record["view"] = view_record(result, **view)
    return record


def grid_png(
    result: ExplainResult,
    *,
    view: str,
    channel: str = "sum",
    alpha: float,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
    over_image: bool = True,
) -> bytes:
    """PNG of the whole grid as shown (xaicore.render.heatmaps.grid_image), colour bars included."""
    return png_bytes(
        heatmaps.grid_image(
            result, mode=view, channel=channel, overlay_image=over_image, alpha=alpha, percentile=percentile
        )
    )


def tile_png(rendered: heatmaps.Tile, *, alpha: float, min_width: int = 320, over_image: bool = True) -> bytes:
    """PNG of one tile as drawn, enlarged (nearest neighbour) to at least ``min_width`` pixels,
    with its colour bar under it when the map has a scale."""
    picture = enlarged(rendered.rgb, min_width=min_width)
    if rendered.status.value == "ok" and np.isfinite(rendered.clip) and rendered.clip > 0:
        bar = heatmaps.colorbar(
            rendered.clip, mode=rendered.mode, width=picture.shape[1], alpha=alpha, over_white=not over_image
        )
        picture = np.concatenate([picture, bar], axis=0)
    return png_bytes(picture)


def enlarged(rgb: np.ndarray, *, min_width: int = 320) -> np.ndarray:
    """An (H, W, 3) uint8 picture repeated pixel by pixel (nearest neighbour) to at least
    ``min_width`` pixels wide, so that a small map stays sharp when shown large."""
    from PIL import Image

    rgb = np.asarray(rgb, dtype=np.uint8)
    factor = max(1, -(-min_width // rgb.shape[1]))
    return np.asarray(
        Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.Resampling.NEAREST)
    )


def npy_bytes(array: np.ndarray) -> bytes:
    """A ``.npy`` file of ``array`` as it is (dtype and shape kept)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()
