"""Report card: which explanation methods deserve trust for this model, over a set of images.

The evaluation (:mod:`xaicore.evaluation.rows`) runs batch by batch; every finished batch's rows go
into the session's result store at once (:func:`dashboard.state.keep_partial`), so Stop, a widget
change or any rerun keeps them: the partial card is shown and Run continues from there. A finished
evaluation replaces them in the store. Results of the Sanity checks, Class discriminativeness and AX / CO
pages for the same model, when present in the store, join the card (the latest of each).

*Where to compute*: in this server's process, or on a Ray cluster (:mod:`xaicore.evaluation.ray_engine`)
whose address the user gives (``XAI_RAY_ADDRESS`` fills it in; empty starts a Ray on this machine
for the run); the rows and the progress come back batch by batch either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any, cast

import streamlit as st

from dashboard import sidebar, state, uploads, widgets, wording
from dashboard.render import tiles as render
from dashboard.safe_text import plain
from xaicore.checks.discriminative import ClassesResult
from xaicore.checks.sanity import SanityResult
from xaicore.confidence.co_sets import CoScoreResult
from xaicore.data.evalsets import sample_set, scene_set
from xaicore.data.imagesets import ImageSet, generated_test_set, load_image_set, relabel
from xaicore.evaluation.ray_engine import RayEngine
from xaicore.evaluation.report import RULES, TEST_NAMES, build_report
from xaicore.evaluation.rows import METRICS, EvalRow, Evaluation, evaluate, make_settings, rows_csv, summarize
from xaicore.explainers import cost
from xaicore.explainers.methods import FORWARD_UNITS
from xaicore.explainers.registry import get_method
from xaicore.metrics.faithfulness import forward_passes

W = "report.w."
LOCAL, RAY = "This server", "A Ray cluster"
ADDRESS_VARIABLE = "XAI_RAY_ADDRESS"
GENERATED, SCENES, SAMPLES, UPLOAD = "Generated shapes", "Generated scenes (with masks)", "Samples", "Upload a zip"
METRIC_TITLES = {
    "insertion": "Insertion AUC",
    "deletion": "Deletion AUC",
    "pointing": "Pointing game",
    "mass": "Relevance mass",
    "rank": "Relevance rank",
    "runtime": "Runtime",
}


@st.cache_data(max_entries=4, show_spinner="Generating images…")
def _generated(kind: str, n: int, seed: int) -> ImageSet:
    return generated_test_set(n, seed=seed) if kind == GENERATED else scene_set(n, seed=seed)


@st.cache_data(max_entries=1, show_spinner="Loading the samples…")
def _samples() -> ImageSet:
    return sample_set()


@st.cache_data(max_entries=2, show_spinner="Reading the images…")
def _zip_set(data: bytes, class_names: tuple[str, ...], preprocess) -> ImageSet:
    return load_image_set(data, class_names=class_names, preprocess=preprocess)


def _for_model(image_set: ImageSet, bundle) -> ImageSet:
    """The set with its labels matched to ``bundle``'s classes by name (masks stay); labels of
    classes the model does not have are left out, with a notice."""
    matched = relabel(image_set, bundle.labels)
    for notice in matched.notices[len(image_set.notices) :]:
        st.caption(notice)
    return matched


def _image_set(bundle) -> tuple[ImageSet | None, str]:
    """The chosen image set and how it is named (None while a zip is awaited)."""
    sources = [GENERATED, SCENES, SAMPLES, UPLOAD]
    source = st.radio(
        "Images", sources, horizontal=True, **state.kept(W + "source", default=GENERATED, options=sources)
    )
    if source in (GENERATED, SCENES):
        a, b = st.columns(2)
        n = int(
            a.number_input(
                "Number of images" if source == GENERATED else "Number of scenes (two objects each)",
                min_value=1,
                max_value=2000,
                step=8,
                **state.kept(W + "n", default=16),
            )
        )
        seed = int(
            b.number_input(
                "Seed of the images", min_value=0, max_value=2**31 - 1, step=1, **state.kept(W + "data_seed", default=0)
            )
        )
        name = f"{'generated' if source == GENERATED else 'scenes'}:{n}:{seed}"
        return _for_model(_generated(source, n, seed), bundle), name
    if source == SAMPLES:
        return _for_model(_samples(), bundle), "samples"
    upload = st.file_uploader(
        "Zip of images",
        type=["zip"],
        key="report.act.zip",
        max_upload_size=uploads.IMAGE_UPLOAD_MB,
        help="Sub-folders named like the model's classes label their images; "
        "<name>.mask.png beside an image is its object mask.",
    )
    if upload is None:
        return None, ""
    image_set = _zip_set(upload.getvalue(), tuple(bundle.labels), bundle.preprocess)
    for notice in image_set.notices:
        st.caption(plain(notice))
    return image_set, f"zip:{upload.name}"


def _settings(bundle, image_set: ImageSet, data: str):
    methods = widgets.choose_methods(W + "methods", bundle)
    metrics = st.multiselect(
        "Metrics",
        list(METRICS),
        format_func=cast(Callable[[Any], str], METRIC_TITLES.get),  # every metric has a title
        **state.kept(W + "metrics", default=list(METRICS), options=list(METRICS)),
    )
    with st.expander("Settings"):
        a, b, c = st.columns(3)
        target = a.selectbox(
            "Class explained",
            ["label", "predicted"],
            **state.kept(W + "target", default="label", options=["label", "predicted"]),
            format_func=cast(
                Callable[[Any], str], {"label": "True class when known", "predicted": "Predicted class"}.get
            ),  # every option has a title
        )
        step = b.number_input(
            "Curve step (fraction of the pixels)",
            min_value=0.005,
            max_value=0.5,
            step=0.01,
            format="%.3f",
            **state.kept(W + "step", default=0.05),
        )
        background = c.selectbox(
            "Removed pixels become",
            ["black", "blur", "mean"],
            **state.kept(W + "background", default="black", options=["black", "blur", "mean"]),
        )
        d, e = st.columns(2)
        seed = int(
            d.number_input(
                "Seed (random control, stochastic methods)",
                min_value=0,
                max_value=2**31 - 1,
                step=1,
                **state.kept(W + "seed", default=0),
            )
        )
        batch = int(
            e.number_input("Images per batch", min_value=1, max_value=256, step=1, **state.kept(W + "batch", default=8))
        )
    if not methods or not metrics:
        return None
    return make_settings(
        bundle,
        image_set,
        methods=methods,
        metrics=metrics,
        data=data,
        target=target,
        seed=seed,
        step_fraction=float(step),
        background=background,
        batch_size=batch,
    )


def _partial(key) -> list:
    """The rows kept in this session for the unfinished evaluation ``key`` (kept in the result
    store until evicted, so going back to earlier settings resumes them)."""
    rows = state.partial(key)
    return rows if isinstance(rows, list) else state.keep_partial(key, [])


def _engine():
    """Where the rows are computed: this process, or Ray at the address given (None: local)."""
    with st.expander("Where to compute"):
        where = st.radio(
            "Compute on", [LOCAL, RAY], horizontal=True, **state.kept(W + "engine", default=LOCAL, options=[LOCAL, RAY])
        )
        if where == LOCAL:
            return evaluate, ""
        address = st.text_input(
            "Ray address",
            placeholder="auto, HOST:PORT or ray://HOST:10001",
            help="The head of the Ray cluster (its nodes need xaicore installed). Empty: a Ray started on "
            "this machine for the run. Each actor of the cluster loads the model once, on a GPU where there is one.",
            **state.kept(W + "ray_address", default=os.environ.get(ADDRESS_VARIABLE, "")),
        ).strip()
        return RayEngine(address=address or None), f" on Ray ({address or 'this machine'})"


def _run(bundle, image_set: ImageSet, settings, kept: list, engine, where: str) -> Evaluation:
    """Compute the rows not kept yet; each finished batch's rows are kept at once."""
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(done / total, text=f"{message}{where} ({done} of {wording.plural(total, 'image')} done)")

    evaluation = engine(bundle, image_set, settings, done_rows=list(kept), on_rows=kept.extend, progress=progress)
    bar.empty()
    return evaluation


def _latest(kind: type[Any], fingerprint: str):
    """The most recently stored result of ``kind`` for the model ``fingerprint``, or None."""
    found = None
    for _key, value in state.result_store().items():
        if isinstance(value, kind) and value.provenance.model_fingerprint == fingerprint:
            found = value
    return found


def _image_name(result) -> str:
    """The name of the one image ``result`` was computed on when it is the sidebar's image (its
    store key names the image's hash), else "" (the card then says "from one image")."""
    image = state.current_image()
    for store_key, value in state.result_store().items():
        if value is result:
            key = cast(tuple[Hashable, ...], store_key)  # result_key() tuples
            parts = dict(key[1]) if len(key) > 1 and isinstance(key[1], tuple) else {}
            if image is not None and parts.get("image") == image.hash:
                return image.name
    return ""


def _sources(sanity, classes, co, scopes: dict[str, str]) -> None:
    lines = []
    if sanity is not None:
        label = sanity.labels[int(sanity.targets[0])] if sanity.labels else int(sanity.targets[0])
        lines.append(
            f"sanity check from the Sanity checks page, {scopes.get('sanity', 'from one image')} (class {label})"
        )
    if classes is not None:
        lines.append(
            f"class comparison from the Class discriminativeness page, {scopes.get('classes', 'from one image')} "
            f"({', '.join(classes.class_labels)})"
        )
    if co is not None:
        lines.append(f"CO scores from the AX / CO page, over {wording.plural(co.n_images, 'image')}")
    if lines:
        st.caption("Also on this card: " + "; ".join(lines) + ".")
    else:
        st.caption(
            "Run the Sanity checks, Class discriminativeness or AX / CO pages for this model to add their "
            "verdicts to the card."
        )


def _shown_columns(table: list[dict]) -> list[str]:
    """Title and verdicts first, then the figures; columns with nothing measured are left out."""
    columns = [
        c
        for c in dict.fromkeys(k for line in table for k in line)
        if c != "method" and any(line.get(c) not in (None, "", "not measured") for line in table)
    ]
    verdicts = [c for c in columns if c.endswith(" verdict")]
    return ["title", *verdicts, *(c for c in columns if c != "title" and c not in verdicts)]


_VERDICT_TESTS = {f"{test} verdict": test for test in TEST_NAMES}
NOT_JUDGED = "—"  # a row the tests do not judge (the random control)


def shown_table(card) -> tuple[list[dict], list[str]]:
    """The card's table as shown: plain column titles, each verdict column naming how many images
    its test comes from ("sanity check (from one image: shape: star)"); and the column order."""
    table = card.table(interval_text=True)
    titles = {}
    for key, test in _VERDICT_TESTS.items():
        scope = card.scopes.get(test)
        titles[key] = wording.column_title(key) + (f" ({scope})" if scope else "")
    order = [titles.get(c) or wording.column_title(c) for c in _shown_columns(table)]
    table = [{k: v for k, v in line.items() if k != "method"} for line in table]  # "title" is shown as "method"
    shown = wording.plain_columns(table, titles)
    verdict_titles = [titles[key] for key in _VERDICT_TESTS if titles[key] in order]
    for line in shown:  # the random control is not judged: a dash, not an empty "None"
        for title in verdict_titles:
            line.setdefault(title, NOT_JUDGED)
    return shown, order


def _show(card, evaluation_rows, summary) -> None:
    st.subheader("Summary")
    st.markdown("\n".join(f"- {line}" for line in card.summary))
    st.subheader("Per method")
    table, order = shown_table(card)
    st.dataframe(table, hide_index=True, column_order=order)
    with st.expander("How the verdicts are decided"):
        for test, rule in RULES.items():
            st.markdown(f"- **{TEST_NAMES[test]}**: {rule}")
        if summary is not None:
            st.caption(summary.interval_rule)
    stem = "report-card"
    a, b, c = st.columns(3)
    a.download_button(
        "Report (CSV)",
        card.csv_text().encode(),
        file_name=f"{stem}.csv",
        mime="text/csv",
        on_click="ignore",
        key="report.act.csv",
    )
    b.download_button(
        "Report (JSON)",
        render.json_bytes(card.record()),
        file_name=f"{stem}.json",
        mime="application/json",
        on_click="ignore",
        key="report.act.json",
    )
    c.download_button(
        "Rows (CSV)",
        rows_csv(evaluation_rows).encode(),
        file_name=f"{stem}-rows.csv",
        mime="text/csv",
        on_click="ignore",
        key="report.act.rows",
        disabled=not evaluation_rows,
    )


def _estimate_s(bundle, settings) -> float:
    """The evaluation's work: every method's map of every image, and per map (and for the random
    control) the insertion and deletion curves when they are measured."""
    maps = cost.estimate(bundle, settings.methods, params=settings.params, images=settings.n_images).total_s
    if not {"insertion", "deletion"} & set(settings.metrics):
        return maps
    h, w = bundle.input_size
    curves = forward_passes(h * w, step_fraction=settings.step_fraction, fraction=settings.fraction)
    rankings = len(settings.methods) + (1 if settings.with_control else 0)
    return maps + cost.seconds_for(bundle, settings.n_images * rankings * curves * FORWARD_UNITS)


def main() -> None:
    st.title("Report card")
    st.markdown(
        "Over a set of images: how faithful each method's heatmap is (insertion and deletion against random "
        "pixels), whether it falls on the object (when masks exist) and how long it takes, with 95% intervals; "
        "plus the verdicts of the other pages for this model, and a summary of which methods pass which test."
    )
    bundle = state.current_model()
    if bundle is None:
        st.info("Choose a model in the sidebar.")
        return
    image_set, data = _image_set(bundle)
    settings = None if image_set is None else _settings(bundle, image_set, data)
    engine, where = _engine()
    a, b = st.columns(2)
    run = a.button("Run", type="primary", key="report.act.run", width="stretch")
    b.button("Stop", key="report.act.stop", width="stretch", help="Stops after the batch in flight; its rows stay.")

    rows: tuple[EvalRow, ...]
    evaluation, summary, rows = None, None, ()
    if settings is not None and image_set is not None:  # settings come only with an image set
        key = state.result_key("evaluation", settings=settings.record())
        evaluation = state.get_result(key)
        if evaluation is None:
            kept = _partial(key)
            if run:
                evaluation = _run(bundle, image_set, settings, kept, engine, where)
                state.put_result(key, evaluation)  # the kept rows go with it
            elif kept:
                rows = tuple(kept)
                summary = summarize(rows, settings, device=str(bundle.device))
                st.warning(
                    f"Stopped early: {summary.n_images_done} of {wording.plural(settings.n_images, 'image')} are done. "
                    "Press Run to continue from there."
                )
        if evaluation is not None:
            rows, summary = evaluation.rows, evaluation.summary
        for method, reason in settings.skipped.items():
            st.caption(f"{get_method(method).title} is left out: {reason}")
    elif image_set is None:
        st.info("Upload a zip of images to evaluate.")
    else:
        st.info("Choose at least one method and one metric.")

    sanity = _latest(SanityResult, bundle.fingerprint)
    classes = _latest(ClassesResult, bundle.fingerprint)
    co = _latest(CoScoreResult, bundle.fingerprint)
    if summary is None and sanity is None and classes is None and co is None:
        if settings is not None:
            st.info(
                f"Press Run to evaluate {wording.plural(len(settings.methods), 'method')} on "
                f"{wording.plural(settings.n_images, 'image')}: {wording.estimate(_estimate_s(bundle, settings))}"
                + (" in this process; on Ray, add the start of Ray and its actors." if where else ".")
            )
        return
    names = {
        kind: _image_name(result) for kind, result in (("sanity", sanity), ("classes", classes)) if result is not None
    }
    card = build_report(summary, sanity=sanity, classes=classes, co=co, image_names=names)
    _sources(sanity, classes, co, dict(card.scopes))
    _show(card, rows, summary)


sidebar.render()
with state.guarded("the Report card page"):
    main()
