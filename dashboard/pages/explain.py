"""Explain: explanation methods side by side on the sidebar's image, model and class.

The chosen methods not computed yet run in one ``explain`` call, the cheapest first, and each
is kept in the session's result store the moment it finishes, under the key every page uses
(:mod:`dashboard.explanations`), and drawn in its own tile: a rerun (a
widget change, a page switch, Stop) loses at most the method in flight and never repeats
finished ones. Before anything slow starts, the page estimates it (work units x the model's
measured pass time): with automatic runs only the methods quick on this model start by
themselves (on a slow model, the single-pass ones); the rest wait for Run, with their estimate.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from dashboard import explanations, sidebar, state, widgets
from dashboard.render import model_input
from dashboard.render import tiles as render
from xaicore.explainers import cost
from xaicore.explainers.baselines import BASELINE_KINDS
from xaicore.explainers.registry import get_method
from xaicore.explainers.results import Status
from xaicore.render import heatmaps

VIEWS = {"all": "All (signed)", "positive": "Positive only"}
DISPLAYS = {"overlay": "Over the image", "heatmap": "Heatmap only"}
PER_ROW = 4
METHODS = "explain.w.methods"
CAM_LAYER = "explain.w.cam_layer"


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
                        label,
                        help=param.help,
                        **kept,
                        **_number_format(param.default),
                        min_value=type(param.default)(param.minimum) if param.minimum is not None else None,
                        max_value=type(param.default)(param.maximum) if param.maximum is not None else None,
                    )
            chosen[name] = spec.resolve_params(values)
    return chosen


STOPPED = "explain.stopped"  # result keys whose run the user stopped: not started again on their own


def _stopped_keys() -> set:
    found = st.session_state.get(STOPPED)
    return found if isinstance(found, set) else set()


def _stop(keys: tuple) -> None:
    """The Stop button's callback: the methods still to run wait for Run from now on."""
    st.session_state[STOPPED] = _stopped_keys() | set(keys)


def _controls() -> dict:
    """The view controls; returns the view they choose (the arguments of ``render.rendered_tile``)."""
    view_col, display_col, channel_col = st.columns([2, 2, 1])
    view = view_col.radio(
        "View",
        list(VIEWS),
        format_func=VIEWS.get,
        horizontal=True,
        **state.kept("explain.w.view", default=next(iter(VIEWS)), options=list(VIEWS)),
    )
    display = display_col.radio(
        "Show",
        list(DISPLAYS),
        format_func=DISPLAYS.get,
        horizontal=True,
        **state.kept("explain.w.display", default=next(iter(DISPLAYS)), options=list(DISPLAYS)),
    )
    channel = channel_col.selectbox(
        "Channel",
        heatmaps.CHANNELS,
        help="Sum over the colour channels, or one channel alone.",
        **state.kept("explain.w.channel", default=heatmaps.CHANNELS[0], options=list(heatmaps.CHANNELS)),
    )
    alpha_col, contrast_col = st.columns(2)
    alpha = alpha_col.slider(
        "Heatmap opacity",
        0.0,
        1.0,
        step=0.05,
        help="Opacity of the strongest colours; weaker values get less.",
        **state.kept("explain.w.alpha", default=0.8),
    )
    contrast = contrast_col.slider(
        "Contrast (percentile)",
        *heatmaps.PERCENTILE_RANGE,
        step=0.5,
        **state.kept("explain.w.contrast", default=heatmaps.DEFAULT_PERCENTILE),
        help="Each map is clipped at this percentile of its |attribution|: lower shows weak evidence more "
        "strongly, 100 scales by the largest value.",
    )
    return {
        "view": view,
        "channel": channel,
        "alpha": alpha,
        "percentile": contrast,
        "over_image": display == "overlay",
    }


def _waiting_note(estimate: cost.Estimate, names: list[str], *, stopped: bool) -> str:
    listed = ", ".join(f"{get_method(n).title} ({cost.describe_seconds(estimate.seconds(n))})" for n in names)
    total = cost.describe_seconds(sum(estimate.seconds(n) for n in names))
    if stopped:
        return f"Stopped. Not run yet: {listed}. Press Run to run them ({total} in all on this model)."
    return (
        f"{len(names)} of the chosen methods wait for you: {listed}. Press Run to run them ({total} in all "
        "on this model; estimated from the time of one pass of the model)."
    )


@st.fragment
def _results(
    bundle, image, target: int, selected: list[str], keys: dict, to_run: list[str], *, params, seed, baseline
) -> None:
    """The view controls, one tile per chosen method and the downloads.

    Finished maps are drawn from the result store; the methods in ``to_run`` are computed by one
    ``explain`` call that hands over each method as it finishes: it is stored at once and drawn
    in its own place, so tiles appear one by one (the cheapest first) and never show another
    image's map. The page's Stop button ends the run after the method in flight; what finished stays.
    Moving a view control redraws this fragment alone (and goes on with a run in flight).
    """
    with state.guarded("the explanation grid"):
        drawn = _controls()
        st.caption(render.legend(drawn["view"], drawn["percentile"]))
        pending = [n for n in selected if state.get_result(keys[n]) is None]
        running = [n for n in to_run if n in pending and keys[n] not in _stopped_keys()]
        estimate = cost.estimate(bundle, pending, params=params)
        status = st.empty()
        slots = _tiles(bundle, image, selected, keys, estimate, running, drawn)
        if running:
            _run(
                bundle, image, target, running, keys, slots, status, drawn, params=params, seed=seed, baseline=baseline
            )
        waiting = [n for n in selected if state.get_result(keys[n]) is None]
        if waiting:
            stopped = any(keys[n] in _stopped_keys() for n in waiting)
            status.info(
                _waiting_note(cost.estimate(bundle, waiting, params=params), waiting, stopped=stopped),
                icon=":material/hourglass_empty:",
            )
        finished = [r for r in (state.get_result(keys[n]) for n in selected) if r is not None]
        if finished:
            _downloads(render.combine_results(finished), **drawn)


def _tiles(
    bundle, image, selected: list[str], keys: dict, estimate: cost.Estimate, running: list[str], drawn: dict
) -> dict:
    """The grid: finished maps drawn, every other method a placeholder saying when it comes.
    Returns the placeholders of the methods still to compute, by name."""
    cells: list = list(selected)
    if not drawn["over_image"]:  # the image beside the maps drawn alone
        cells.insert(0, None)
    slots = {}
    for start in range(0, len(cells), PER_ROW):
        for column, name in zip(st.columns(PER_ROW), cells[start : start + PER_ROW]):
            with column:
                if name is None:
                    st.image(
                        model_input.view_of(bundle, image).model_input,
                        caption="model input",
                        width="stretch",
                        clamp=True,
                        output_format="PNG",
                    )
                    continue
                found = state.get_result(keys[name])
                if found is not None:
                    _draw_tile(found, found.methods[0], drawn)
                    continue
                slots[name] = st.empty()
                when = "coming" if name in running else "waits for Run"
                slots[name].container(border=True).caption(
                    f"**{get_method(name).title}**: {when} ({cost.describe_seconds(estimate.seconds(name))})"
                )
    return slots


def _run(
    bundle,
    image,
    target: int,
    running: list[str],
    keys: dict,
    slots: dict,
    status,
    drawn: dict,
    *,
    params,
    seed,
    baseline,
) -> None:
    """One ``explain`` call for ``running``; each method is stored and drawn as soon as it is done."""
    bar = status.progress(0.0, text="Starting…")

    def progress(i: int, total: int, title: str) -> None:
        if title:
            bar.progress(i / total, text=f"Running {title} ({i + 1} of {total})")

    def finished(part) -> None:
        item = part.methods[0]
        with slots[item.method].container():
            _draw_tile(part, item, drawn)

    explanations.run(
        bundle,
        image,
        running,
        keys,
        target=target,
        params=params,
        seed=seed,
        baseline=baseline,
        progress=progress,
        on_result=finished,
    )
    status.empty()


def _draw_tile(result, item, drawn: dict) -> None:
    rendered = render.rendered_tile(
        result.image,
        item,
        view=drawn["view"],
        channel=drawn["channel"],
        alpha=drawn["alpha"],
        percentile=drawn["percentile"],
        over_image=drawn["over_image"],
    )
    _tile(result, item, rendered, alpha=drawn["alpha"], over_image=drawn["over_image"])


def _tile(result, item, rendered, *, alpha: float, over_image: bool) -> None:
    """One tile: the map, its colour bar, its status, the method's description, Enlarge."""
    st.image(rendered.rgb, caption=item.title, width="stretch", output_format="PNG")
    bar = render.colorbar_png(rendered, alpha=alpha, over_image=over_image)
    if bar is not None:
        st.image(bar, width="stretch", alt=render.colorbar_alt(rendered))
    if rendered.caption and item.status is Status.OK:  # the view shows nothing although the map has values
        st.caption(f"this view: {rendered.caption}")
    st.caption(render.status_line(item), help=f"**{item.title}**: {get_method(item.method).description}")
    if st.button(
        "Enlarge",
        key=f"explain.act.enlarge.{item.method}",
        type="tertiary",
        icon=":material/open_in_full:",
        help=f"{item.title} large, with its downloads",
    ):
        _enlarged(result, item, rendered, alpha, over_image)


@st.dialog("One map, enlarged", width="large")
def _enlarged(result, item, rendered, alpha: float, over_image: bool = True) -> None:
    """One method's map large, with its colour bar, description and downloads."""
    st.subheader(item.title)
    st.caption(get_method(item.method).description)
    left, right = st.columns([3, 2])
    left.image(
        render.enlarged(rendered.rgb, min_width=512),
        width="stretch",
        output_format="PNG",
        caption=render.status_line(item),
    )
    bar = render.colorbar_png(rendered, alpha=alpha, width=480, over_image=over_image)
    if bar is not None:
        left.image(bar, width="stretch", alt=render.colorbar_alt(rendered))
        left.caption(render.colorbar_alt(rendered))
    right.image(
        render.enlarged(heatmaps.to_uint8(result.image), min_width=512),
        caption="model input",
        width="stretch",
        output_format="PNG",
    )
    stem = f"explain-{result.image_hash[:8]}-class{result.target}-{item.method}"
    a, b = st.columns(2)
    a.download_button(
        "Tile (PNG)",
        render.tile_png(rendered, alpha=alpha, over_image=over_image),
        file_name=f"{stem}-{rendered.mode}.png",
        mime="image/png",
        on_click="ignore",
        key=f"explain.act.tile_png.{item.method}",
    )
    if item.attribution is not None:
        b.download_button(
            "Attribution (.npy)",
            render.npy_bytes(item.attribution),
            file_name=f"{stem}.npy",
            mime="application/octet-stream",
            on_click="ignore",
            key=f"explain.act.tile_npy.{item.method}",
        )


def _downloads(result, *, view: str, channel: str, alpha: float, percentile: float, over_image: bool) -> None:
    stem = f"explain-{result.image_hash[:8]}-class{result.target}"
    drawn: dict[str, Any] = {
        "view": view,
        "channel": channel,
        "alpha": alpha,
        "percentile": percentile,
        "over_image": over_image,
    }
    a, b, c = st.columns(3)
    a.download_button(
        "Grid (PNG)",
        lambda: render.grid_png(result, **drawn),
        file_name=f"{stem}-{view}.png",
        mime="image/png",
        on_click="ignore",
        key="explain.act.png",
    )
    b.download_button(
        "Attributions (.npz)",
        lambda: render.npz_bytes(result.attributions()),
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        on_click="ignore",
        key="explain.act.npz",
    )
    c.download_button(
        "Record (JSON)",
        lambda: render.json_bytes(render.record_with_view(result, **drawn)),
        file_name=f"{stem}.json",
        mime="application/json",
        on_click="ignore",
        key="explain.act.json",
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

    # A new model starts with all the methods it can run.
    selected = widgets.choose_methods(METHODS, bundle, default=bundle.available_methods())

    settings, run_col = st.columns([3, 1])
    with settings:
        seed_col, baseline_col, layer_col = st.columns([2, 2, 3])
        seed = int(
            seed_col.number_input(
                "Seed", min_value=0, max_value=2**31 - 1, step=1, **state.kept("explain.w.seed", default=0)
            )
        )
        baseline = baseline_col.selectbox(
            "Baseline",
            BASELINE_KINDS,
            help="Reference image for methods that compare against one.",
            **state.kept("explain.w.baseline", default=BASELINE_KINDS[0], options=list(BASELINE_KINDS)),
        )
        if any(get_method(name).needs_layer for name in selected):  # the CAM methods' maps and keys name it
            with layer_col:
                bundle = bundle.with_cam_layer(widgets.choose_cam_layer(CAM_LAYER, bundle))
    with run_col:
        auto = st.toggle("Run automatically", **state.kept("explain.w.auto", default=True))
        run = st.button("Run", type="primary", key="explain.act.run", width="stretch")
    params = _method_settings(selected)

    keys = explanations.keys(bundle, image, selected, params=params, seed=seed, baseline=baseline, target=target)
    if not selected:
        st.info("Choose at least one method.")
        return
    todo = [name for name in selected if state.get_result(keys[name]) is None]
    if run:  # the user asks for everything now: nothing chosen waits any longer
        st.session_state[STOPPED] = _stopped_keys() - {keys[n] for n in todo}
    stopped = {n for n in todo if keys[n] in _stopped_keys()}
    to_run = (
        cost.plan_run(cost.estimate(bundle, todo, params=params), pressed=run, auto=auto, stopped=stopped)
        if todo
        else []
    )
    if to_run:  # outside the grid's fragment: a click must end the whole run, not wait for it
        run_col.button(
            "Stop",
            key="explain.act.stop",
            icon=":material/stop_circle:",
            on_click=_stop,
            args=(tuple(keys[n] for n in to_run),),
            width="stretch",
            help="Stop after the method now running; the finished maps stay.",
        )
    _results(bundle, image, target, selected, keys, to_run, params=params, seed=seed, baseline=baseline)


sidebar.render()
with state.guarded("the Explain page"):
    main()
