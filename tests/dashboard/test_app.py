"""The app entry, navigation, the shared sidebar and the per-session state (Streamlit AppTest)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs
from streamlit.testing.v1 import AppTest

from dashboard import navigation, sidebar, state
from dashboard.state import ResultStore, freeze, result_key
from tests.dashboard import apptest_support as support
from xaicore.data.images import image_hash, load_image
from xaicore.errors import ParameterError


@pytest.fixture(scope="module")
def app() -> AppTest:
    """One running session of the app on the Home page (sample image, default model)."""
    return support.start()


# --- entry and navigation ------------------------------------------------------------------


def test_entry_runs_without_exception(app):
    assert not app.exception
    assert support.errors(app) == []
    assert app.title[0].value == "Look inside an image classifier"
    labels = [w.label for w in app.sidebar.selectbox]
    assert labels[:2] == ["Model", "Sample image"] and "Class" in labels


def test_the_sidebar_selects_a_model_an_image_and_the_predicted_class(app):
    bundle = app.session_state[state.MODEL_KEY]
    image = app.session_state[state.IMAGE_KEY]
    assert bundle.source == "default"
    assert image.source == "sample" and image.hash == image_hash(image.array)
    logits = bundle.logits(bundle.to_input(image.array))[0]
    assert app.session_state[state.TARGET_KEY] == int(logits.argmax())


def test_every_page_spec_names_an_existing_file_once():
    files = [spec.file for spec in navigation.PAGES]
    assert len(set(files)) == len(files)
    assert len({spec.title for spec in navigation.PAGES}) == len(files)
    assert all(isinstance(spec, navigation.PageSpec) and spec.path.is_file() for spec in navigation.PAGES)
    assert sum(spec.default for spec in navigation.PAGES) == 1


def test_every_page_runs_without_exception():
    at = support.start()
    at.session_state["explain.w.auto"] = False  # page load only; runs are tested per page
    for spec in navigation.PAGES:
        at = support.open_page(at, f"pages/{spec.file}")
        assert not at.exception, spec.file
        assert support.errors(at) == [], spec.file


def test_sidebar_choices_survive_a_page_switch():
    at = support.start()
    names = at.selectbox(key=sidebar.W_SAMPLE).options
    at.selectbox(key=sidebar.W_SAMPLE).set_value(names[3]).run()
    chosen = at.session_state[state.IMAGE_KEY]
    at.session_state["explain.w.auto"] = False
    at = support.open_page(at, "pages/explain.py")
    at = support.open_page(at, "pages/home.py")
    assert at.selectbox(key=sidebar.W_SAMPLE).value == names[3]
    assert at.session_state[state.IMAGE_KEY].hash == chosen.hash


# --- uploads -------------------------------------------------------------------------------


def test_an_uploaded_png_becomes_the_current_image():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(30, 41, 3), dtype=np.uint8)
    at = support.upload_image(support.start(), "photo.png", support.png_bytes(pixels))
    image = at.session_state[state.IMAGE_KEY]
    assert support.errors(at) == []
    assert image.source == "upload" and image.name == "photo.png"
    np.testing.assert_allclose(image.array, pixels / 255.0, atol=1e-6)
    assert image.hash == image_hash(load_image(support.png_bytes(pixels)).array)


def test_a_bad_upload_shows_one_sentence_and_keeps_the_previous_image():
    at = support.upload_image(support.start(), "good.png", support.png_bytes(np.full((8, 8, 3), 200, np.uint8)))
    before = at.session_state[state.IMAGE_KEY]
    at = support.upload_image(at, "bad.png", b"these bytes are not an image")
    assert not at.exception
    (message,) = support.errors(at)
    assert "bad.png" in message and "Traceback" not in message and message.count(". ") <= 1
    assert at.session_state[state.IMAGE_KEY] is before
    at.run()  # the refused file is still in the widget: same sentence, nothing else changes
    assert support.errors(at) == [message]
    assert at.session_state[state.IMAGE_KEY] is before


def test_receive_upload_processes_a_file_once():
    at = AppTest.from_function(_receive_twice, default_timeout=30).run()
    assert [m.value for m in at.markdown] == [
        "first: ok",
        "second: ok",
        "bad: refused",
        "bad again: refused",
        "image kept: True",
    ]


def _receive_twice() -> None:
    import numpy as np
    import streamlit as st

    from dashboard import sidebar, state
    from tests.dashboard.apptest_support import png_bytes

    data = png_bytes(np.zeros((4, 4, 3), np.uint8))
    st.markdown(f"first: {sidebar.receive_upload('id-1', data, 'a.png') or 'ok'}")
    image = state.current_image()
    # Same id: not read again (garbage bytes would be refused if it were).
    st.markdown(f"second: {sidebar.receive_upload('id-1', b'garbage', 'a.png') or 'ok'}")
    bad = sidebar.receive_upload("id-2", b"garbage", "b.png")
    again = sidebar.receive_upload("id-2", b"garbage", "b.png")
    st.markdown(f"bad: {'refused' if bad else 'ok'}")
    st.markdown(f"bad again: {'refused' if again == bad else 'changed'}")
    st.markdown(f"image kept: {state.current_image() is image}")


# --- checkpoint form helpers ---------------------------------------------------------------


def test_parse_floats_and_class_names():
    assert sidebar.parse_floats("0.5, 0.25;1", what="Mean") == (0.5, 0.25, 1.0)
    assert sidebar.parse_class_names("cat\n dog \n\nbird") == ("cat", "dog", "bird")
    assert sidebar.parse_class_names("cat, dog,bird") == ("cat", "dog", "bird")
    with pytest.raises(ParameterError, match="3 numbers"):
        sidebar.parse_floats("0.5, 0.5", what="Mean")
    with pytest.raises(ParameterError, match="numbers separated"):
        sidebar.parse_floats("a, b, c", what="Std")


# --- result store --------------------------------------------------------------------------


def test_result_store_stays_at_its_capacity():
    store = ResultStore(capacity=32)
    for i in range(100):
        store.put(("k", i), i)
        assert len(store) == min(i + 1, 32)
    assert [store.get(("k", i)) for i in range(68)] == [None] * 68
    assert [store.get(("k", i)) for i in range(68, 100)] == list(range(68, 100))


def test_result_store_evicts_the_least_recently_used():
    store = ResultStore(capacity=3)
    for key in "abc":
        store.put(key, key.upper())
    assert store.get("a") == "A"  # a is now the most recent
    store.put("d", "D")
    assert "b" not in store and all(k in store for k in "acd")


@settings(max_examples=50, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(0, 20), hs.booleans()), max_size=80), hs.integers(1, 8))
def test_result_store_matches_a_reference_lru(operations, capacity):
    store, reference = ResultStore(capacity=capacity), []
    for key, is_put in operations:
        if is_put:
            store.put(key, -key)
            if key in reference:
                reference.remove(key)
            reference.append(key)
            del reference[:-capacity]
        else:
            assert store.get(key) == (-key if key in reference else None)
            if key in reference:
                reference.remove(key)
                reference.append(key)
    assert len(store) == len(reference) <= capacity


def test_result_keys_ignore_parameter_order_and_tell_values_apart():
    a = result_key("explain", method="smoothgrad", params={"samples": 8, "noise": 0.1}, seed=0)
    b = result_key("explain", seed=0, params={"noise": 0.1, "samples": 8}, method="smoothgrad")
    c = result_key("explain", method="smoothgrad", params={"samples": 9, "noise": 0.1}, seed=0)
    assert a == b and hash(a) == hash(b) and a != c
    assert freeze({"x": [1, {"y": np.int64(2)}]}) == (("x", (1, (("y", 2),))),)


def test_the_session_store_is_per_session_and_bounded():
    first = AppTest.from_function(_fill_store, default_timeout=30).run()
    second = AppTest.from_function(_fill_store, default_timeout=30).run()
    one, two = first.session_state["xai.results"], second.session_state["xai.results"]
    assert one is not two
    assert len(one) == len(two) == state.RESULT_CAPACITY


def _fill_store() -> None:
    from dashboard import state

    for i in range(100):
        state.put_result(state.result_key("test", i=i), i)
    assert state.get_result(state.result_key("test", i=99)) == 99
    assert state.get_result(state.result_key("test", i=0)) is None


def test_predictions_agree_with_softmax_of_the_logits(app):
    bundle, image = app.session_state[state.MODEL_KEY], app.session_state[state.IMAGE_KEY]
    top = app.session_state[state._STORE_KEY].get(
        result_key("predictions", fingerprint=bundle.fingerprint, image=image.hash, k=5)
    )
    probs = torch.softmax(bundle.logits(bundle.to_input(image.array))[0], dim=-1).numpy()
    order = np.argsort(-probs)[:5]
    assert [p.index for p in top] == order.tolist()
    np.testing.assert_allclose([p.probability for p in top], probs[order], rtol=1e-5)
    assert [p.label for p in top] == [bundle.labels[i] for i in order]


# --- errors --------------------------------------------------------------------------------


def test_guarded_shows_our_message_and_hides_unexpected_errors():
    at = AppTest.from_function(_raise_both, default_timeout=30).run()
    assert not at.exception
    assert support.errors(at) == ["Class 9 is out of range.", state.UNEXPECTED]
    assert [m.value for m in at.markdown] == ["after"]


def _raise_both() -> None:
    import streamlit as st

    from dashboard import state
    from xaicore.errors import ParameterError

    with state.guarded("test"):
        raise ParameterError("Class 9 is out of range.")
    with state.guarded("test"):
        raise RuntimeError("internal detail that must not reach the browser")
    st.markdown("after")


# --- checkpoints ---------------------------------------------------------------------------


def _checkpoint_form(at: AppTest, data: bytes, *, name: str, arch: str, classes: str) -> AppTest:
    at.selectbox(key=sidebar.W_MODEL).set_value(sidebar.UPLOAD_MODEL).run()
    at.file_uploader(key=f"{sidebar.W_CKPT_FORM}.file").set_value((name, data, "application/octet-stream"))
    at.selectbox(key=f"{sidebar.W_CKPT}.arch").set_value(arch)
    at.text_area(key=f"{sidebar.W_CKPT}.classes").set_value(classes)
    at.number_input(key=f"{sidebar.W_CKPT}.size").set_value(64)
    at.button(key=f"FormSubmitter:{sidebar.W_CKPT_FORM}-Load checkpoint").click()
    return at.run()


def test_an_uploaded_checkpoint_is_this_sessions_model_only():
    from xaicore.models.zoo import build_net

    net = build_net("squeezenet1_1", num_classes=3)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    at = _checkpoint_form(
        support.start(), buffer.getvalue(), name="mine.pt", arch="squeezenet1_1", classes="cat\ndog\nbird"
    )
    assert not at.exception and support.errors(at) == []
    bundle = at.session_state[state.MODEL_KEY]
    assert bundle is at.session_state[state.UPLOADED_MODEL_KEY]
    assert bundle.labels == ("cat", "dog", "bird") and bundle.input_size == (64, 64)
    assert at.session_state[state.TARGET_KEY] in (0, 1, 2)
    other = support.start()  # another browser session shares models, not uploads
    assert state.UPLOADED_MODEL_KEY not in other.session_state
    assert other.session_state[state.MODEL_KEY].source == "default"


def test_a_pickled_module_is_refused_with_one_sentence():
    from xaicore.models.zoo import build_net

    buffer = io.BytesIO()
    torch.save(build_net("squeezenet1_1", num_classes=3), buffer)  # a whole module, not a state dict
    at = _checkpoint_form(support.start(), buffer.getvalue(), name="module.pt", arch="squeezenet1_1", classes="a, b, c")
    assert not at.exception
    (message,) = support.errors(at)
    assert "state dict" in message and "Traceback" not in message
    assert at.session_state[state.MODEL_KEY] is None
    assert state.UPLOADED_MODEL_KEY not in at.session_state
