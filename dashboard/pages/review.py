"""Review: step through a list of cases and record a verdict on each method's map.

The cases come from a folder under the server's case root (``XAI_CASES_ROOT``, or
``xai-dashboard --cases-root DIR``) or from an uploaded zip (:func:`xaicore.review.cases.open_cases`).
Each case is explained by the sidebar's model for its predicted class with the chosen methods
(stored under the Explain page's keys, so nothing is computed twice). A verdict (plausible, not
plausible, unsure, with a note) is written to the review database
(:class:`xaicore.review.verdicts.ReviewStore`, ``XAI_REVIEW_DB`` or ``--review-db``) the moment it
is saved, with the map and what made it, so a closed tab or a stopped server loses nothing; the
report (HTML, PDF) is made from the database when it is downloaded.
"""

from __future__ import annotations

import streamlit as st

from dashboard import explanations, sidebar, state, uploads, widgets, wording
from dashboard.render import tiles
from dashboard.safe_text import plain
from xaicore.data.images import image_hash
from xaicore.errors import XaiError
from xaicore.explainers import cost
from xaicore.explainers.registry import get_method
from xaicore.render import heatmaps
from xaicore.review.cases import CaseList, LoadedCase, case_folders, folder_within, open_cases
from xaicore.review.config import CASES_ROOT_ENV, cases_root, default_db_path
from xaicore.review.report import REVIEW_VIEW, build_review_report, draw_map, html_text, pdf_bytes, verdict_line
from xaicore.review.verdicts import Judgement, ReviewedMap, ReviewStore

W = "review.w."
FOLDER, ZIP = "Folder on the server", "Upload a zip"
DEFAULT_METHODS = ("gradcam", "integrated_gradients", "saliency")
SEED, BASELINE = 0, "black"
AUTO_S = 10.0  # a case's maps start by themselves when their estimate is within this; else on a click
CHOICES = {j.value: j.value.capitalize() for j in Judgement}


@st.cache_resource(show_spinner=False)
def _store(path: str) -> ReviewStore:
    """The review database, opened once per server (each call opens its own connection)."""
    return ReviewStore(path)


def _case_list() -> CaseList | None:
    """The case list chosen on the page (kept in the session), or None while none is open."""
    sources = [FOLDER, ZIP]
    source = st.radio("Cases", sources, horizontal=True, **state.kept(W + "source", default=FOLDER, options=sources))
    if source == ZIP:
        upload = st.file_uploader(
            "Zip of case images",
            type=["zip"],
            key="review.act.zip",
            max_upload_size=uploads.IMAGE_UPLOAD_MB,
            help="Every image in the archive is one case, in the order of their paths.",
        )
        if upload is None:
            return None
        uploads.check_image_size(upload, upload.name)
        key = state.result_key("cases", zip=upload.file_id)
        found = state.get_result(key)
        if found is None:
            found = open_cases(upload.getvalue(), name=upload.name)
            state.put_result(key, found)
        return found
    root = cases_root()
    if root is None:
        st.info(
            f"No folder of cases is set on this server: start it with `xai-dashboard --cases-root DIR` "
            f"(or set {CASES_ROOT_ENV}), or upload a zip."
        )
        return None
    folders = list(case_folders(root))
    a, b = st.columns([4, 1])
    folder = a.selectbox(
        "Folder",
        folders,
        format_func=lambda f: f"{root.name}/ (all)" if f == "." else f,
        **state.kept(W + "folder", default=folders[0], options=folders),
    )
    path = folder_within(root, folder)
    key = state.result_key("cases", folder=str(path))
    b.button("Read again", key="review.act.reread", on_click=state.result_store().discard, args=(key,))
    found = state.get_result(key)
    if found is None:
        found = open_cases(path)
        state.put_result(key, found)
    return found


def _step(key: str, size: int, delta: int) -> None:
    current = int(state.kept_value(key, 0) or 0)
    state.set_kept(key, min(max(current + delta, 0), size - 1))


def _choose_case(cases: CaseList, judged: dict[str, frozenset[str]], reviewer: str) -> int:
    key = W + "case"
    size = len(cases)
    positions = list(range(size))

    def label(k: int) -> str:
        name = cases.cases[k].name
        mark = " ✓" if reviewer and reviewer in judged.get(name, ()) else ""
        return f"{k + 1} of {size}: {name}{mark}"

    a, b, c = st.columns([1, 4, 1], vertical_alignment="bottom")
    index = int(state.kept_value(key, 0) or 0)
    a.button(
        "Previous",
        key="review.act.prev",
        icon=":material/arrow_back:",
        shortcut="P",
        on_click=_step,
        args=(key, size, -1),
        disabled=index <= 0,
        width="stretch",
    )
    chosen = b.selectbox(
        "Case", positions, format_func=label, **state.kept(key, default=0, options=positions, scope=cases.source)
    )
    c.button(
        "Next",
        key="review.act.next",
        icon=":material/arrow_forward:",
        shortcut="N",
        on_click=_step,
        args=(key, size, 1),
        disabled=int(chosen) >= size - 1,
        width="stretch",
    )
    st.caption("Keys: N next case, P previous case (when the cursor is not in a text box). ✓: judged by you.")
    return int(chosen)


def _current(loaded: LoadedCase) -> state.CurrentImage:
    array = loaded.image.array
    return state.CurrentImage(
        array=array, name=loaded.case.name, hash=image_hash(array), source="review", notices=loaded.image.notices
    )


def _explained(bundle, image: state.CurrentImage, methods: list[str], target: int) -> dict:
    """Each chosen method's stored result; the missing ones are computed when quick, else on a click."""
    params = {name: get_method(name).resolve_params({}) for name in methods}
    keys = explanations.keys(bundle, image, methods, params=params, seed=SEED, baseline=BASELINE, target=target)
    missing = [n for n in methods if state.get_result(keys[n]) is None]
    if missing:
        estimate = cost.estimate(bundle, missing, params=params)
        quick = estimate.total_s <= AUTO_S
        if quick or st.button(
            f"Explain ({cost.describe_seconds(estimate.total_s)})", type="primary", key="review.act.explain"
        ):
            with st.spinner("Explaining…"):
                explanations.run(
                    bundle, image, missing, keys, target=target, params=params, seed=SEED, baseline=BASELINE
                )
    return {n: state.get_result(keys[n]) for n in methods}


def _save(store: ReviewStore, loaded: LoadedCase, result, method: str, reviewer: str) -> None:
    """The form's submit callback: runs before the page is drawn, so the page shows the verdict."""
    judgement = st.session_state.get(f"review.act.verdict.{method}")
    note = st.session_state.get(f"review.act.note.{method}") or ""
    flash = f"review.flash.{method}"
    if judgement is None:
        st.session_state[flash] = ("warning", "Choose plausible, not plausible or unsure first.")
        return
    try:
        saved = store.record(
            loaded.ref, ReviewedMap.from_result(result, method), reviewer=reviewer, judgement=judgement, note=note
        )
    except XaiError as exc:
        st.session_state[flash] = ("error", str(exc))
        return
    st.session_state[flash] = ("success", f"Saved: {saved.judgement.value}.")


def _verdict_form(store: ReviewStore, loaded: LoadedCase, result, method: str, reviewer: str) -> None:
    with st.form(f"review.act.form.{method}", clear_on_submit=True, border=False):
        st.radio(
            "Verdict",
            list(CHOICES),
            format_func=CHOICES.get,
            index=None,
            horizontal=True,
            key=f"review.act.verdict.{method}",
        )
        st.text_area("Note", key=f"review.act.note.{method}", height=68, max_chars=5000)
        st.form_submit_button(
            "Save verdict", icon=":material/save:", on_click=_save, args=(store, loaded, result, method, reviewer)
        )
    kind, message = st.session_state.pop(f"review.flash.{method}", (None, ""))
    if kind == "success":
        st.success(plain(message), icon=":material/check:")
    elif kind == "warning":
        st.warning(plain(message))
    elif kind == "error":
        st.error(plain(message))


def _map_cell(store: ReviewStore, loaded: LoadedCase, result, method: str, reviewer: str) -> None:
    item = result.by_method()[method]
    picture, bar, bar_text = draw_map(item.attribution, result.image, item.status.value)
    st.markdown(f"**{plain(item.title)}**")
    st.image(tiles.enlarged(picture, min_width=256), width="stretch", output_format="PNG")
    if bar is not None:
        st.image(bar, width="stretch", output_format="PNG")
    st.caption(plain(bar_text))
    if reviewer:
        _verdict_form(store, loaded, result, method, reviewer)
    latest = store.latest(loaded.ref, method=method)  # after the form: a verdict saved just now shows
    lines = [v for v in latest if v.model_fingerprint == result.provenance.model_fingerprint]
    if lines:
        st.markdown("\n".join(f"- {plain(verdict_line(v))}" for v in lines))


def _report(store: ReviewStore, cases: CaseList | None) -> None:
    st.subheader("Report")
    scopes = ["This case list", "Every case in the database"] if cases is not None else ["Every case in the database"]
    scope = st.radio(
        "Cases in the report", scopes, horizontal=True, **state.kept(W + "scope", default=scopes[0], options=scopes)
    )
    source = cases.source if cases is not None and scope == scopes[0] else None

    def report():
        chosen = [c for c in store.cases() if source is None or c.source == source]
        return build_review_report(store, cases=chosen)

    st.caption(
        "One page per case with every judged map, its colour bar, the verdicts and notes, the model fingerprint, "
        "parameters and versions; made from the database when you click."
    )
    a, b = st.columns(2)
    a.download_button(
        "Report (PDF)",
        lambda: pdf_bytes(report()),
        file_name="review-report.pdf",
        mime="application/pdf",
        on_click="ignore",
        key="review.act.pdf",
        icon=":material/picture_as_pdf:",
    )
    b.download_button(
        "Report (HTML)",
        lambda: html_text(report()).encode(),
        file_name="review-report.html",
        mime="text/html",
        on_click="ignore",
        key="review.act.html",
        icon=":material/description:",
    )


def main() -> None:
    st.title("Review")
    st.markdown(
        "Step through a list of cases and say, for each method's map, whether it is plausible. "
        "Every verdict is saved at once with your name and the time; earlier verdicts stay in the history."
    )
    store = _store(str(default_db_path()))
    st.caption(f"Verdicts are kept in {plain(str(store.path))}.")
    reviewer = st.text_input(
        "Your name (reviewer)",
        max_chars=100,
        placeholder="Needed to give verdicts",
        **state.kept(W + "reviewer", default=""),
    ).strip()
    bundle = state.current_model()
    cases = _case_list()
    if cases is not None:
        for notice in cases.notices:
            st.caption(plain(notice))
    if bundle is None:
        st.info("Choose a model in the sidebar.")
    elif cases is not None:
        _review(store, bundle, cases, reviewer)
    _report(store, cases)


def _review(store: ReviewStore, bundle, cases: CaseList, reviewer: str) -> None:
    index = _choose_case(cases, store.judged(cases.source), reviewer)
    loaded = cases.load(index)
    image = _current(loaded)
    for notice in image.notices:
        st.caption(plain(notice))
    predictions = state.predictions(bundle, image)
    top = predictions[0]
    methods = widgets.choose_methods(W + "methods", bundle, default=DEFAULT_METHODS)
    left, right = st.columns([1, 3])
    with left:
        st.image(
            tiles.enlarged(heatmaps.to_uint8(image.array), min_width=256),
            caption=plain(loaded.case.name),
            width="stretch",
            output_format="PNG",
        )
        st.markdown(f"**Prediction:** {plain(top.label)} ({top.probability:.1%})")
        st.caption(f"Maps explain the predicted class. sha256 {loaded.sha256[:16]}…")
    with right:
        st.caption(plain(REVIEW_VIEW.describe()))
        if not reviewer:
            st.info("Enter your name above to give verdicts.")
        results = _explained(bundle, image, methods, top.index)
        done = [(n, r) for n, r in results.items() if r is not None]
        for start in range(0, len(done), 3):
            for column, (name, result) in zip(st.columns(3), done[start : start + 3]):
                with column:
                    _map_cell(store, loaded, result, name, reviewer)
    if not methods:
        st.info(f"Choose at least one method; {wording.plural(len(cases), 'case')} wait.")


sidebar.render()
with state.guarded("the Review page"):
    main()
