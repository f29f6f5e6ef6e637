"""The Clever-Hans lab: a model that cheats on a stamp, found, located, corrected and verified.

The lab always works on the shipped Clever-Hans model (``clever-hans``), whatever the sidebar
shows. Find: its accuracies on the three stamped test sets and its flip rate. Locate: LRP maps
for heart on a fixed grid of stamped images, and the share of relevance inside a box chosen by
sliders against the box's share of the image. Fix: P-ClArC, A-ClArC or RRR on a private copy,
with a progress bar; the corrected models are kept for the session. Verify: one table and one
chart of every figure for the original and each corrected model, with the survey's warning in
words where a map looks clean while the behaviour stays.
"""

from __future__ import annotations

import streamlit as st

from dashboard import sidebar, state
from dashboard.render import clever_hans as render
from dashboard.render import tiles
from dashboard.safe_text import plain
from xaicore.clever_hans import grid, measures, verify
from xaicore.clever_hans.finetune import FineTune
from xaicore.clever_hans.pclarc import DEFAULT_LAYER
from xaicore.data import stamped
from xaicore.data.shapes import CLASSES
from xaicore.models.default import INPUT_SIZE

W = "hans.w."
CORRECTIONS = "hans.corrections"  # method -> verify.Correction, kept for the session
TEST_SEED = 2024
LAYERS = ("net.features.pool2", "net.features.pool3", "net.features.pool4")
SIZE = INPUT_SIZE[0]


@st.cache_resource(max_entries=4, show_spinner=False)
def _tests(n: int) -> measures.TestSets:
    return measures.make_test_sets(seed=TEST_SEED, n=n)


def _corrections() -> dict[str, verify.Correction]:
    return st.session_state.setdefault(CORRECTIONS, {})


def _find(bundle, tests: measures.TestSets, quick: bool) -> None:
    st.header("1. Find")
    st.markdown(
        "The same images three times: with the stamp as in training (i.i.d.), without it (clean), and with it "
        "on every image (stamped). A model that learned the shapes scores about the same on all three."
    )
    key = state.result_key("hans.find", fingerprint=bundle.fingerprint, n=tests.n, quick=quick)
    if st.button("Measure the model", key="hans.act.find"):
        with st.spinner("Measuring…"):
            state.put_result(key, measures.find(bundle, tests, relevance_images=4 if quick else 32))
    found = state.get_result(key)
    if found is None:
        return
    for column, (label, value) in zip(st.columns(4), render.find_metrics(found), strict=True):
        column.metric(label, value)
    if found.accuracy_gap >= 0.1 or found.flip_rate >= 0.3:
        st.warning(
            f"Pasting the stamp costs {found.accuracy_gap:.0%} of accuracy and changes {found.flip_rate:.0%} of the "
            "predictions: the model may be using the stamp. Look at its heatmaps below."
        )


def _locate(bundle) -> measures.Box:
    st.header("2. Locate")
    st.markdown(
        "LRP maps for **heart** on one stamped image of each class (red: evidence for heart). Put the box "
        "on what the model seems to use; the share of relevance inside it is compared with the box's share "
        "of the image, which a map that ignores the box would score."
    )
    cols = st.columns(4)
    top = cols[0].slider("Box top", 0, SIZE - 1, **state.kept(W + "top", default=stamped.stamp_box(SIZE)[0]))
    left = cols[1].slider("Box left", 0, SIZE - 1, **state.kept(W + "left", default=stamped.stamp_box(SIZE)[1]))
    height = cols[2].slider("Box height", 1, SIZE, **state.kept(W + "height", default=stamped.stamp_box(SIZE)[2]))
    width = cols[3].slider("Box width", 1, SIZE, **state.kept(W + "width", default=stamped.stamp_box(SIZE)[3]))
    box: measures.Box = (top, left, min(height, SIZE - top), min(width, SIZE - left))
    key = state.result_key("hans.grid", fingerprint=bundle.fingerprint)
    maps = state.get_result(key)
    if maps is None:
        images, labels = grid.grid_images()
        with st.spinner("Explaining the grid…"):
            maps = (images, labels, grid.grid_maps(bundle, images))
        state.put_result(key, maps)
    images, labels, relevance = maps
    shares = grid.masses(relevance, box)
    chance = float(measures.box_mask(box).mean())
    st.image(
        [render.tile_with_box(img, rel, box) for img, rel in zip(images, relevance, strict=True)],
        caption=[f"{CLASSES[c]}: {s:.0%} in the box" for c, s in zip(labels, shares, strict=True)],
        width=150,
        output_format="PNG",
    )
    st.metric(
        "Relevance for heart inside the box (mean of the grid)",
        f"{shares.mean():.1%}",
        delta=f"{shares.mean() / chance:.1f}x the box's share of the image ({chance:.1%})",
        delta_color="off",
    )
    return box


def _fix(bundle, box: measures.Box, quick: bool) -> None:
    st.header("3. Fix")
    st.markdown(
        "Each method works on a private copy; the shared model never changes. **P-ClArC** projects the "
        "stamp's direction out of one layer (no training). **A-ClArC** fine-tunes with the stamp pasted onto "
        "half of every batch, all classes alike. **RRR** fine-tunes with a penalty on the input gradients "
        "inside the box, stopping early on images where the stamp says nothing. P-ClArC and A-ClArC paste the "
        "stamp itself; RRR uses the box chosen in step 2."
    )
    method = st.radio(
        "Method", list(verify.METHODS), format_func=verify.METHODS.get, horizontal=True, **state.kept(W + "method",
        default="p-clarc", options=list(verify.METHODS))
    )  # fmt: skip
    c1, c2, c3 = st.columns(3)
    if method == "p-clarc":
        layer = c1.selectbox("Layer", LAYERS, **state.kept(W + "layer", default=DEFAULT_LAYER, options=list(LAYERS)))
        settings = None
    else:
        layer = DEFAULT_LAYER
        epochs = c1.number_input("Epochs", 1, 10, **state.kept(W + "epochs", default=2))
        images = c2.number_input("Images per epoch", 64, 8192, step=64, **state.kept(W + "images", default=1024))
        lr = c3.number_input("Learning rate", 1e-5, 1e-2, format="%.5f", **state.kept(W + "lr", default=5e-4))
        settings = FineTune(epochs=1, images_per_epoch=256) if quick else FineTune(
            epochs=int(epochs), images_per_epoch=int(images), lr=float(lr)
        )  # fmt: skip
    if st.button(f"Correct with {verify.METHODS[method]}", key="hans.act.fix"):
        bar = st.progress(0.0, text="Starting…")

        def progress(share: float, line: str) -> None:
            bar.progress(min(1.0, share), text=line)

        correction = verify.correct(
            bundle,
            method=method,
            box=box,
            settings=settings,
            layer=layer,
            direction_images=64 if quick else 256,
            validation_images=64 if quick else 256,
            progress=progress,
        )
        bar.progress(1.0, text="Done")
        _corrections()[method] = correction
        state.keep_session_model(f"session:{method}", correction.bundle)
    kept = _corrections()
    if kept:
        st.caption(
            "Corrected models kept for this session, also in the sidebar's model menu for every page: "
            + ", ".join(f"{plain(c.bundle.name)} (`{c.bundle.fingerprint[:12]}`)" for c in kept.values())
        )
        pclarc = kept.get("p-clarc")
        if pclarc is not None:
            st.toggle("Include P-ClArC's projection in the verification", **state.kept(W + "pclarc_on", default=True))


def _verify(bundle, tests: measures.TestSets, box: measures.Box, quick: bool) -> None:
    st.header("4. Verify")
    kept = _corrections()
    chosen = [c for m, c in kept.items() if m != "p-clarc" or state.kept_value(W + "pclarc_on", True)]
    key = state.result_key(
        "hans.verify", fingerprints=tuple(c.bundle.fingerprint for c in chosen), n=tests.n, box=box, quick=quick
    )
    if st.button("Verify the original and the corrected models", key="hans.act.verify"):
        with st.spinner("Measuring every model…"):
            state.put_result(key, verify.verify(bundle, chosen, tests, box=box, relevance_images=4 if quick else 32))
    table = state.get_result(key)
    if table is None:
        if not kept:
            st.caption("Correct the model in step 3 first, or verify the original alone.")
        return
    st.dataframe(render.table_rows(table), hide_index=True)
    st.caption(
        f"{table.test_images} images per test set (seed {table.test_seed}); fixed = at most "
        f"{verify.MAX_FALSE_CLASS:.0%} of stamped non-hearts called heart, a flip rate of at most "
        f"{verify.MAX_FLIP:.0%}, and a clean accuracy not lower than the original's."
    )
    for row in table.rows:
        if row.warning:
            st.warning(f"**{plain(row.name)}**: {row.warning}")
    st.plotly_chart(render.verify_figure(table), key="hans.chart.verify")
    _grids(bundle, chosen, box)
    st.download_button(
        "Record (JSON)",
        lambda: tiles.json_bytes(table.record()),
        file_name=f"clever-hans-{bundle.fingerprint[:8]}.json",
        mime="application/json",
        on_click="ignore",
        key="hans.act.json",
    )


def _grids(bundle, corrections: list[verify.Correction], box: measures.Box) -> None:
    """The fixed grid's maps for heart, before (the original) and after each correction."""
    with st.expander("The fixed grid before and after"):
        images, labels = grid.grid_images()
        for model in [bundle, *(c.bundle for c in corrections)]:
            key = state.result_key("hans.grid", fingerprint=model.fingerprint)
            found = state.get_result(key)
            if found is None:
                found = (images, labels, grid.grid_maps(model, images))
                state.put_result(key, found)
            shares = grid.masses(found[2], box)
            st.markdown(f"**{plain(model.name)}** · {shares.mean():.0%} of the relevance for heart in the box")
            st.image(
                [render.tile_with_box(img, rel, box, scale=2) for img, rel in zip(images, found[2], strict=True)],
                caption=[f"{CLASSES[c]}: {s:.0%}" for c, s in zip(labels, shares, strict=True)],
                width=100,
                output_format="PNG",
            )


def main() -> None:
    st.title("Clever-Hans lab")
    st.markdown(
        "A model that cheats: the Clever-Hans shapes CNN was trained on images where a small stamp in the "
        "bottom-right corner sits on 90% of the hearts and 2% of the other shapes. Find the cheat, locate it "
        "with heatmaps, correct it, and check whether the behaviour, not only the heatmap, changed. The lab "
        "always uses this model, whatever the sidebar shows."
    )
    bundle = state.shared_model("clever-hans")
    c1, c2 = st.columns(2)
    n = c1.number_input("Images per test set", 40, 2000, step=40, **state.kept(W + "n", default=320))
    quick = c2.toggle(
        "Quick setting",
        help="Few images and one short epoch: for a first look.",
        **state.kept(W + "quick", default=False),
    )
    tests = _tests(int(n))
    with state.guarded("the Find step"):
        _find(bundle, tests, quick)
    box: measures.Box = stamped.stamp_box(SIZE)
    with state.guarded("the Locate step"):
        box = _locate(bundle)
    with state.guarded("the Fix step"):
        _fix(bundle, box, quick)
    with state.guarded("the Verify step"):
        _verify(bundle, tests, box, quick)


sidebar.render()
with state.guarded("the Clever-Hans lab"):
    main()
