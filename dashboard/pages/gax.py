"""GAX: optimize a heatmap that raises the model's confidence, then scrub its evolution.

The run (:func:`xaicore.confidence.gax.run_gax`) starts on the Run button, shows a live line (step, CO
score) and keeps its finished result in the session's result store, keyed by model, image,
class and settings. The step slider sits in a fragment: moving it only slices the stored
history (R, G, B heatmaps, their change from the previous stored step, the CO curve with the
step marked) and never reruns the optimization or the rest of the page.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import sidebar, state, wording
from dashboard.render import tiles as render
from dashboard.safe_text import plain
from dashboard.wording import plural
from xaicore.confidence.gax import MAX_STEPS, STEP_UNITS, GaxImageResult, GaxResult, run_gax
from xaicore.explainers import cost
from xaicore.render import gax_view

STEP = "gax.w.step"
DEFAULTS = {"gax.w.target_co": 48.0, "gax.w.max_steps": 300, "gax.w.lr": 0.1, "gax.w.l_s": 100.0}


def _settings() -> dict:
    a, b, c, d = st.columns(4)
    return {
        "target_co": float(
            a.number_input(
                "Target CO score",
                step=1.0,
                **state.kept("gax.w.target_co", default=DEFAULTS["gax.w.target_co"]),
                help="The run stops when the CO score reaches this value (48 in the paper).",
            )
        ),
        "max_steps": int(
            b.number_input(
                "Step cap",
                min_value=1,
                max_value=MAX_STEPS,
                step=10,
                **state.kept("gax.w.max_steps", default=DEFAULTS["gax.w.max_steps"]),
                help="The run always stops here, reached or not.",
            )
        ),
        "lr": float(
            c.number_input(
                "Learning rate",
                min_value=1e-5,
                max_value=10.0,
                step=0.01,
                format="%.4f",
                **state.kept("gax.w.lr", default=DEFAULTS["gax.w.lr"]),
                help="Adam's learning rate (0.1 in the paper).",
            )
        ),
        "l_s": float(
            d.number_input(
                "Similarity weight l_s",
                min_value=0.0,
                max_value=1e6,
                step=10.0,
                **state.kept("gax.w.l_s", default=DEFAULTS["gax.w.l_s"]),
                help="Weight of the term that keeps the heatmap different from the image (100).",
            )
        ),
    }


def _run(bundle, image, target: int, settings: dict) -> GaxResult:
    line = st.empty()
    line.caption("Starting…")

    def progress(step: int, total: int, co) -> None:
        line.caption(f"Step {step} of at most {total} · CO score {float(co[0]):.2f}")

    result = run_gax(bundle, image.array, target=target, progress=progress, **settings)
    line.empty()
    return result


def co_figure(one: GaxImageResult, step: int, target_co: float) -> go.Figure:
    """The CO curve with the target and the current step marked."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(range(len(one.co_curve))), y=one.co_curve.tolist(), mode="lines", name="CO score"))
    fig.add_trace(
        go.Scatter(
            x=[step],
            y=[float(one.co_curve[step])],
            mode="markers",
            name=f"step {step}",
            marker={"size": 11, "color": "crimson"},
        )
    )
    fig.add_hline(y=target_co, line_dash="dash", line_color="grey", annotation_text=f"target {target_co:g}")
    fig.add_vline(x=step, line_color="crimson", line_width=1)
    fig.update_layout(
        height=280,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="step",
        yaxis_title="CO score",
        showlegend=False,
    )
    return fig


def _channel_row(title: str, values, *, what: str) -> None:
    drawn = gax_view.channel_tiles(values)
    if drawn.status.value == "ok":
        st.markdown(f"**{title}** · shared scale, absolute maximum {drawn.scale:.3f} (blue −, red +)")
    else:
        st.markdown(f"**{title}** · {what}: {drawn.status.value}")
    for column, name, tile in zip(st.columns(3), gax_view.CHANNEL_NAMES, drawn.tiles):
        column.image(tile, caption=name, width="stretch", output_format="PNG")
    bar = gax_view.colorbar(drawn)
    if bar is not None:
        st.image(bar, width=360, output_format="PNG", alt=gax_view.colorbar_text(drawn))


@st.fragment
def _viewer(result: GaxResult) -> None:
    """The step slider and everything it shows; reruns alone and only slices the history."""
    with state.guarded("the GAX viewer"):
        one = result[0]
        steps = [int(s) for s in one.history.steps]
        step = st.select_slider(
            "Step",
            options=steps,  # a new run starts at its last step
            **state.kept(STEP, default=steps[-1], options=steps, scope=tuple(steps)),
            help="Scrub the heatmap's evolution; nothing is recomputed.",
        )
        index = steps.index(step)
        previous = steps[index - 1] if index else None
        st.caption(f"Step {step} of {one.steps} · CO score {float(one.co_curve[step]):.2f}")
        _channel_row(f"Heatmap h at step {step}", one.history.heatmap(index), what="the heatmap")
        change = "the first step" if previous is None else f"step {previous} to {step}"
        _channel_row(f"Change from {change}", one.history.change(index), what="change")
        st.plotly_chart(co_figure(one, step, result.target_co), key="gax.chart")


def _downloads(result: GaxResult) -> None:
    one = result[0]
    stem = f"gax-class{one.target}-co{result.target_co:g}"
    a, b, c = st.columns(3)
    a.download_button(
        "History (.npz)",
        lambda: render.npz_bytes(one.arrays()),
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        on_click="ignore",
        key="gax.act.npz",
    )
    b.download_button(
        "Evolution (GIF)",
        lambda: gax_view.evolution_gif(one),
        file_name=f"{stem}.gif",
        mime="image/gif",
        on_click="ignore",
        key="gax.act.gif",
    )
    c.download_button(
        "Record (JSON)",
        lambda: render.json_bytes(result.record()),
        file_name=f"{stem}.json",
        mime="application/json",
        on_click="ignore",
        key="gax.act.json",
    )


def _summary(result: GaxResult) -> None:
    one = result[0]
    if one.reached:
        st.success(
            f"Reached CO {result.target_co:g} at step {one.steps} (final CO {one.final_co:.2f}) "
            f"in {result.runtime_s:.1f} s."
        )
    else:
        st.warning(
            f"Did not reach CO {result.target_co:g} within {plural(one.steps, 'step')} "
            f"(final CO {one.final_co:.2f}); "
            "raise the step cap or the learning rate, or lower the target."
        )
    for notice in result.notices:
        st.caption(plain(notice))


def main() -> None:
    st.title("GAX: heatmaps that raise confidence")
    bundle, image, target = state.current_model(), state.current_image(), state.current_target()
    if bundle is None or image is None or target is None:
        st.info("Choose a model and an image in the sidebar.")
        return
    st.caption(
        f"Optimizes h = tanh(w·x + b) with Adam on −CO + l_s / mean((h − x + ε)² / (x + ε)) until the CO score of "
        f"class {target} ({bundle.labels[target]}) reaches the target. CO = κ·(f(x + h) − f(x)) on raw logits."
    )
    settings = _settings()
    run = st.button("Run GAX", type="primary", key="gax.act.run")
    key = state.result_key("gax", fingerprint=bundle.fingerprint, image=image.hash, target=target, **settings)
    result = state.get_result(key)
    if result is None and run:
        result = _run(bundle, image, target, settings)
        state.put_result(key, result)
    if result is None:
        seconds = cost.seconds_for(bundle, settings["max_steps"] * STEP_UNITS)
        st.info(
            f"Press Run GAX to optimize a heatmap for this image and class: at most "
            f"{wording.plural(settings['max_steps'], 'step')}, {wording.estimate(seconds)} (less when the target "
            "is reached sooner)."
        )
        return
    _summary(result)
    _viewer(result)
    _downloads(result)


sidebar.render()
with state.guarded("the GAX page"):
    main()
