"""Sanity checks: does each explanation depend on the model's weights?

The weights are randomized layer by layer on a private copy of the model (cascading from the
output layer down, or one layer at a time) and every method's map is compared with the
trained model's map. A finished check is kept in the session's result store, keyed by model,
image, class and settings; a rerun that interrupts a check (any widget change) stores nothing.
The SSIM threshold of the verdict only re-judges the stored values. View controls sit in a
fragment and only redraw the stored maps and charts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import streamlit as st

from dashboard import sidebar, state, widgets, wording
from dashboard.render import sanity as sanity_render
from dashboard.render import tiles as render
from xaicore.checks.sanity import DEFAULT_THRESHOLD, METRICS, run_sanity
from xaicore.explainers import cost
from xaicore.metrics.similarity import NORMALIZATIONS

MODES = {"both": "Both", "cascading": "Cascading", "independent": "Independent"}
POLICIES = {
    "original": "the class explained on the trained model",
    "randomized_prediction": "the randomized model's own prediction",
}
ABS_NORMALIZATIONS = [n for n in NORMALIZATIONS if n != "signed"]
W = "sanity.w."
METHODS = W + "methods"


def _settings(bundle) -> dict:

    methods = widgets.choose_methods(METHODS, bundle)
    a, b, c = st.columns(3)
    mode = a.radio(
        "Randomization",
        list(MODES),
        format_func=MODES.get,
        horizontal=True,
        **state.kept(W + "mode", default="both", options=list(MODES)),
        help="Cascading: from the output layer down, cumulatively. Independent: one layer at a time.",
    )
    seeds = int(
        b.number_input(
            "Seeds",
            min_value=1,
            max_value=20,
            step=1,
            **state.kept(W + "seeds", default=5),
            help="Each seed draws other random weights; the spread over seeds is shown.",
        )
    )
    threshold = c.slider(
        "Fail threshold (SSIM)",
        0.5,
        1.0,
        step=0.01,
        **state.kept(W + "threshold", default=DEFAULT_THRESHOLD),
        help="A method fails when its map after randomizing the output layer keeps a mean SSIM at or above this value.",
    )
    d, e = st.columns(2)
    reference = sanity_render.reference_model(bundle.name)
    policy = d.radio(
        "Explain, on the randomized model",
        list(POLICIES),
        format_func=lambda p: POLICIES[p].replace("the trained model", reference),
        **state.kept(W + "policy", default=next(iter(POLICIES)), options=list(POLICIES)),
    )
    normalization = e.selectbox(
        "Normalization of absolute maps",
        ABS_NORMALIZATIONS,
        **state.kept(W + "normalization", default=ABS_NORMALIZATIONS[0], options=ABS_NORMALIZATIONS),
        help="; ".join(f"{n}: {NORMALIZATIONS[n].description}" for n in ABS_NORMALIZATIONS),
    )
    return {
        "methods": methods,
        "mode": mode,
        "seeds": seeds,
        "threshold": threshold,
        "policy": policy,
        "normalization": normalization,
    }


def _run(bundle, image, target: int, settings: dict):
    """Run the check with a progress bar naming the layer; the caller stores the finished result."""
    bar = st.progress(0.0, text=f"Explaining with {sanity_render.reference_model(bundle.name)}…")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(done / total, text=f"{message} ({done} of {total})")

    result = run_sanity(
        bundle,
        image.array,
        methods=settings["methods"],
        mode=settings["mode"],
        seeds=tuple(range(settings["seeds"])),
        target=target,
        target_policy=settings["policy"],
        normalization=settings["normalization"],
        progress=progress,
    )
    bar.empty()
    return result


@st.fragment
def _results(result) -> None:
    with state.guarded("the sanity-check results"):
        st.subheader("Verdicts")
        st.dataframe(
            sanity_render.verdict_rows(result),
            hide_index=True,
            column_config={
                "SSIM after output layer": st.column_config.NumberColumn(format="%.3f"),
                "threshold": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        st.caption(
            f"Rule: fails when the mean SSIM (absolute maps, {result.params['normalizations']['abs']} "
            f"normalization) after randomizing only the output layer is at or above the threshold."
        )

        reference = sanity_render.reference_model(result.provenance.model_name)
        st.subheader(f"Similarity to the map of {reference}")
        a, b = st.columns(2)
        mode = result.modes[0]
        if len(result.modes) > 1:
            mode = a.radio(
                "Schedule",
                list(result.modes),
                horizontal=True,
                **state.kept(W + "view_mode", default=result.modes[0], options=list(result.modes)),
            )
        metric = b.selectbox(
            "Measure",
            METRICS,
            format_func=cast(Callable[[Any], str], sanity_render.METRIC_TITLES.get),  # every option has a title
            **state.kept(W + "metric", default=list(METRICS)[0], options=list(METRICS)),
        )
        fig = sanity_render.similarity_figure(result, mode=mode, metric=metric)
        st.plotly_chart(fig, key="sanity.chart")

        st.subheader("Heatmaps as the layers are randomized")
        v, o = st.columns(2)
        view = v.radio(
            "View",
            list(sanity_render.VIEWS),
            format_func=sanity_render.VIEWS.get,
            horizontal=True,
            **state.kept(W + "view", default=next(iter(sanity_render.VIEWS)), options=list(sanity_render.VIEWS)),
        )
        over = o.toggle("Draw over the image", **state.kept(W + "over", default=False))
        st.caption(f"{mode} schedule, seed {result.map_seeds[0]}; the first tile is the map of {reference}.")
        for method, title in zip(result.methods, result.titles, strict=True):
            tiles = sanity_render.strip(result, method=method, mode=mode, view=view, over_image=over)
            st.markdown(f"**{title}** · {result.verdict(method).status}")
            st.image([t[0] for t in tiles], caption=[t[1] for t in tiles], width=110, output_format="PNG")
            clip = sanity_render.strip_clip(result, method=method, mode=mode, view=view)
            bar = sanity_render.colorbar(clip, view=view, over_image=over)
            if bar is not None:
                caption = sanity_render.colorbar_caption(clip, view=view)
                st.image(bar, width=320, output_format="PNG", alt=caption)
                st.caption(caption)

        stem = f"sanity-{result.provenance.model_fingerprint[:8]}-class{int(result.targets[0])}"
        c1, c2, c3 = st.columns(3)
        c1.download_button(
            "All values (CSV)",
            result.to_csv,
            file_name=f"{stem}.csv",
            mime="text/csv",
            on_click="ignore",
            key="sanity.act.csv",
        )
        c2.download_button(
            "Chart (HTML)",
            lambda: sanity_render.figure_html(fig),
            file_name=f"{stem}-{mode}-{metric}.html",
            mime="text/html",
            on_click="ignore",
            key="sanity.act.html",
        )
        c3.download_button(
            "Record (JSON)",
            lambda: render.json_bytes(result.record()),
            file_name=f"{stem}.json",
            mime="application/json",
            on_click="ignore",
            key="sanity.act.json",
        )


def main() -> None:
    st.title("Sanity checks")
    st.markdown(
        "Randomize the model's weights layer by layer and watch each explanation. A method whose "
        "map stays the same when the weights that make the prediction are destroyed (high SSIM) "
        "does not explain the model (Adebayo et al. 2018)."
    )
    bundle, image, target = state.current_model(), state.current_image(), state.current_target()
    if bundle is None or image is None or target is None:
        st.info("Choose a model and an image in the sidebar.")
        return
    settings = _settings(bundle)
    if not settings["methods"]:
        st.info("Choose at least one method.")
        return
    key = state.result_key(
        "sanity",
        fingerprint=bundle.fingerprint,
        image=image.hash,
        target=target,
        methods=tuple(settings["methods"]),
        mode=settings["mode"],
        seeds=settings["seeds"],
        policy=settings["policy"],
        normalization=settings["normalization"],
    )
    run = st.button("Run the check", type="primary", key="sanity.act.run")
    result = state.get_result(key)
    if result is None and run:
        result = _run(bundle, image, target, settings)
        state.put_result(key, result)  # only a finished check is stored
    if result is None:
        steps = len(bundle.layers) * settings["seeds"] * (2 if settings["mode"] == "both" else 1)
        seconds = cost.estimate(bundle, settings["methods"], repeat=steps + 1).total_s
        st.info(
            f"Press *Run the check*: {wording.plural(steps, 'randomized model')}, "
            f"{wording.plural(len(settings['methods']), 'method')} each, "
            f"on {bundle.name} for class {bundle.labels[target]}: {wording.estimate(seconds)}."
        )
        return
    seeds = "seed 0" if settings["seeds"] == 1 else f"seeds 0–{settings['seeds'] - 1}"
    st.caption(
        f"Explaining class {bundle.labels[target]} · {wording.plural(len(result.layers), 'layer')} · "
        f"{seeds} · computed in {result.runtime_s:.1f} s"
    )
    _results(result.with_threshold(settings["threshold"]))


sidebar.render()
with state.guarded("the Sanity checks page"):
    main()
