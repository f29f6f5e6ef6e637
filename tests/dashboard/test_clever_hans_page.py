"""The Clever-Hans lab page and the sidebar's Clever-Hans model, in Streamlit's AppTest."""

from __future__ import annotations

import pytest

from dashboard import sidebar, state
from tests.dashboard import apptest_support as support
from xaicore.clever_hans import measures, verify
from xaicore.clever_hans.model import load_clever_hans_bundle


@pytest.fixture(scope="module")
def hans_table() -> verify.Verification:
    bundle = load_clever_hans_bundle(device="cpu")
    correction = verify.correct(bundle, method="p-clarc", direction_images=16)
    return verify.verify(bundle, [correction], measures.make_test_sets(seed=3, n=40), relevance_images=2)


def test_the_sidebar_offers_the_clever_hans_model():
    at = support.start()
    assert "Clever-Hans shapes CNN" in at.selectbox(key=sidebar.W_MODEL).options  # menu texts
    at.selectbox(key=sidebar.W_MODEL).set_value("clever-hans").run()
    bundle = at.session_state[state.MODEL_KEY]
    assert bundle.source == "clever-hans" and bundle.name == "Clever-Hans shapes CNN"
    assert any("Clever-Hans shapes CNN · 8 classes" in c for c in support.captions(at))


def test_find_shows_the_measured_figures_and_the_box_share():
    at = support.open_page(support.start(), "pages/clever_hans.py")
    at.number_input(key="hans.w.n").set_value(40).run()
    at.toggle(key="hans.w.quick").set_value(True).run()
    at.button(key="hans.act.find").click().run()
    assert not at.exception and support.errors(at) == []
    found = measures.find(load_clever_hans_bundle(device="cpu"), measures.make_test_sets(seed=2024, n=40),
                          relevance_images=4)  # fmt: skip
    shown = {m.label: m.value for m in at.metric}
    assert shown["Accuracy, clean (no stamp)"] == f"{found.accuracy_clean:.1%}"
    assert shown["Flip rate when the stamp is pasted"] == f"{found.flip_rate:.1%}"
    assert "the box's share of the image (3.5%)" in at.metric[-1].delta


def test_a_correction_is_kept_and_offered_to_every_page():
    at = support.open_page(support.start(), "pages/clever_hans.py")
    at.toggle(key="hans.w.quick").set_value(True).run()
    at.button(key="hans.act.fix").click().run()  # P-ClArC, the default method
    assert not at.exception and support.errors(at) == []
    correction = at.session_state["hans.corrections"]["p-clarc"]
    assert correction.bundle.fingerprint != load_clever_hans_bundle(device="cpu").fingerprint
    at = support.open_page(at, "pages/home.py")
    assert "Clever-Hans shapes CNN + P-ClArC (made in this session)" in at.selectbox(key=sidebar.W_MODEL).options
    at.selectbox(key=sidebar.W_MODEL).set_value("session:p-clarc").run()
    assert at.session_state[state.MODEL_KEY] is correction.bundle


def test_the_verify_table_has_a_row_per_figure_and_a_column_per_model(hans_table):
    from dashboard.render import clever_hans as render

    rows = render.table_rows(hans_table)
    assert [r["Figure"] for r in rows] == ["Verdict", *render.FIGURES.values(), "Fingerprint"]
    original = hans_table.rows[0]
    assert rows[0][original.name] == "original"
    assert rows[2][original.name] == f"{original.findings.accuracy_clean:.1%}"
    figure = render.verify_figure(hans_table)
    assert [bar.name for bar in figure.data] == [r.name for r in hans_table.rows]
    assert figure.data[0].y[5] == pytest.approx(100 * original.findings.flip_rate)
    other = support.start()  # another session never sees this session's corrections
    assert not any("made in this session" in o for o in other.selectbox(key=sidebar.W_MODEL).options)
