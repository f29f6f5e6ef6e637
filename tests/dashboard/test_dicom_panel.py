"""The sidebar's DICOM panel through the real uploader: tags shown, identifying tags never, the
window changes what is shown and never what the model receives; the grayscale model is selectable."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import dicom_panel, sidebar, state
from tests.dashboard.apptest_support import start, upload_image
from tests.helpers.dicom_files import IDENTIFYING, chest_like, write_dicom

pytest.importorskip("pydicom")


def _all_text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [t.value.to_string() for t in at.table] + [str(s.value) for s in at.selectbox]
    return " ".join(str(p) for p in parts)


def test_a_dicom_upload_shows_its_tags_and_windows_without_identifying_tags():
    data = write_dicom(
        chest_like(64), bits_stored=12, window=[(2000, 1000), (1500, 3000)], window_names=["soft", "wide"]
    )
    at = upload_image(start(), "chest.dcm", data, mime="application/dicom")
    assert not at.exception and not at.error
    image = at.session_state[state.IMAGE_KEY]
    entry = at.session_state[dicom_panel.DICOM_KEY]
    np.testing.assert_allclose(image.array[:, :, 0], entry.dicom.display(), atol=1e-6)  # the file's own window
    text = _all_text(at)
    assert "DX" in text and "CHEST" in text and "2024-01-15" in text and "64 x 64" in text
    assert "The window above changes only what you see" in text
    for identifying in IDENTIFYING:
        assert identifying not in text
    window = at.selectbox(key=dicom_panel.W_PRESET)
    assert window.options[:2] == ["soft: centre 2000, width 1000", "wide: centre 1500, width 3000"]


def test_the_window_sliders_change_the_picture_and_not_the_model_input():
    data = write_dicom(chest_like(64), bits_stored=12, window=(2000, 1000))
    at = upload_image(start(), "chest.dcm", data, mime="application/dicom")
    before = at.session_state[state.IMAGE_KEY].hash
    at.selectbox(key=dicom_panel.W_PRESET).set_value(dicom_panel.CUSTOM).run()
    at.slider(key=dicom_panel.W_CENTER).set_value(2500.0).run()
    at.slider(key=dicom_panel.W_WIDTH).set_value(500.0).run()
    assert not at.exception
    assert at.session_state[state.IMAGE_KEY].hash == before  # the model's input is the file's window
    shown = at.session_state[dicom_panel.SHOWN_WINDOW_KEY]
    assert (shown.center, shown.width) == (2500.0, 500.0)


def test_the_grayscale_model_is_in_the_model_menu_and_explains_the_dicom_frame():
    at = start()
    at.selectbox(key=sidebar.W_MODEL).set_value(sidebar.XRAY_MODEL).run()
    data = write_dicom(chest_like(64), bits_stored=12, window=(2000, 1000))
    at = upload_image(at, "chest.dcm", data, mime="application/dicom")
    assert not at.exception
    bundle = at.session_state[state.MODEL_KEY]
    assert bundle.model.in_channels == 1
    assert "turned to gray (one channel)" in " ".join(c.value for c in at.caption)


def test_a_damaged_dicom_is_refused_with_one_sentence():
    data = write_dicom(chest_like(32), bits_stored=12)
    at = upload_image(start(), "cut.dcm", data[:-200], mime="application/dicom")
    assert not at.exception
    assert any("truncated" in e.value for e in at.error)


def test_every_page_runs_on_the_grayscale_model_with_a_dicom_frame():
    from dashboard import navigation
    from tests.dashboard import apptest_support as support

    at = start()
    at.session_state["explain.w.auto"] = False  # page load only; the browser test runs the methods
    at.selectbox(key=sidebar.W_MODEL).set_value(sidebar.XRAY_MODEL).run()
    at = upload_image(at, "chest.dcm", write_dicom(chest_like(64), bits_stored=12), mime="application/dicom")
    for spec in navigation.PAGES:
        at = support.open_page(at, f"pages/{spec.file}")
        assert not at.exception, spec.file
        assert support.errors(at) == [], spec.file
        assert at.session_state[state.MODEL_KEY].model.in_channels == 1


def test_the_checkpoint_form_takes_one_or_three_channel_values():
    from xaicore.errors import ParameterError

    assert sidebar.parse_channel_values("0.449", what="Mean") == (0.449,)
    assert sidebar.parse_channel_values("0.1, 0.2, 0.3", what="Mean") == (0.1, 0.2, 0.3)
    with pytest.raises(ParameterError, match="3 numbers"):
        sidebar.parse_channel_values("0.1, 0.2", what="Std")
