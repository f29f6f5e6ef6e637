"""Drawing finished sanity-check and class-discriminativeness results (no computation here).

Heatmap strips are drawn from the normalized maps the results keep; charts are Plotly figures
built from the stored values. Used by ``pages/sanity.py`` and ``pages/classes.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from dashboard import wording
from xaicore.checks.discriminative import ClassesResult
from xaicore.checks.discriminative_scenes import ScenesResult
from xaicore.checks.sanity import SanityResult
from xaicore.render import heatmaps

VIEWS = {"all": "All (signed)", "positive": "Positive only"}
METRIC_TITLES = {
    "ssim_abs": "SSIM, absolute maps",
    "ssim_signed": "SSIM, signed maps",
    "spearman_abs": "Spearman, absolute maps",
    "spearman_signed": "Spearman, signed maps",
}
COLORS = qualitative.Plotly


def map_tile(
    m: np.ndarray,
    *,
    view: str,
    image: np.ndarray | None = None,
    alpha: float = 0.8,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
    clip: float | None = None,
) -> tuple[np.ndarray, str]:
    """One normalized 2-D map as uint8 RGB in a view (xaicore.render.heatmaps.render_map: clipped at
    ``clip``, or at the ``percentile``-th percentile of its magnitudes), and its status note.

    A degenerate view (all zero, NaN or inf) becomes the neutral grey tile with its status
    ("no signal", "numerical error") instead of a stretched picture.
    """
    shared = clip if clip is not None and np.isfinite(clip) else None
    rendered = heatmaps.render_map(m, mode=view, image=image, alpha=alpha, percentile=percentile, clip=shared)
    return rendered.rgb, rendered.caption


def colorbar(
    clip: float, *, view: str, alpha: float = 0.8, width: int = 320, over_image: bool = True
) -> np.ndarray | None:
    """The colour bar of a strip or row drawn at ``clip`` (``None`` when nothing had a scale),
    its colours as drawn over the image or, with ``over_image=False``, over white."""
    if not (np.isfinite(clip) and clip > 0):
        return None
    return heatmaps.colorbar(clip, mode=view, width=width, alpha=alpha, over_white=not over_image)


def colorbar_caption(clip: float, *, view: str, percentile: float = heatmaps.DEFAULT_PERCENTILE) -> str:
    """What a strip's colour bar shows, in words."""
    left, middle, right = heatmaps.colorbar_labels(clip, mode=view)
    meaning = heatmaps.COLOR_MEANING if view == "all" else "darker red: stronger evidence for the class"
    return (
        f"One scale for the row: {left} … {middle} … {right} (normalized map units, the {percentile:g}th "
        f"percentile of |map| over the row); {meaning}."
    )


def strip_clip(
    result: SanityResult,
    *,
    method: str,
    mode: str,
    view: str,
    image_index: int = 0,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
) -> float:
    """The one clip value of a strip: the percentile over all its maps (NaN if none has signal)."""
    if not result.map_seeds:
        return float("nan")
    j = result.methods.index(method)
    i = result.modes.index(mode)
    maps = [result.trained_maps["signed"][j, image_index]]
    maps += [result.maps["signed"][i, j, 0, t, image_index] for t in range(len(result.steps))]
    return heatmaps.shared_clip(maps, mode=view, percentile=percentile)


def short_layer(name: str) -> str:
    """A layer name without the pixel-space wrapper's ``net.`` prefix."""
    return name.removeprefix("net.")


def strip(
    result: SanityResult,
    *,
    method: str,
    mode: str,
    view: str,
    image_index: int = 0,
    alpha: float = 0.8,
    over_image: bool = False,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
) -> list[tuple[np.ndarray, str]]:
    """The map of the model as loaded (:func:`reference_label`) then one map per randomization
    step (first kept seed), with captions, all drawn on one scale (:func:`strip_clip`) so that a
    fading map shows as fading."""
    if not result.map_seeds:
        return []
    j = result.methods.index(method)
    i = result.modes.index(mode)
    image = result.image[image_index] if over_image else None
    clip = strip_clip(result, method=method, mode=mode, view=view, image_index=image_index, percentile=percentile)
    tiles = []
    picture, note = map_tile(
        result.trained_maps["signed"][j, image_index], view=view, image=image, alpha=alpha, clip=clip
    )
    tiles.append((picture, reference_label(result.provenance.model_name) + (f" ({note})" if note else "")))
    ssim = result.values["ssim_abs"][i, j, 0, :, image_index]
    for t, layer in enumerate(result.steps):
        picture, note = map_tile(
            result.maps["signed"][i, j, 0, t, image_index], view=view, image=image, alpha=alpha, clip=clip
        )
        prefix = "down to " if mode == "cascading" and t > 0 else ""
        caption = f"{prefix}{short_layer(layer)} · SSIM {ssim[t]:.2f}" + (f" ({note})" if note else "")
        tiles.append((picture, caption))
    return tiles


RANDOM_WEIGHTS = "random weights"


def reference_label(model_name: str) -> str:
    """What to call the model before randomization: ``"trained"``, or ``"as loaded (random weights)"``
    for a model that never had trained weights (its display name says "random weights")."""
    return f"as loaded ({RANDOM_WEIGHTS})" if RANDOM_WEIGHTS in model_name.lower() else "trained"


def reference_model(model_name: str) -> str:
    """``"the trained model"`` or ``"the model as loaded (random weights)"``, for sentences."""
    label = reference_label(model_name)
    return "the trained model" if label == "trained" else f"the model {label}"


def band_name(n_seeds: int) -> str:
    """Legend and hover name of the spread band: ``"±1 std over 5 seeds"``."""
    return f"±1 std over {wording.plural(n_seeds, 'seed')}"


def similarity_figure(result: SanityResult, *, mode: str, metric: str) -> go.Figure:
    """Mean ``metric`` against the randomized layer, one line per method.

    Around each line, a filled band of +-1 standard deviation over the seeds (named
    :func:`band_name` in the legend and on hover) and each seed's own value as small points,
    both in the line's colour. With one seed there is no spread: no band, no extra points.
    """
    fig = go.Figure()
    x = [short_layer(layer) for layer in result.steps]
    n_seeds = len(result.seeds)
    spread = band_name(n_seeds)
    for j, (method, title) in enumerate(zip(result.methods, result.titles, strict=True)):
        color = COLORS[j % len(COLORS)]
        mean = result.mean(metric, mode=mode, method=method)
        std = result.std(metric, mode=mode, method=method)
        if n_seeds > 1:
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=np.concatenate([mean + std, (mean - std)[::-1]]).tolist(),
                    fill="toself",
                    fillcolor=_transparent(color, 0.25),
                    line={"width": 1, "color": _transparent(color, 0.6)},
                    mode="lines",
                    hoveron="fills",
                    hoverinfo="text",
                    text=f"{title}: {spread}",
                    legendgroup=method,
                    name=f"{title}: {spread}",
                )
            )
            values = result.per_seed(metric, mode=mode, method=method)
            fig.add_trace(
                go.Scatter(
                    x=[layer for _ in range(n_seeds) for layer in x],
                    y=values.reshape(-1).tolist(),
                    mode="markers",
                    marker={"color": color, "size": 5, "opacity": 0.55},
                    legendgroup=method,
                    showlegend=False,
                    name=f"{title}: each seed",
                    customdata=[seed for seed in result.seeds for _ in x],
                    hovertemplate=f"{title}<br>%{{x}}<br>seed %{{customdata}}: %{{y:.3f}}<extra></extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean.tolist(),
                mode="lines+markers",
                name=title if n_seeds > 1 else f"{title} (1 seed)",
                legendgroup=method,
                line={"color": color, "width": 2.5},
                marker={"color": color, "size": 8},
                customdata=std.tolist(),
                hovertemplate=(
                    f"{title}<br>%{{x}}<br>mean %{{y:.3f}} ± %{{customdata:.3f}} "
                    f"(1 std, {wording.plural(n_seeds, 'seed')})"
                    "<extra></extra>"
                ),
            )
        )
    if metric == "ssim_abs":
        threshold = float(result.params["threshold"])
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey", annotation_text=f"fail threshold {threshold:g}")
    order = "from the output layer down, cumulatively" if mode == "cascading" else "one layer at a time"
    fig.update_layout(
        title=(
            f"{METRIC_TITLES[metric]} vs {reference_model(result.provenance.model_name)} "
            f"({mode}: {order}; {wording.plural(n_seeds, 'seed')})"
        ),
        xaxis_title="randomized layer",
        yaxis_title=METRIC_TITLES[metric].split(",")[0],
        yaxis_range=[min(-0.05, _lowest(result, metric, mode) - 0.05), 1.05],
        legend_title="method (line: mean; band and points: the seeds)" if n_seeds > 1 else "method",
        margin={"t": 60},
    )
    return fig


def _lowest(result: SanityResult, metric: str, mode: str) -> float:
    lows = [
        min(
            np.nanmin(result.mean(metric, mode=mode, method=m) - result.std(metric, mode=mode, method=m)),
            np.nanmin(result.per_seed(metric, mode=mode, method=m)),
        )
        for m in result.methods
    ]
    finite = [v for v in lows if np.isfinite(v)]
    return float(min(finite)) if finite else 0.0


def _transparent(color: str, alpha: float = 0.18) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[k : k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def verdict_rows(result: SanityResult) -> list[dict[str, Any]]:
    """One row per method: verdict, SSIM after randomizing the output layer, threshold, reason."""
    return [
        {
            "method": title,
            "verdict": verdict.status,
            "SSIM after output layer": verdict.value,
            "threshold": verdict.threshold,
            "why": verdict.reason.replace("the trained model", reference_model(result.provenance.model_name)),
        }
        for title, verdict in zip(result.titles, result.verdicts, strict=True)
    ]


def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML file of ``fig`` (plotly.js embedded: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()


# ------------------------------------------------------------------ class-discriminativeness


def class_clip(
    result: ClassesResult, *, method: str, view: str, percentile: float = heatmaps.DEFAULT_PERCENTILE
) -> float:
    """The one clip value of a method's class maps (NaN if none has signal)."""
    k = result.methods.index(method)
    return heatmaps.shared_clip(
        [result.maps["signed"][k, c] for c in range(len(result.class_labels))], mode=view, percentile=percentile
    )


def class_tiles(
    result: ClassesResult,
    *,
    method: str,
    view: str,
    alpha: float = 0.8,
    over_image: bool = False,
    percentile: float = heatmaps.DEFAULT_PERCENTILE,
) -> list[tuple[np.ndarray, str]]:
    """The image, then each class's map for ``method`` (over the image on request), with captions,
    on one scale (:func:`class_clip`) so the classes compare."""
    k = result.methods.index(method)
    clip = class_clip(result, method=method, view=view, percentile=percentile)
    tiles = [(heatmaps.to_uint8(result.image), "image")]
    for c, label in enumerate(result.class_labels):
        image = result.image if over_image else None
        picture, note = map_tile(result.maps["signed"][k, c], view=view, image=image, alpha=alpha, clip=clip)
        caption = f"{label} ({result.probabilities[c]:.0%})"
        if result.on_object is not None and np.isfinite(result.on_object[k, c]):
            caption += f" · {result.on_object[k, c]:.0%} on the object"
        tiles.append((picture, caption + (f" · {note}" if note else "")))
    return tiles


def classes_ssim_figure(result: ClassesResult) -> go.Figure:
    """Mean SSIM between the class maps, one bar per method (lower: more class-discriminative)."""
    values = [result.pair_ssim(m) for m in result.methods]
    fig = go.Figure(
        go.Bar(
            x=list(result.titles),
            y=values,
            marker_color=[COLORS[j % len(COLORS)] for j in range(len(values))],
            text=[f"{v:.2f}" for v in values],
            textposition="outside",
        )
    )
    fig.update_layout(
        title=f"SSIM between the maps of {' and '.join(result.class_labels)} (lower: more class-discriminative)",
        yaxis_title="SSIM",
        yaxis_range=[min(0.0, min(values) - 0.05), 1.1],
    )
    return fig


def scenes_rows(aggregate: ScenesResult, single: ClassesResult | None = None) -> list[dict[str, str]]:
    """One row of display text per method, lowest mean first: this image's SSIM (where ``single``
    has the method), the mean over the generated scenes with its 95% interval, and the share of
    scenes on which the method is lowest."""
    rows = []
    for row in aggregate.table():
        ssim = row["ssim"]
        line = {"method": row["title"]}
        if single is not None:
            line["this image"] = f"{single.pair_ssim(row['method']):.2f}" if row["method"] in single.methods else "-"
        line[f"mean over {aggregate.n_scenes} scenes"] = f"{ssim['mean']:.2f}"
        line["95% interval"] = f"{ssim['low']:.2f} to {ssim['high']:.2f}" if ssim["low"] is not None else "-"
        line["lowest on"] = f"{row['lowest_share']:.0%} of scenes"
        rows.append(line)
    return rows


def relevance_figure(result: ClassesResult) -> go.Figure | None:
    """Share of positive relevance on the asked-for object and on the other objects, per method
    and class (``None`` without masks)."""
    if result.on_object is None or result.on_others is None:
        return None
    fig = go.Figure()
    for c, label in enumerate(result.class_labels):
        if not np.isfinite(result.on_object[:, c]).any():
            continue
        fig.add_trace(go.Bar(x=list(result.titles), y=result.on_object[:, c].tolist(), name=f"{label}: on the {label}"))
        fig.add_trace(
            go.Bar(
                x=list(result.titles),
                y=result.on_others[:, c].tolist(),
                name=f"{label}: on the other object",
                marker_pattern_shape="/",
            )
        )
    fig.update_layout(
        barmode="group",
        title="Share of positive relevance on each object, by the class asked for",
        yaxis_title="share of positive relevance",
        yaxis_range=[0, 1],
    )
    return fig
