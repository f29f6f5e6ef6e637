"""Choices that stay (Streamlit AppTest): :func:`dashboard.state.kept`, the sidebar's model and
image across page switches, each page's settings, the random-weights caption, and the caps and
streaming of uploads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard import sidebar, state, uploads
from dashboard.safe_text import plain
from tests.dashboard import apptest_support as support
from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.errors import CheckpointError
from xaicore.models.checkpoint import read_state_dict

# --- the mechanism on its own --------------------------------------------------------------


def _hidden_widget_script() -> None:
    """A kept slider and a plain one that disappear while "show" is off (as on another page),
    and a kept multiselect whose default follows a "model" scope."""
    import streamlit as st

    from dashboard import state

    show = st.checkbox("show", key="show", value=True)
    if show:
        st.slider("kept", 0, 10, **state.kept("kept", default=3))
        st.slider("plain", 0, 10, value=3, key="plain")
    model = st.radio("model", ["a", "b"], key="model")
    options = ["x", "y", "z"]
    st.multiselect("methods", options, **state.kept("methods", default=options[:2], options=options, scope=model))
    st.markdown(f"kept={state.kept_value('kept')}")


def _markdown(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("kept="))


def test_a_kept_value_survives_runs_that_do_not_draw_its_widget():
    at = AppTest.from_function(_hidden_widget_script).run()
    at.slider(key="kept").set_value(8)
    at.slider(key="plain").set_value(8)
    at.run()
    at.checkbox(key="show").uncheck().run()  # neither slider is drawn in this run
    assert _markdown(at) == "kept=8"
    at.checkbox(key="show").check().run()
    assert at.slider(key="kept").value == 8
    assert at.slider(key="plain").value == 3  # Streamlit forgot the plain widget's value: the bug kept() fixes
    assert not at.exception


def test_a_scoped_default_resets_only_when_the_scope_really_changes():
    at = AppTest.from_function(_hidden_widget_script).run()
    assert at.multiselect(key="methods").value == ["x", "y"]
    at.multiselect(key="methods").set_value(["z"]).run()
    at.checkbox(key="show").uncheck().run()
    at.checkbox(key="show").check().run()
    assert at.multiselect(key="methods").value == ["z"]  # same scope: the user's choice stays
    at.radio(key="model").set_value("b").run()
    assert at.multiselect(key="methods").value == ["x", "y"]  # a new model: its default
    at.multiselect(key="methods").set_value(["y", "z"]).run()
    at.run()
    assert at.multiselect(key="methods").value == ["y", "z"]


# --- the sidebar and the pages -------------------------------------------------------------


def _sanity_settings(at: AppTest) -> tuple:
    return (
        at.multiselect(key="sanity.w.methods").value,
        at.slider(key="sanity.w.threshold").value,
        at.number_input(key="sanity.w.seeds").value,
        at.radio(key="sanity.w.mode").value,
    )


def test_model_image_and_page_settings_stay_across_page_switches():
    at = support.start()
    bundle = tiny_bundle(seed=3, size=16)
    at = support.use_model(at, bundle)
    at = support.upload_image(at, "photo.png", support.png_bytes(np.full((20, 30, 3), 90)))
    uploaded = at.session_state[state.IMAGE_KEY]
    assert uploaded.name == "photo.png"

    at = support.open_page(at, "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(["saliency", "gradcam"])
    at.slider(key="sanity.w.threshold").set_value(0.75)
    at.number_input(key="sanity.w.seeds").set_value(2)
    at.radio(key="sanity.w.mode").set_value("cascading").run()
    chosen = _sanity_settings(at)
    assert chosen == (["saliency", "gradcam"], 0.75, 2, "cascading")

    for page in ("pages/explain.py", "pages/gax.py", "pages/sanity.py", "pages/faithfulness.py", "pages/sanity.py"):
        at.session_state["explain.w.auto"] = False
        at = support.open_page(at, page)
        assert not at.exception and support.errors(at) == [], page
        assert at.session_state[state.MODEL_KEY] is bundle, page
        assert at.session_state[state.IMAGE_KEY] is uploaded, page
        assert at.selectbox(key=sidebar.W_MODEL).value == sidebar.UPLOAD_MODEL, page
        assert at.radio(key=sidebar.W_SOURCE).value == sidebar.UPLOAD, page
    assert _sanity_settings(at) == chosen


def test_a_finished_sanity_check_is_shown_again_when_the_user_comes_back():
    at = support.start()
    at = support.use_model(at, tiny_bundle(seed=4, size=16))
    at = support.open_page(at, "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(["saliency"])
    at.number_input(key="sanity.w.seeds").set_value(1)
    at.radio(key="sanity.w.mode").set_value("cascading").run()
    at.button(key="sanity.act.run").click().run()
    assert [s.value for s in at.subheader][:1] == ["Verdicts"]
    verdicts = at.dataframe[0].value.to_dict("records")
    at.session_state["explain.w.auto"] = False
    at = support.open_page(at, "pages/explain.py")
    at = support.open_page(at, "pages/sanity.py")  # no Run pressed
    assert [s.value for s in at.subheader][:1] == ["Verdicts"]
    assert at.dataframe[0].value.to_dict("records") == verdicts


def test_a_new_model_resets_the_method_list_and_the_same_model_keeps_it():
    at = support.start()
    first = tiny_bundle(seed=5, size=16)
    at = support.use_model(at, first)
    at = support.open_page(at, "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(["gradcam"]).run()
    at.session_state[state.UPLOADED_MODEL_KEY] = first  # the same model again
    at.run()
    assert at.multiselect(key="sanity.w.methods").value == ["gradcam"]
    at.session_state[state.UPLOADED_MODEL_KEY] = tiny_bundle(seed=6, size=16)  # another model
    at.run()
    assert at.multiselect(key="sanity.w.methods").value != ["gradcam"]
    assert "saliency" in at.multiselect(key="sanity.w.methods").value


def test_the_model_box_says_random_weights():
    at = support.start()
    at.selectbox(key=sidebar.W_MODEL).set_value("resnet18").run()
    at.toggle(key=sidebar.W_RANDOM).set_value(True).run()
    assert not at.exception
    bundle = at.session_state[state.MODEL_KEY]
    assert sidebar.has_random_weights(bundle)
    texts = [c.value for c in at.sidebar.caption]
    assert any("random weights" in t and bundle.fingerprint[:12] in t for t in texts), texts
    assert any(t.startswith(":orange[Random weights: an untrained network") for t in texts), texts
    default = support.start()
    assert not sidebar.has_random_weights(default.session_state[state.MODEL_KEY])
    assert not any("andom weights" in c.value for c in default.sidebar.caption)


# --- uploads -------------------------------------------------------------------------------


class _Unreadable(io.BytesIO):
    """An upload that reports a size and fails the test if anything reads it."""

    def __init__(self, size: int) -> None:
        super().__init__(b"\x89PNG")
        self.size = size

    def read(self, *args):
        raise AssertionError("the upload was read")

    def getvalue(self):
        raise AssertionError("the upload was read")


def test_an_image_over_its_cap_is_refused_from_its_size_without_reading_it():
    at = support.start()
    before = at.session_state[state.IMAGE_KEY]
    message = sidebar.receive_upload("id-1", _Unreadable(uploads.IMAGE_UPLOAD_MB * uploads.MB + 1), "huge.png")
    assert message == "huge.png is 50 MB, over the 50 MB limit for images; use a smaller or compressed copy."
    assert at.session_state[state.IMAGE_KEY] is before


def test_an_image_over_its_cap_through_the_uploader_shows_one_sentence():
    at = support.start()
    data = support.png_bytes(np.zeros((8, 8, 3))) + bytes(uploads.IMAGE_UPLOAD_MB * uploads.MB)
    at = support.upload_image(at, "big.png", data)
    assert not at.exception
    assert support.errors(at) == [
        "big.png is 50 MB, over the 50 MB limit for images; use a smaller or compressed copy."
    ]
    assert at.session_state[state.IMAGE_KEY].source == "sample"
    (uploader,) = [u for u in at.sidebar.file_uploader if u.key == sidebar.W_UPLOAD]
    assert uploader.proto.max_upload_size_mb == 50 and "up to 50 MB" in uploader.help


class _Chunked(io.BytesIO):
    """Records the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1):
        self.reads.append(size)
        return super().read(size)


def test_a_checkpoint_is_copied_in_chunks_to_a_file_that_is_removed_afterwards():
    data = bytes(range(256)) * (uploads.CHUNK_BYTES // 256 * 2 + 3)  # two chunks and a bit
    upload = _Chunked(data)
    with uploads.spooled(upload, name="model.pth") as path:
        assert path.suffix == ".pth" and path.read_bytes() == data
    assert not path.exists() and not path.parent.exists()
    assert upload.reads and all(0 < size <= uploads.CHUNK_BYTES for size in upload.reads)
    with (
        pytest.raises(CheckpointError, match="over the 1 MB limit for checkpoints"),
        uploads.spooled(io.BytesIO(bytes(uploads.MB + 1)), name="big.pt", max_bytes=uploads.MB),
    ):
        pass


def _mapped_from(address: int) -> str | None:
    """The file mapped at ``address`` in this process (Linux ``/proc/self/maps``), or None."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) > 5 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads the memory map of a Linux process")
def test_a_state_dict_read_from_a_file_is_mapped_and_equal(tmp_path: Path):
    state_dict = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(3)}
    path = tmp_path / "sd.pt"
    torch.save(state_dict, path)
    loaded = read_state_dict(path)
    assert set(loaded) == {"w", "b"} and torch.equal(loaded["w"], state_dict["w"])
    assert _mapped_from(loaded["w"].data_ptr()) == str(path)  # mapped from the file, not copied
    assert torch.equal(read_state_dict(path.read_bytes())["b"], state_dict["b"])


def test_an_uploaded_checkpoint_is_named_after_its_file():
    from xaicore.models.zoo import build_net

    buffer = io.BytesIO()
    torch.save(build_net("squeezenet1_1", num_classes=2).state_dict(), buffer)
    at = support.start()
    at.selectbox(key=sidebar.W_MODEL).set_value(sidebar.UPLOAD_MODEL).run()
    at.file_uploader(key=f"{sidebar.W_CKPT_FORM}.file").set_value(
        ("mine.pt", buffer.getvalue(), "application/octet-stream")
    )
    at.selectbox(key=f"{sidebar.W_CKPT}.arch").set_value("squeezenet1_1")
    at.text_area(key=f"{sidebar.W_CKPT}.classes").set_value("cat\ndog")
    at.number_input(key=f"{sidebar.W_CKPT}.size").set_value(32)
    at.button(key=f"FormSubmitter:{sidebar.W_CKPT_FORM}-Load checkpoint").click()
    at.run()
    assert not at.exception and support.errors(at) == []
    bundle = at.session_state[state.MODEL_KEY]
    assert bundle.name == "squeezenet1_1 from mine.pt"
    caps = {u.key: (u.proto.max_upload_size_mb, u.help) for u in at.file_uploader}
    assert caps[f"{sidebar.W_CKPT_FORM}.file"][0] == 600 and "up to 600 MB" in caps[f"{sidebar.W_CKPT_FORM}.file"][1]
    assert any(
        c.value.startswith(plain("squeezenet1_1 from mine.pt") + " · 2 classes · input 32×32")
        for c in at.sidebar.caption
    )
    # The form keeps what was submitted when the user comes back to it.
    at = support.open_page(at, "pages/gax.py")
    assert at.text_area(key=f"{sidebar.W_CKPT}.classes").value == "cat\ndog"
    assert at.number_input(key=f"{sidebar.W_CKPT}.size").value == 32
    assert at.session_state[state.MODEL_KEY] is bundle
