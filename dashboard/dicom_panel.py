"""The sidebar's DICOM panel: frame, window and level, the reviewer's tags, what the model receives.

An uploaded DICOM file is read by :func:`xaicore.data.dicom.read_dicom` (:func:`accept_dicom`);
the current image (what the model receives) is the frame with the file's own window, so that
changing the window to look at the picture never changes a prediction or a map. The panel
(:func:`render`) shows the frame with the window the reviewer picks (a preset from the file, or
centre and width sliders), the safe tags, and says in words what the model receives. Only the
tags :class:`~xaicore.data.dicom.DicomTags` keeps are ever shown: nothing identifying is read
out of the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import state
from dashboard.safe_text import plain
from xaicore.data.decode_worker import check_dicom_isolated
from xaicore.data.dicom import DicomImage, Window, read_dicom
from xaicore.data.images import image_hash
from xaicore.models.bundle import ModelBundle

DICOM_KEY = "xai.dicom"  # the DicomEntry of the uploaded DICOM file
W_FRAME = "xai.w.dicom.frame"
W_PRESET = "xai.w.dicom.preset"
W_CENTER = "xai.w.dicom.center"
W_WIDTH = "xai.w.dicom.width"
CUSTOM = "Custom: centre and width sliders"
SHOWN_KEY = "dicom-shown"  # container of the windowed picture: CSS class st-key-dicom-shown
SHOWN_WINDOW_KEY = "xai.dicom.shown_window"  # the Window the reviewer looks at now (None: colour)


@dataclass(frozen=True)
class DicomEntry:
    """The uploaded DICOM file's bytes (to read another frame), its name and the frame read."""

    data: bytes
    name: str
    dicom: DicomImage
    hash: str


def accept_dicom(data: bytes, name: str, *, frame: int = 0) -> state.CurrentImage:
    """A DICOM upload as the current image (the frame with the file's own window); raises ImageLoadError."""
    check_dicom_isolated(data, name=name, frame=frame)  # a child process decodes it first, with a time limit
    dicom = read_dicom(data, name=name, frame=frame)
    loaded = dicom.to_loaded_image()
    image = state.CurrentImage(
        array=loaded.array,
        name=name,
        hash=image_hash(loaded.array),
        source="upload",
        notices=loaded.notices,
    )
    st.session_state[DICOM_KEY] = DicomEntry(data=data, name=name, dicom=dicom, hash=image.hash)
    return image


def current_entry(image: state.CurrentImage | None) -> DicomEntry | None:
    """The DICOM entry behind ``image``, or ``None`` when the image is not the uploaded DICOM frame."""
    entry = st.session_state.get(DICOM_KEY)
    if image is None or not isinstance(entry, DicomEntry) or entry.hash != image.hash:
        return None
    return entry


def render(image: state.CurrentImage, bundle: ModelBundle | None) -> state.CurrentImage:
    """Draw the panel for the uploaded DICOM frame; returns the current image (another frame when chosen)."""
    entry = current_entry(image)
    if entry is None:
        return image
    dicom = entry.dicom
    st.subheader("DICOM")
    if dicom.tags.frames > 1:
        frames = list(range(1, dicom.tags.frames + 1))
        frame = st.selectbox("Frame", frames, **state.kept(W_FRAME, default=dicom.frame + 1, options=frames))
        if frame is not None and int(frame) - 1 != dicom.frame:
            image = accept_dicom(entry.data, entry.name, frame=int(frame) - 1)
            st.session_state[state.IMAGE_KEY] = image
            st.session_state[state.UPLOADED_IMAGE_KEY] = image
            dicom = current_entry(image).dicom  # type: ignore[union-attr]  # just stored
    window = None if dicom.is_colour else _window_widgets(dicom, scope=entry.hash)
    st.session_state[SHOWN_WINDOW_KEY] = window
    with st.container(key=SHOWN_KEY):
        shown = dicom.display(window)
        caption = f"As shown: {window.label()}" if window is not None else "As stored (colour)"
        st.image(shown, caption=plain(caption), width="stretch", clamp=True)
    st.caption(model_receives(dicom, bundle))
    rows = dicom.tags.rows_for_display()
    st.table({"Tag": [label for label, _ in rows], "Value": [value for _, value in rows]}, border="horizontal")
    return image


def shown_window() -> Window | None:
    """The window the reviewer has chosen for the uploaded DICOM frame (``None``: none, or colour)."""
    window = st.session_state.get(SHOWN_WINDOW_KEY)
    return window if isinstance(window, Window) else None


def _window_widgets(dicom: DicomImage, *, scope: str) -> Window:
    presets = {w.label(): w for w in dicom.presets}
    options = [*presets, CUSTOM]
    choice = st.selectbox(
        "Window",
        options,
        help="The file's own windows (or its VOI LUT), or your own centre and width.",
        **state.kept(W_PRESET, default=options[0], options=options, scope=scope),
    )
    if choice != CUSTOM and choice in presets:
        return presets[choice]
    start = dicom.default or Window(0.5, 1.0)
    low, high = dicom.slider_range()
    span = max(high - low, 1.0)
    step = _nice_step(span / 400.0)
    center = st.slider(
        "Window centre (level)",
        min_value=float(low),
        max_value=float(high),
        step=step,
        **state.kept(W_CENTER, default=_snap(start.center, low, high, step), scope=scope),
    )
    width = st.slider(
        "Window width",
        min_value=float(step),
        max_value=float(2 * span),
        step=step,
        **state.kept(W_WIDTH, default=_snap(start.width, step, 2 * span, step), scope=scope),
    )
    function = "LINEAR" if start.is_lut else start.function
    return Window(
        center=float(center), width=max(float(width), 1.0 if function == "LINEAR" else 1e-6), function=function
    )


def model_receives(dicom: DicomImage, bundle: ModelBundle | None) -> str:
    """In words: what the model receives from this DICOM frame, whatever window is shown."""
    default = dicom.default
    source = (
        f"the frame with the file's own window ({default.label()})" if default is not None else "the frame as stored"
    )
    text = f"The window above changes only what you see. The model receives {source}"
    if bundle is None:
        return text + "."
    rule = bundle.preprocess.describe()
    model = bundle.model
    mean = ", ".join(f"{v:g}" for v in model.mean.flatten().tolist())
    std = ", ".join(f"{v:g}" for v in model.std.flatten().tolist())
    if getattr(model, "in_channels", 3) == 1:
        inside = f"turned to gray (one channel) and normalized with mean {mean} and std {std} inside the model"
    elif model.grayscale:
        inside = f"turned to gray, copied to three channels and normalized with mean {mean} and std {std}"
    else:
        inside = f"normalized with mean ({mean}) and std ({std}) inside the model"
    return f"{text}, {rule}, then {inside}: the model's own preprocessing."


def _nice_step(raw: float) -> float:
    for step in (0.001, 0.01, 0.1, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0):
        if step >= raw:
            return step
    return float(10 ** len(str(int(raw))))


def _snap(value: float, low: float, high: float, step: float) -> float:
    snapped = round(round(value / step) * step, 6)
    return float(min(max(snapped, low), high))
