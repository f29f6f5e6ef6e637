"""Explain: explanation methods side by side on the sidebar's image, model and class.

Methods run in small groups (those sharing one gradient pass together, every other method
alone) and each finished method is kept in the session's result store, keyed by (model
fingerprint, image hash, method, parameters, seed, baseline, target): a rerun (a widget
change, a page switch) interrupts the run between groups and never repeats finished methods.
View controls live in a fragment and only redraw the stored maps.
"""

from __future__ import annotations

import math
from dataclasses import replace

import streamlit as st

from dashboard import model_input, render, sidebar, state
from xaicore import heatmaps
from xaicore.explainers.api import explain
from xaicore.explainers.baselines import BASELINE_KINDS
from xaicore.explainers.results import Status
from xaicore.explainers.registry import get_method, list_methods
from xaicore.explainers.shared import FUSED_METHODS

VIEWS = {"all": "All (signed)", "positive": "Positive only"}
DISPLAYS = {"overlay": "Over the image", "heatmap": "Heatmap only"}
PER_ROW = 4
SHARED = FUSED_METHODS  # one fused pass when run together
METHODS = "explain.w.methods"


def _number_format(default: int | float) -> dict:
    """Step and display format of a number widget: whole steps for integers; for floats, a
    step no larger than 0.01 and no larger than the default's order of magnitude (1e-6 ...)."""
    if isinstance(default, int):
        return {"step": 1}
    step = 0.01 if default <= 0 else min(0.01, 10.0 ** math.floor(math.log10(default)))
    return {"step": step, "format": "%g"}


def _method_settings(methods: list[str]) -> dict[str, dict]:
    """Per-method parameter widgets (defaults from the registry), inside one expander."""
    chosen: dict[str, dict] = {}
    with st.expander("Method parameters"):
        for name in methods:
            spec = get_method(name)
            values = {}
            for param in spec.params:
                key = f"explain.w.param.{name}.{param.name}"
                label = f"{spec.title}: {param.name}"
                kept = state.kept(key, default=param.default, options=param.choices or None)
                if param.choices:
                    values[param.name] = st.selectbox(label, param.choices, help=param.help, **kept)
                elif isinstance(param.default, bool):
                    values[param.name] = st.checkbox(label, help=param.help, **kept)
                elif isinstance(param.default, (int, float)):
                    values[param.name] = st.number_input(
                        label, help=param.help, **kept, **_number_format(param.default),
                        min_value=type(param.default)(param.minimum) if param.minimum is not None else None,
                        max_value=type(param.default)(param.maximum) if param.maximum is not None else None,
                    )
            chosen[name] = spec.resolve_params(values)
    return chosen


def run_groups(todo: list[str]) -> list[list[str]]:
    """Methods to run together: those that share one fused pass (gradients, Guided Backprop,
    Deconvolution and the CAM maps) in one group, every other method alone, in the order given."""
    together = [name for name in todo if name in SHARED]
    groups: list[list[str]] = [together] if together else []
    return groups + [[name] for name in todo if name not in SHARED]


def _run_missing(bundle, image, target: int, todo: list[str], keys: dict, *, params, seed, baseline) -> None:
    """Run the methods not in the store yet, group by group, with a progress bar.

    Each finished group is stored at once; a rerun that interrupts the run (at the next
    progress update) loses only the group in flight.
    """
    bar = st.progress(0.0, text="Starting…")
    done = 0
    for group in run_groups(todo):
        def progress(i: int, _total: int, title: str, _done: int = done) -> None:
            if title:
                bar.progress((_done + i) / len(todo), text=f"Running {title} ({_done + i + 1} of {len(todo)})")

        result = explain(
            bundle, image.array, methods=group, target=target, seed=seed,
            params={name: params[name] for name in group}, baseline=baseline, progress=progress,
        )
        for item in result.methods:  # only finished results are stored
            state.put_result(keys[item.method], replace(result, methods=(item,)))
        done += len(group)
    bar.empty()


@st.fragment
def _grid(result) -> None:
    """The tiles, the view controls and the downloads; redraws alone when a control moves."""
    with state.guarded("the explanation grid"):
        view_col, display_col, channel_col = st.columns([2, 2, 1])
        view = view_col.radio("View", list(VIEWS), format_func=VIEWS.get, horizontal=True,
                              **state.kept("explain.w.view", default=next(iter(VIEWS)), options=list(VIEWS)))
        display = display_col.radio("Show", list(DISPLAYS), format_func=DISPLAYS.get, horizontal=True,
                                    **state.kept("explain.w.display", default=next(iter(DISPLAYS)),
                                                 options=list(DISPLAYS)))
        channel = channel_col.selectbox("Channel", heatmaps.CHANNELS,
                                        help="Sum over the colour channels, or one channel alone.",
                                        **state.kept("explain.w.channel", default=heatmaps.CHANNELS[0],
                                                     options=list(heatmaps.CHANNELS)))
        alpha_col, contrast_col = st.columns(2)
        alpha = alpha_col.slider("Heatmap opacity", 0.0, 1.0, step=0.05,
                                 help="Opacity of the strongest colours; weaker values get less.",
                                 **state.kept("explain.w.alpha", default=0.8))
        contrast = contrast_col.slider(
            "Contrast (percentile)", *heatmaps.PERCENTILE_RANGE, step=0.5,
            **state.kept("explain.w.contrast", default=heatmaps.DEFAULT_PERCENTILE),
            help="Each map is clipped at this percentile of its |attribution|: lower shows weak evidence more "
                 "strongly, 100 scales by the largest value.")
        over_image = display == "overlay"
        st.caption(render.legend(view, contrast))
        cells: list = list(result.methods)
        if not over_image:  # the image beside the maps drawn alone
            cells.insert(0, None)
        for start in range(0, len(cells), PER_ROW):
            for column, item in zip(st.columns(PER_ROW), cells[start:start + PER_ROW]):
                with column:
                    if item is None:
                        st.image(result.image, caption="model input", width="stretch", clamp=True,
                                 output_format="PNG")
                        continue
                    rendered = render.rendered_tile(result.image, item, view=view, channel=channel, alpha=alpha,
                                                    percentile=contrast, over_image=over_image)
                    _tile(result, item, rendered, alpha=alpha, over_image=over_image)
        _downloads(result, view=view, channel=channel, alpha=alpha, percentile=contrast, over_image=over_image)


def _tile(result, item, rendered, *, alpha: float, over_image: bool) -> None:
    """One tile: the map, its colour bar, its status, the method's description, Enlarge."""
    st.image(rendered.rgb, caption=item.title, width="stretch", output_format="PNG")
    bar = render.colorbar_png(rendered, alpha=alpha, over_image=over_image)
    if bar is not None:
        st.image(bar, width="stretch", alt=render.colorbar_alt(rendered))
    if rendered.caption and item.status is Status.OK:  # the view shows nothing although the map has values
        st.caption(f"this view: {rendered.caption}")
    st.caption(render.status_line(item), help=f"**{item.title}**: {get_method(item.method).description}")
    if st.button("Enlarge", key=f"explain.act.enlarge.{item.method}", type="tertiary",
                 icon=":material/open_in_full:", help=f"{item.title} large, with its downloads"):
        _enlarged(result, item, rendered, alpha, over_image)


@st.dialog("One map, enlarged", width="large")
def _enlarged(result, item, rendered, alpha: float, over_image: bool = True) -> None:
    """One method's map large, with its colour bar, description and downloads."""
    st.subheader(item.title)
    st.caption(get_method(item.method).description)
    left, right = st.columns([3, 2])
    left.image(render.enlarged(rendered.rgb, min_width=512), width="stretch", output_format="PNG",
               caption=render.status_line(item))
    bar = render.colorbar_png(rendered, alpha=alpha, width=480, over_image=over_image)
    if bar is not None:
        left.image(bar, width="stretch", alt=render.colorbar_alt(rendered))
        left.caption(render.colorbar_alt(rendered))
    right.image(render.enlarged(heatmaps.to_uint8(result.image), min_width=512), caption="model input",
                width="stretch", output_format="PNG")
    stem = f"explain-{result.image_hash[:8]}-class{result.target}-{item.method}"
    a, b = st.columns(2)
    a.download_button("Tile (PNG)", render.tile_png(rendered, alpha=alpha, over_image=over_image), file_name=f"{stem}-{rendered.mode}.png",
                      mime="image/png", on_click="ignore", key=f"explain.act.tile_png.{item.method}")
    if item.attribution is not None:
        b.download_button("Attribution (.npy)", render.npy_bytes(item.attribution), file_name=f"{stem}.npy",
                          mime="application/octet-stream", on_click="ignore",
                          key=f"explain.act.tile_npy.{item.method}")


def _downloads(result, *, view: str, channel: str, alpha: float, percentile: float = heatmaps.DEFAULT_PERCENTILE,
               over_image: bool = True) -> None:
    stem = f"explain-{result.image_hash[:8]}-class{result.target}"
    drawn = {"view": view, "channel": channel, "alpha": alpha, "percentile": percentile, "over_image": over_image}
    a, b, c = st.columns(3)
    a.download_button(
        "Grid (PNG)", lambda: render.grid_png(result, **drawn),
        file_name=f"{stem}-{view}.png", mime="image/png", on_click="ignore", key="explain.act.png",
    )
    b.download_button(
        "Attributions (.npz)", lambda: render.npz_bytes(result.attributions()),
        file_name=f"{stem}.npz", mime="application/octet-stream", on_click="ignore", key="explain.act.npz",
    )
    c.download_button(
        "Record (JSON)", lambda: render.json_bytes(render.record_with_view(result, **drawn)),
        file_name=f"{stem}.json", mime="application/json", on_click="ignore", key="explain.act.json",
    )


def main() -> None:
    st.title("Explain")
    bundle, image, target = state.current_model(), state.current_image(), state.current_target()
    if bundle is None or image is None or target is None:
        st.info("Choose a model and an image in the sidebar.")
        return

    top, predictions = st.columns([1, 2])
    with top:
        model_input.show(bundle, image)
    with predictions:
        st.subheader("Top predictions")
        render.predictions_table(state.predictions(bundle, image))
        st.caption(f"Explaining class {target}: {bundle.labels[target]}")

    names = list_methods()
    available = [n for n in names if n not in bundle.unavailable]
    # A new model starts with all the methods it can run.
    selected = st.multiselect("Methods", available, format_func=lambda n: get_method(n).title,
                              **state.kept(METHODS, default=available, options=available, scope=bundle.fingerprint))
    render.unavailable_methods(bundle.unavailable)

    settings, run_col = st.columns([3, 1])
    with settings:
        seed_col, baseline_col = st.columns(2)
        seed = int(seed_col.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1,
                                         **state.kept("explain.w.seed", default=0)))
        baseline = baseline_col.selectbox("Baseline", BASELINE_KINDS,
                                          help="Reference image for methods that compare against one.",
                                          **state.kept("explain.w.baseline", default=BASELINE_KINDS[0],
                                                       options=list(BASELINE_KINDS)))
    with run_col:
        auto = st.toggle("Run automatically", **state.kept("explain.w.auto", default=True))
        run = st.button("Run", type="primary", key="explain.act.run", width="stretch")
    params = _method_settings(selected)

    keys = {
        name: state.result_key(
            "explain", fingerprint=bundle.fingerprint, image=image.hash, method=name,
            params=params[name], seed=seed, baseline=baseline, target=target,
        )
        for name in selected
    }
    todo = [name for name in selected if state.get_result(keys[name]) is None]
    if todo and (auto or run):
        _run_missing(bundle, image, target, todo, keys, params=params, seed=seed, baseline=baseline)
        todo = []
    finished = [r for r in (state.get_result(keys[n]) for n in selected) if r is not None]
    if todo:
        st.info(f"{len(todo)} of {len(selected)} methods have not run yet: press Run.")
    if not finished:
        if not selected:
            st.info("Choose at least one method.")
        return
    _grid(render.combine_results(finished))


sidebar.render()
with state.guarded("the Explain page"):
    main()
