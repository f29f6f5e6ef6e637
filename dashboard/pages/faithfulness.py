"""Faithfulness: insertion and deletion curves of the selected methods on the sidebar's image.

Maps come from each method with its default parameters and a black baseline, stored under the
Explain page's keys (:mod:`dashboard.explanations`), so maps the Explain page already computed
with those settings are reused; the missing ones come from one ``explain`` call.
The curves of all maps are computed in one call to :func:`xaicore.metrics.faithfulness.insertion_deletion`
and the finished result is stored. Everything below the settings sits in a fragment: choosing a
step (slider, or a click on a curve point) redraws the masked images from the stored pixel ranks,
without running the model.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import explanations, sidebar, state, widgets
from dashboard.render import tiles as render
from dashboard.render.faithfulness import fitted_range, mark_color, marked, preview_caption
from xaicore.explainers.registry import get_method
from xaicore.explainers.results import ExplainResult, Status
from xaicore.metrics.faithfulness import BACKGROUNDS, KINDS, RANDOM, insertion_deletion

PREFIX = "faith.w."
METHODS = "faith.w.methods"
STEP = "faith.w.step"
PREVIEW = "faith.w.preview"
EXPLAIN_BASELINE = "black"
DEFAULT_BACKGROUND = "blur"
FRACTIONS = (1.0, 0.5, 0.25)
RANDOM_TITLE = "Random order (control)"


def _title(method: str) -> str:
    return RANDOM_TITLE if method == RANDOM else get_method(method).title


def _explanations(bundle, image, target: int, methods: list[str], *, seed: int) -> dict[str, ExplainResult]:
    """Each method's stored explanation (the Explain page's keys), the missing ones from one ``explain`` call."""
    params = {name: get_method(name).resolve_params(None) for name in methods}
    keys = explanations.keys(bundle, image, methods, params=params, seed=seed, baseline=EXPLAIN_BASELINE, target=target)
    found = explanations.stored(keys)
    todo = [name for name in methods if found[name] is None]
    if todo:
        bar = st.progress(0.0, text="Explaining…")

        def progress(done: int, total: int, title: str) -> None:
            if title:
                bar.progress(done / total, text=f"Running {title} ({done + 1} of {total})")

        def finished(part) -> None:
            found[part.methods[0].method] = part

        explanations.run(
            bundle,
            image,
            todo,
            keys,
            target=target,
            params=params,
            seed=seed,
            baseline=EXPLAIN_BASELINE,
            progress=progress,
            on_result=finished,
        )
        bar.empty()
    return cast(dict[str, ExplainResult], found)  # the missing ones were all filled in


def _curves(
    bundle, image, target: int, methods: list[str], *, step: float, fraction: float, background: str, seed: int
):
    """The stored faithfulness result for these settings, computed when missing; and skipped methods."""
    explained = _explanations(bundle, image, target, methods, seed=seed)
    usable, skipped = {}, {}
    for name, result in explained.items():
        item = result.methods[0]
        if item.status is Status.OK:
            usable[name] = cast(np.ndarray, item.attribution)[None]  # an OK result has its map
        else:
            skipped[name] = render.status_line(item)
    key = state.result_key(
        "faithfulness",
        fingerprint=bundle.fingerprint,
        image=image.hash,
        target=target,
        methods=list(usable),
        step=step,
        fraction=fraction,
        background=background,
        seed=seed,
    )
    found = state.get_result(key)
    if found is None:
        with st.spinner("Measuring insertion and deletion curves…"):
            first = next(iter(explained.values()))
            found = insertion_deletion(
                bundle,
                bundle.to_input(first.image),
                usable,
                target=target,
                step_fraction=step,
                fraction=fraction,
                background=background,
                seed=seed,
            )
        state.put_result(key, found)
    return found, skipped


def auc_rows(result) -> list[dict[str, object]]:
    """The result's summary with method titles, for the table."""
    return [
        {
            "method": _title(r["method"]),
            "insertion AUC": r["insertion_auc"],
            "deletion AUC": r["deletion_auc"],
            "insertion − deletion": r["difference"],
            "vs random": r["vs_random"],
        }
        for r in result.summary()
    ]


def curves_figure(result, kind: str, *, step: int, full_axis: bool = False) -> go.Figure:
    """Plotly chart of the ``kind`` curves of every ranking; the random control dashed.

    The probability axis is fitted to the curves (:func:`fitted_range`), or spans 0 to 1 with
    ``full_axis``.
    """
    fig = go.Figure()
    x = result.fractions * 100
    for curves in result.curves:
        values = getattr(curves, kind)[0]
        auc = float(getattr(curves, f"{kind}_auc")[0])
        is_random = curves.method == RANDOM
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values,
                mode="lines+markers",
                name=f"{_title(curves.method)} (AUC {auc:.3f})",
                line={"dash": "dash", "color": "gray"} if is_random else {},
                marker={"size": 4},
                customdata=np.stack([np.full(len(x), curves.method, dtype=object), np.arange(len(x))], axis=1),
                hovertemplate="%{x:.1f}% of pixels: p = %{y:.3f}<extra>%{fullData.name}</extra>",
            )
        )
    fig.add_vline(x=float(x[step]), line={"color": "black", "width": 1, "dash": "dot"})
    background = result.background_text()
    verb = f"put onto {background}" if kind == "insertion" else f"replaced by {background}"
    fig.update_layout(
        title=f"{kind.capitalize()}: most relevant pixels {verb} first",
        xaxis_title="pixels changed (%)",
        yaxis_title=f"probability of class {result.target[0]}",
        yaxis_range=[0, 1.02] if full_axis else fitted_range(result, kind),
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 50, "b": 10},
        height=420,
    )
    return fig


def _select_point(chart_key: str) -> None:
    """A click on a curve point: show that method's masked images at that step."""
    event = st.session_state.get(chart_key)
    points = event["selection"]["points"] if event else []
    if points and points[0].get("customdata") is not None:
        method, step = points[0]["customdata"]
        state.set_kept(PREVIEW, str(method))
        state.set_kept(STEP, int(step))


@st.fragment
def _view(result, skipped: dict[str, str]) -> None:
    """Table, charts, the masked-image preview and downloads; redraws alone."""
    methods = [c.method for c in result.curves]
    last = len(result.steps) - 1
    step = int(state.kept_value(STEP, 0))
    if not 0 <= step <= last:
        step = 0
        state.set_kept(STEP, step)
    st.dataframe(
        auc_rows(result),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("insertion AUC", "deletion AUC", "insertion − deletion")
        },
    )
    st.caption(
        "A faithful map has a high insertion AUC and a low deletion AUC, and beats the random order on both. "
        "Click a point of a curve to see the image the model saw there."
    )
    for name, line in skipped.items():
        st.caption(f"{get_method(name).title} is left out: {line}")
    full_axis = st.toggle(
        "Probability axis from 0 to 1",
        help="Off: the axis is fitted to the curves, so small differences show.",
        **state.kept(PREFIX + "full_axis", default=False),
    )
    left, right = st.columns(2)
    for column, kind in zip((left, right), KINDS):
        chart_key = f"faith.chart.{kind}"
        column.plotly_chart(
            curves_figure(result, kind, step=step, full_axis=full_axis),
            key=chart_key,
            on_select=lambda k=chart_key: _select_point(k),
            selection_mode="points",
        )
    pick, slide = st.columns([1, 2])
    method = pick.selectbox(
        "Masked images of", methods, format_func=_title, **state.kept(PREVIEW, default=methods[0], options=methods)
    )
    step = slide.slider(
        "Step",
        0,
        last,
        **state.kept(STEP, default=0, options=range(last + 1)),
        help="Curve point: how many of the most relevant pixels are inserted or deleted.",
    )
    curves = result.get(method)
    k = int(result.steps[step])
    mark = st.toggle(
        "Mark the changed pixels",
        help="Tinted, with an outline, in a colour the image hardly uses: the pixels deleted "
        "(replaced by the background) or inserted so far.",
        **state.kept(PREFIX + "mark", default=True),
    )
    changed = result.changed_pixels(method, step=step) if mark else None
    color_name, color = mark_color(result.images[0], result.backgrounds[0])
    cols = st.columns(3)
    cols[0].image(result.images[0], caption="image", width="stretch", clamp=True)
    for col, kind in zip(cols[1:], KINDS):
        probability = float(getattr(curves, kind)[0][step])
        picture = result.masked_image(method, step=step, kind=kind)
        col.image(
            picture if changed is None else marked(picture, changed, color=color),
            width="stretch",
            clamp=True,
            output_format="PNG",
            caption=preview_caption(result, kind, pixels=k, probability=probability),
        )
    if changed is not None and changed.any():
        st.caption(
            f"Marked in {color_name}: the {k} most relevant pixels of {_title(method)}, "
            "deleted (right) or inserted (middle) so far."
        )
    stem = f"faithfulness-class{int(result.target[0])}"
    a, b = st.columns(2)
    a.download_button(
        "Curves (CSV)",
        lambda: result.to_csv().encode(),
        file_name=f"{stem}.csv",
        mime="text/csv",
        on_click="ignore",
        key="faith.act.csv",
    )
    b.download_button(
        "Record (JSON)",
        lambda: render.json_bytes(result.record()),
        file_name=f"{stem}.json",
        mime="application/json",
        on_click="ignore",
        key="faith.act.json",
    )


def main() -> None:
    st.title("Faithfulness")
    st.caption(
        "Insertion and deletion (Petsiuk et al. 2018): follow the probability of the class while the most "
        "relevant pixels of a map are put onto a background, or replaced by it in the image, first."
    )
    bundle, image, target = state.current_model(), state.current_image(), state.current_target()
    if bundle is None or image is None or target is None:
        st.info("Choose a model and an image in the sidebar.")
        return
    selected = widgets.choose_methods(METHODS, bundle)
    st.caption(f"Class {target}: {bundle.labels[target]}. Maps use each method's default parameters, black baseline.")
    c1, c2, c3, c4 = st.columns(4)
    step_pct = c1.number_input(
        "Step (% of pixels)", min_value=0.1, max_value=10.0, step=0.5, **state.kept("faith.w.step_pct", default=1.0)
    )
    fraction = c2.selectbox(
        "Curve end (share of pixels)",
        FRACTIONS,
        **state.kept("faith.w.fraction", default=FRACTIONS[0], options=FRACTIONS),
    )
    background = c3.selectbox(
        "Background",
        BACKGROUNDS,
        **state.kept("faith.w.background", default=DEFAULT_BACKGROUND, options=list(BACKGROUNDS)),
        help="What deleted pixels become, and where insertion starts from. Blur by default: "
        "black holes look like shapes to a model trained on shapes, so every order, the "
        "random one too, destroys the prediction within a few pixels.",
    )
    seed = int(
        c4.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **state.kept("faith.w.seed", default=0))
    )
    if not selected:
        st.info("Choose at least one method.")
        return
    result, skipped = _curves(
        bundle,
        image,
        target,
        selected,
        step=float(step_pct) / 100,
        fraction=float(fraction),
        background=background,
        seed=seed,
    )
    _view(result, skipped)


sidebar.render()
with state.guarded("the Faithfulness page"):
    main()
