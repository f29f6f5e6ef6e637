"""Class discriminativeness: does an explanation change with the class asked for?

Each method explains two or more classes of the sidebar's image; the maps are shown side by
side with the SSIM between them (lower: more class-discriminative), and, where object masks
exist (generated scenes, or a mask uploaded here), the share of positive relevance on each
object. These are one image's figures: a section below sets them against the mean and 95%
interval over many generated two-object scenes, measured on request. Finished results are kept
in the session's result store; view controls sit in a fragment and only redraw the stored maps.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import sidebar, state, widgets
from dashboard.render import sanity as sanity_render
from dashboard.render import tiles as render
from dashboard.safe_text import plain
from xaicore.checks.discriminative import compare_classes
from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
from xaicore.data.images import load_mask
from xaicore.data.shapes import generate_scenes
from xaicore.errors import XaiError
from xaicore.explainers import cost

W = "classes.w."
METHODS = W + "methods"
MASK = "classes.mask"  # (file id, mask array or error) of the uploaded mask
SCENE_SEED = 0  # the seed of the scenes the README's table is measured on


def _default_classes(bundle, image) -> list[int]:
    if image.masks is not None and len(set(image.mask_labels)) >= 2:
        return list(dict.fromkeys(image.mask_labels))
    return [p.index for p in state.predictions(bundle, image)[:2]]


def _uploaded_mask(bundle, image) -> tuple[np.ndarray, int] | None:
    """A mask uploaded on this page with the class of its object, or ``None``."""
    with st.expander("Object mask (optional)"):
        st.caption(
            "A black-and-white image of the image's size: white marks one object. Generated scenes "
            "bring their own masks."
        )
        upload = st.file_uploader("Mask image", key="classes.act.mask")
        cls = st.selectbox(
            "Class of the object in the mask",
            list(range(bundle.num_classes)),
            **state.kept(
                W + "mask_class", default=None, options=list(range(bundle.num_classes)), scope=bundle.fingerprint
            ),
            format_func=lambda c: f"{c}: {bundle.labels[c]}",
            placeholder="choose its class",
        )
        if upload is None:
            return None
        last = st.session_state.get(MASK)
        if last is None or last[0] != upload.file_id:
            found: np.ndarray | str
            try:
                found = load_mask(upload.getvalue(), size=image.array.shape[:2], name=upload.name)
            except XaiError as exc:
                found = str(exc)
            st.session_state[MASK] = last = (upload.file_id, found)
        if isinstance(last[1], str):
            st.error(plain(last[1]))
            return None
        return (last[1], cls) if cls is not None else None


def main() -> None:
    st.title("Class discriminativeness")
    st.markdown(
        "Explain two classes present in one image side by side. A useful method highlights only the "
        "object of the class asked for (low SSIM between the maps); a poor one draws every edge either "
        "way (SSIM near 1)."
    )
    bundle, image = state.current_model(), state.current_image()
    if bundle is None or image is None:
        st.info("Choose a model and an image in the sidebar.")
        return
    methods = widgets.choose_methods(METHODS, bundle)
    classes_key = f"{W}classes.{bundle.fingerprint[:12]}.{image.hash[:12]}"  # defaults follow model and image
    classes = st.multiselect(
        "Classes",
        list(range(bundle.num_classes)),
        format_func=lambda c: f"{c}: {bundle.labels[c]}",
        **state.kept(classes_key, default=_default_classes(bundle, image), options=list(range(bundle.num_classes))),
    )
    uploaded = _uploaded_mask(bundle, image)
    if len(methods) == 0 or len(classes) < 2:
        st.info("Choose at least one method and two classes.")
        return
    mask_labels: tuple[int, ...] | None
    if uploaded is not None:
        masks, mask_labels, mask_source = uploaded[0][None], (uploaded[1],), "upload"
    elif image.masks is not None and image.mask_labels:
        masks, mask_labels, mask_source = image.masks, tuple(image.mask_labels), "scene"
    else:
        masks, mask_labels, mask_source = None, None, "none"
    key = state.result_key(
        "classes",
        fingerprint=bundle.fingerprint,
        image=image.hash,
        methods=tuple(methods),
        classes=tuple(classes),
        masks=mask_source if mask_source != "upload" else st.session_state[MASK][0],
        mask_labels=mask_labels,
    )
    result = state.get_result(key)
    if result is None:
        with st.spinner("Explaining each class…"):
            result = compare_classes(
                bundle, image.array, methods=methods, classes=classes, masks=masks, mask_labels=mask_labels
            )
        state.put_result(key, result)
    _results(result)
    _over_scenes(bundle, methods, result)


def _over_scenes(bundle, methods, single) -> None:
    """This image's figures against the mean and 95% interval over generated scenes (on request)."""
    st.subheader("One image, or many scenes")
    st.markdown(
        "The SSIM figures above come from **this one image**: a single example, not a measurement. "
        "Which method comes out lowest changes from image to image; the mean over many generated "
        "two-object scenes says what is typical."
    )
    field, _ = st.columns([1, 2])
    count = int(
        field.number_input(
            "Generated two-object scenes",
            min_value=20,
            max_value=1000,
            step=20,
            **state.kept(W + "scenes", default=200),
        )
    )
    key = state.result_key(
        "classes_scenes", fingerprint=bundle.fingerprint, methods=tuple(methods), scenes=count, seed=SCENE_SEED
    )
    aggregate = state.get_result(key)
    if aggregate is None:
        seconds = cost.estimate(bundle, methods, images=2 * count).total_s
        slot = st.empty()
        with slot.container():
            run = st.button(f"Measure over {count} scenes", key="classes.act.scenes")
            st.caption(
                f"Each scene's two objects are explained by every chosen method: about "
                f"{cost.describe_seconds(seconds)} on this machine. Scenes of seed {SCENE_SEED}, as in the README."
            )
        if not run:
            return
        slot.empty()
        with st.spinner(f"Explaining both classes of {count} scenes…"):
            aggregate = discriminativeness_over_scenes(bundle, generate_scenes(count, seed=SCENE_SEED), methods=methods)
        state.put_result(key, aggregate)
    st.table(sanity_render.scenes_rows(aggregate, single), hide_index=True)
    st.caption(
        f"SSIM between the two class maps of each of {aggregate.n_scenes} generated scenes (seed {SCENE_SEED}), "
        "averaged; 95% Student t interval over the scenes. Lower: more class-discriminative."
    )


@st.fragment
def _results(result) -> None:
    with state.guarded("the class comparison"):
        v, o = st.columns(2)
        view = v.radio(
            "View",
            list(sanity_render.VIEWS),
            format_func=sanity_render.VIEWS.get,
            horizontal=True,
            **state.kept(W + "view", default=next(iter(sanity_render.VIEWS)), options=list(sanity_render.VIEWS)),
        )
        over = o.toggle("Draw over the image", **state.kept(W + "over", default=False))
        st.caption(
            "Figures for this one image: a single example. *One image, or many scenes* below sets them "
            "against the mean over many generated scenes."
        )
        for method, title in zip(result.methods, result.titles, strict=True):
            tiles = sanity_render.class_tiles(result, method=method, view=view, over_image=over)
            st.markdown(f"**{title}** · SSIM between the maps {result.pair_ssim(method):.2f}")
            st.image([t[0] for t in tiles], caption=[t[1] for t in tiles], width=140, output_format="PNG")
            clip = sanity_render.class_clip(result, method=method, view=view)
            bar = sanity_render.colorbar(clip, view=view, over_image=over)
            if bar is not None:
                caption = sanity_render.colorbar_caption(clip, view=view)
                st.image(bar, width=320, output_format="PNG", alt=caption)
                st.caption(caption)
        st.plotly_chart(sanity_render.classes_ssim_figure(result), key="classes.chart.ssim")
        relevance = sanity_render.relevance_figure(result)
        if relevance is not None:
            st.plotly_chart(relevance, key="classes.chart.relevance")
        else:
            st.caption(
                "No object masks for this image: choose a generated scene or upload a mask to see how much "
                "relevance falls on each object."
            )
        stem = f"classes-{result.provenance.model_fingerprint[:8]}-{'-'.join(map(str, result.classes))}"
        st.download_button(
            "Record (JSON)",
            lambda: render.json_bytes(result.record()),
            file_name=f"{stem}.json",
            mime="application/json",
            on_click="ignore",
            key="classes.act.json",
        )


sidebar.render()
with state.guarded("the Class discriminativeness page"):
    main()
