"""AX / CO scores: how much each explainer's heatmap, added to the image, raises the model's
confidence, over an image set, split into correctly and wrongly predicted images.

The run goes batch by batch (:func:`xaicore.confidence.co_sets.iter_co_rows`); every finished batch's
rows are kept in the session's result store at once (:func:`dashboard.state.keep_partial`), so the
Stop button (or any rerun) keeps them and the partial result is shown. A complete result replaces them.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import sidebar, state, uploads, widgets, wording
from dashboard.render import tiles as render
from dashboard.safe_text import plain
from xaicore.confidence.co_ax import VARIANTS
from xaicore.confidence.co_sets import CoScoreResult, iter_co_rows, summarize
from xaicore.data import shapes
from xaicore.data.imagesets import HARD_DIFFICULTY, ImageItem, ImageSet, generated_test_set, load_image_set, relabel
from xaicore.explainers import cost
from xaicore.explainers.methods import FORWARD_UNITS
from xaicore.explainers.registry import get_method

GENERATED, SAMPLES, UPLOAD = "Generated test set", "Samples", "Upload a zip"
HARD = "Generated, harder (some predictions wrong)"
SOURCE = "co.w.source"
FAST = ("saliency", "input_x_gradient", "gradcam", "guided_backprop")
METHODS = "co.w.methods"
BATCH = 16


@st.cache_data(max_entries=4, show_spinner="Generating images…")
def _generated_set(n: int, seed: int, difficulty: float = 0.0) -> ImageSet:
    return generated_test_set(n, seed=seed, difficulty=difficulty)


def _for_model(bundle, image_set: ImageSet) -> ImageSet:
    """The set with its labels matched to the model's classes by name; a notice for those left out."""
    matched = relabel(image_set, bundle.labels)
    for notice in matched.notices[len(image_set.notices) :]:
        st.caption(notice)
    return matched


def _generated(bundle, n: int, seed: int, difficulty: float = 0.0) -> ImageSet:
    return _for_model(bundle, _generated_set(n, seed, difficulty))


def _samples(bundle) -> ImageSet:
    """The sample images; a shape keeps its label for any model with a class of that name."""
    items = []
    for name in state.sample_names():
        sample = state.sample_image(name)
        items.append(ImageItem(name=name, array=sample.array, label=sample.label))
    return _for_model(bundle, ImageSet(items=tuple(items), class_names=tuple(shapes.CLASSES)))


def _image_set(bundle) -> tuple[ImageSet | None, str]:
    """The chosen image set and a key naming it (None while a zip is awaited)."""
    sources = [GENERATED, HARD, SAMPLES, UPLOAD]
    source = st.radio("Images", sources, horizontal=True, **state.kept(SOURCE, default=GENERATED, options=sources))
    if source in (GENERATED, HARD):
        a, b = st.columns(2)
        n = int(
            a.number_input("Number of images", min_value=2, max_value=2000, step=16, **state.kept("co.w.n", default=64))
        )
        seed = int(
            b.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **state.kept("co.w.seed", default=0))
        )
        if source == HARD:
            st.caption(
                "Smaller shapes among clutter, crossed by a bar, with pixel noise (difficulty "
                f"{HARD_DIFFICULTY:g} of 1): the default model gets about a quarter of them wrong."
            )
            return _generated(bundle, n, seed, HARD_DIFFICULTY), f"generated-hard:{n}:{seed}"
        return _generated(bundle, n, seed), f"generated:{n}:{seed}"
    if source == SAMPLES:
        return _samples(bundle), "samples"
    upload = st.file_uploader(
        "Zip of images (labels from sub-folder names)",
        type=["zip"],
        key="co.act.zip",
        max_upload_size=uploads.IMAGE_UPLOAD_MB,
        help="Sub-folders named like the model's classes label their images; others stay unlabelled.",
    )
    if upload is None:
        return None, ""
    image_set = load_image_set(upload.getvalue(), class_names=bundle.labels, preprocess=bundle.preprocess)
    for notice in image_set.notices:
        st.caption(plain(notice))
    return image_set, f"zip:{upload.file_id}"


def _run(bundle, image_set: ImageSet, key, *, methods: list[str], variants: list[str], seed: int) -> CoScoreResult:
    """Run batch by batch, keeping each finished batch's rows in the session as it comes."""
    total = len(image_set) * len(methods)
    partial = state.keep_partial(key, {"rows": [], "skipped": {}, "done": 0, "total": total})
    bar = st.progress(0.0, text="Starting…")
    for batch in iter_co_rows(
        bundle, image_set, methods=methods, variants=variants, seed=seed, batch_size=BATCH, skipped=partial["skipped"]
    ):
        partial["rows"].extend(batch.rows)
        partial["done"] += batch.stop - batch.start
        title = get_method(batch.method).title
        bar.progress(
            partial["done"] / total, text=f"{title}: images {batch.start + 1}–{batch.stop} of {len(image_set)}"
        )
    bar.empty()
    return _summarize(
        bundle, partial, methods=methods, variants=variants, n_images=len(image_set), seed=seed, complete=True
    )


def _summarize(bundle, partial: dict, *, methods, variants, n_images: int, seed: int, complete: bool) -> CoScoreResult:
    return summarize(
        bundle,
        partial["rows"],
        methods=methods,
        variants=variants,
        n_images=n_images,
        complete=complete,
        skipped=partial["skipped"],
        seed=seed,
    )


def box_figure(result: CoScoreResult, variant: str) -> go.Figure:
    """Box plots of the CO scores per method, correctly and wrongly predicted side by side."""
    fig = go.Figure()
    for correct, name, colour in ((True, "correct", "seagreen"), (False, "wrong", "indianred")):
        rows = [r for r in result.rows if r.variant == variant and r.correct is correct]
        fig.add_trace(
            go.Box(
                x=[get_method(r.method).title for r in rows],
                y=[r.co for r in rows],
                name=name,
                marker_color=colour,
                boxmean=True,
            )
        )
    fig.update_layout(
        boxmode="group",
        height=360,
        yaxis_title="CO score",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title=f"AX variant {variant}",
    )
    return fig


def gap_rows(result: CoScoreResult) -> list[dict]:
    """One table row per method and variant: group sizes, means, and the gaps."""
    return [
        {
            "method": get_method(g.method).title,
            "AX variant": g.variant,
            "correct predictions": g.n_correct,
            "wrong predictions": g.n_wrong,
            "mean CO (correct)": g.mean_correct,
            "mean CO (wrong)": g.mean_wrong,
            "mean gap": g.mean_gap,
            "median gap": g.median_gap,
        }
        for g in result.gaps
        if g.method not in result.skipped
    ]


def gap_problem(result: CoScoreResult) -> tuple[str, bool]:
    """Why the correct/wrong gap cannot be measured on this set, in words ("" when it can), and
    whether a set with wrong predictions would help (every labelled prediction is right)."""
    gaps = [g for g in result.gaps if g.method not in result.skipped]
    if not gaps or any(g.n_correct and g.n_wrong for g in gaps):
        return "", False
    images = len({r.image for r in result.rows})
    labelled = len({r.image for r in result.rows if r.true is not None})
    if labelled == 0:
        return (
            f"None of these {wording.plural(images, 'image')} has a label that is a class of this model, so "
            "right and wrong predictions cannot be told apart and the gap cannot be measured.",
            False,
        )
    if all(g.n_wrong == 0 for g in gaps):
        return (
            f"The model predicts every one of the {wording.plural(labelled, 'labelled image')} right, so there "
            "is no wrongly predicted image and the gap between correct and wrong predictions cannot be measured. "
            "Use a set with wrong predictions: the harder generated set, or images of your own.",
            True,
        )
    return (
        f"The model predicts every one of the {wording.plural(labelled, 'labelled image')} wrong, so the gap "
        "between correct and wrong predictions cannot be measured.",
        False,
    )


def _use_hard_set() -> None:
    state.set_kept(SOURCE, HARD)


def _show(result: CoScoreResult) -> None:
    if not result.complete:
        images = len({r.image for r in result.rows})
        st.warning(
            f"Stopped early: rows of {images} of {wording.plural(result.n_images, 'image')} are shown. "
            "Press Run to start again."
        )
    for method, reason in result.skipped.items():
        st.caption(f"{get_method(method).title} was left out: {reason}")
    if not result.rows:
        return
    problem, harder_helps = gap_problem(result)
    if problem:
        st.warning(problem)
        if harder_helps and state.kept_value(SOURCE) != HARD:
            st.button("Use the harder generated set", key="co.act.hard", on_click=_use_hard_set)
    st.subheader("Gap between correctly and wrongly predicted images")
    for gap in result.gaps:
        if gap.method in result.skipped:
            continue
        title = get_method(gap.method).title
        if gap.mean_gap is None:
            st.markdown(
                f"- **{title}** ({gap.variant}): no gap, {gap.n_correct} correct and {gap.n_wrong} wrong "
                "predictions with a label."
            )
        else:
            st.markdown(
                f"- **{title}** ({gap.variant}): mean CO of correct minus wrong = {gap.mean_gap:+.3f}, "
                f"median {gap.median_gap:+.3f} ({gap.n_correct} correct, {gap.n_wrong} wrong)"
            )
    for variant in result.variants:
        st.plotly_chart(box_figure(result, variant), key=f"co.chart.{variant}")
    st.dataframe(gap_rows(result), hide_index=True)
    st.subheader("All rows")
    st.dataframe(wording.plain_table(result.table()), hide_index=True)
    a, b = st.columns(2)
    a.download_button(
        "Rows (CSV)",
        result.csv_text().encode(),
        file_name="co_scores.csv",
        mime="text/csv",
        on_click="ignore",
        key="co.act.csv",
    )
    b.download_button(
        "Summary (JSON)",
        render.json_bytes(result.record()),
        file_name="co_scores.json",
        mime="application/json",
        on_click="ignore",
        key="co.act.json",
    )


def main() -> None:
    st.title("AX and CO scores over an image set")
    bundle = state.current_model()
    if bundle is None:
        st.info("Choose a model in the sidebar.")
        return
    st.caption(
        "Each method's heatmap for the predicted class, divided by its absolute maximum, is added to the image "
        "(x + h) or multiplied with it (x · h); the CO score κ·(f(x + h) − f(x)) is taken against the true class "
        "when known, else the predicted one."
    )
    image_set, set_key = _image_set(bundle)
    methods = widgets.choose_methods(METHODS, bundle, default=FAST)
    variants = st.multiselect(
        "AX variants", list(VARIANTS), **state.kept("co.w.variants", default=list(VARIANTS), options=list(VARIANTS))
    )
    seed = int(state.kept_value("co.w.seed", 0))
    a, b = st.columns(2)
    run = a.button("Run", type="primary", key="co.act.run", width="stretch")
    b.button("Stop", key="co.act.stop", width="stretch", help="Stops after the batch in flight; finished rows stay.")
    if image_set is None:
        st.info("Upload a zip of images to score.")
        return
    if not methods or not variants:
        st.info("Choose at least one method and one variant.")
        return
    key = state.result_key(
        "co", fingerprint=bundle.fingerprint, images=set_key, methods=methods, variants=variants, seed=seed
    )
    result = state.get_result(key)
    if result is None and run:
        result = _run(bundle, image_set, key, methods=methods, variants=variants, seed=seed)
        state.put_result(key, result)  # the partial rows go with it
    partial = state.partial(key)
    if result is None and partial is not None:
        result = _summarize(
            bundle, partial, methods=methods, variants=variants, n_images=len(image_set), seed=seed, complete=False
        )
    if result is None:
        seconds = cost.estimate(bundle, methods, images=len(image_set)).total_s + cost.seconds_for(
            bundle, len(image_set) * len(methods) * (1 + len(variants)) * FORWARD_UNITS
        )
        st.info(
            f"Press Run to score {wording.plural(len(image_set), 'image')} with "
            f"{wording.plural(len(methods), 'method')}: {wording.estimate(seconds)}."
        )
        return
    _show(result)


sidebar.render()
with state.guarded("the AX / CO page"):
    main()
