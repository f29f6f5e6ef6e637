"""Drawing the Clever-Hans lab: heatmap tiles with the box, the verify table and its chart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from xaicore.clever_hans.measures import Box, Findings
from xaicore.clever_hans.verify import Verification
from xaicore.render import heatmaps

BOX_COLOUR = np.array([255, 200, 0], dtype=np.uint8)
FIGURES: dict[str, str] = {
    "accuracy_iid": "Accuracy, i.i.d.",
    "accuracy_clean": "Accuracy, clean",
    "accuracy_stamped": "Accuracy, stamped",
    "false_class_rate": "Stamped non-hearts called heart",
    "heart_recall_clean": "Recall, clean hearts",
    "flip_rate": "Flip rate",
    "relevance_mass": "Relevance for heart in the box",
}


def tile_with_box(image: np.ndarray, relevance: np.ndarray, box: Box, *, scale: int = 3) -> np.ndarray:
    """The map over the image, enlarged ``scale`` times, with the box outlined."""
    tile = heatmaps.render_map(relevance, mode="all", image=image).rgb
    big = np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8))
    top, left, h, w = (v * scale for v in box)
    bottom, right = top + h - 1, left + w - 1
    big[top : top + 2, left : right + 1] = BOX_COLOUR
    big[bottom - 1 : bottom + 1, left : right + 1] = BOX_COLOUR
    big[top : bottom + 1, left : left + 2] = BOX_COLOUR
    big[top : bottom + 1, right - 1 : right + 1] = BOX_COLOUR
    return big


def find_metrics(findings: Findings) -> list[tuple[str, str]]:
    """(label, value) pairs of the Find step."""
    return [
        ("Accuracy, i.i.d. (training rule)", f"{findings.accuracy_iid:.1%}"),
        ("Accuracy, clean (no stamp)", f"{findings.accuracy_clean:.1%}"),
        ("Accuracy, stamped (every image)", f"{findings.accuracy_stamped:.1%}"),
        ("Flip rate when the stamp is pasted", f"{findings.flip_rate:.1%}"),
    ]


def table_rows(verification: Verification) -> list[dict[str, Any]]:
    """One row per figure (verdict, every figure in percent, fingerprint), one column per model:
    the table stays narrow enough to read without scrolling."""
    models = [(row.name, row.findings.to_dict(), row) for row in verification.rows]
    rows: list[dict[str, Any]] = [
        {"Figure": "Verdict", **{name: _verdict(r.method, r.fixed, r.warning) for name, _, r in models}}
    ]
    for key, title in FIGURES.items():
        rows.append({"Figure": title, **{name: f"{figures[key]:.1%}" for name, figures, _ in models}})
    rows.append({"Figure": "Fingerprint", **{name: r.fingerprint[:12] for name, _, r in models}})
    return rows


def _verdict(method: str, fixed: bool, warning: str) -> str:
    if method == "original":
        return "original"
    if warning:
        return "map clean, behaviour not"
    return "fixed" if fixed else "not fixed"


def verify_figure(verification: Verification, *, keys: Sequence[str] = tuple(FIGURES)) -> go.Figure:
    """Grouped bars: each figure (x) for each model (one colour per model), in percent."""
    fig = go.Figure()
    for row in verification.rows:
        figures = row.findings.to_dict()
        fig.add_bar(
            name=row.name,
            x=[FIGURES[k] for k in keys],
            y=[100 * figures[k] for k in keys],
            text=[f"{100 * figures[k]:.0f}" for k in keys],
            textposition="outside",
        )
    fig.update_layout(
        barmode="group",
        yaxis={"title": "percent", "range": [0, 110]},
        legend={"orientation": "h", "y": -0.35},
        margin={"t": 30, "b": 10},
        height=460,
    )
    return fig
