"""The sidebar shared by every page: model, image and class to explain.

Every page calls :func:`render` first. It writes the selection to ``st.session_state``;
pages then read it with :func:`dashboard.state.current_model`, ``current_image`` and
``current_target``. The sidebar's value widgets are keyed ``xai.w.*`` and keep the user's
choice across fragment reruns and page switches (:func:`dashboard.state.kept`); upload widgets
are keyed ``xai.act.*``. The uploaded image and the loaded checkpoint live in the session, so
they stay current on pages whose uploader is empty.

Every uploaded image goes through one function, :func:`accept_upload` (bytes and file name in,
:class:`~dashboard.state.CurrentImage` out, :class:`~xaicore.errors.ImageLoadError` on a bad
file), and every upload widget event through :func:`receive_upload`, which keeps the previous
image when a file is refused. Tests drive the real ``st.file_uploader`` with
``AppTest.file_uploader(key=W_UPLOAD).set_value((name, bytes, mime))``; code without a widget
can call :func:`receive_upload` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import streamlit as st

from dashboard import dicom_panel, state, uploads
from dashboard.render import model_input
from dashboard.safe_text import plain
from xaicore.data.decode_worker import load_image_isolated
from xaicore.data.dicom import is_dicom
from xaicore.data.images import image_hash
from xaicore.errors import ModelNotAvailable, ParameterError, XaiError
from xaicore.models.bundle import ModelBundle

DEFAULT_MODEL = "default"  # xaicore's name of the embedded model
XRAY_MODEL = "xray"  # the embedded grayscale X-ray teaching model
CLEVER_HANS_MODEL = "clever-hans"  # the embedded model that cheats on a stamp (Clever-Hans lab)
EMBEDDED_MODELS = (DEFAULT_MODEL, CLEVER_HANS_MODEL, XRAY_MODEL)
UPLOAD_MODEL = "Upload a checkpoint"
SAMPLE = "Sample"
UPLOAD = "Upload"

# Widget keys (st.session_state) of the sidebar.
W_MODEL = "xai.w.model"
W_RANDOM = "xai.w.random_weights"
W_SOURCE = "xai.w.image_source"
W_SAMPLE = "xai.w.sample"
W_TARGET = "xai.w.target"
W_CKPT = "xai.w.ckpt"
W_UPLOAD = "xai.act.upload"  # not kept across pages: uploaders refuse assigned values
W_CKPT_FORM = "xai.act.ckpt"

CKPT_DEFAULTS = {"size": 224, "mean": "0.485, 0.456, 0.406", "std": "0.229, 0.224, 0.225"}
_LAST_UPLOAD = "xai.upload.last"  # (file id, error message or "") of the last upload event


def render() -> None:
    """Draw the sidebar and store the selection in the session (each section fails alone).

    Call once per run, at the top of every page, before the page's own widgets.
    """
    with st.sidebar:
        with state.guarded("model selection"):
            _model_section()
        with state.guarded("image selection"):
            _image_section()
        with state.guarded("class selection"):
            _target_section()


# --- model ---------------------------------------------------------------------------------


def _model_menu() -> dict[str, str]:
    """Model choice -> menu text: the default model, torchvision models, the upload form."""
    from xaicore.models.loading import list_models

    menu = {}
    for info in list_models():
        offline = "" if info.weights_available or info.kind != "torchvision" else " (weights not on this machine)"
        menu[info.name] = f"{info.display}{offline}"
    for key, bundle in state.session_models().items():
        menu[key] = f"{bundle.name} (made in this session)"
    menu[UPLOAD_MODEL] = UPLOAD_MODEL
    return menu


def _architectures(menu: dict[str, str]) -> list[str]:
    """Architectures a checkpoint may have: the listed torchvision models first, then the rest."""
    from xaicore.models.checkpoint import DEFAULT_MAX_BYTES
    from xaicore.models.zoo import checkpoint_architectures

    fitting = checkpoint_architectures(max_bytes=DEFAULT_MAX_BYTES)  # larger ones: refused by the size cap
    made = state.session_models()
    listed = [
        name for name in menu if name not in (*EMBEDDED_MODELS, UPLOAD_MODEL) and name not in made and name in fitting
    ]
    return listed + [name for name in fitting if name not in listed]


def _model_section() -> None:
    st.header("Model")
    menu = _model_menu()
    st.session_state[state.MODEL_KEY] = None
    choice = st.selectbox(
        "Model",
        list(menu),
        format_func=cast(Callable[[Any], str], menu.get),  # the options are the menu's keys
        **state.kept(W_MODEL, default=DEFAULT_MODEL, options=list(menu)),
    )
    bundle: ModelBundle | None
    if choice in EMBEDDED_MODELS:
        bundle = state.shared_model(choice)
    elif choice in state.session_models():
        bundle = state.session_models()[choice]
    elif choice == UPLOAD_MODEL:
        bundle = _checkpoint_form(_architectures(menu))
    else:
        random = st.toggle(
            "Random weights",
            **state.kept(W_RANDOM, default=False),
            help="An untrained network: needs no download; useful for teaching and tests.",
        )
        try:
            bundle = state.shared_model(choice, pretrained=not random)
        except ModelNotAvailable as exc:
            st.error(plain(exc))
            st.caption("Switch on *Random weights* to explore the architecture without its trained weights.")
            bundle = None
    st.session_state[state.MODEL_KEY] = bundle
    if bundle is not None:
        st.caption(model_caption(bundle))
        if has_random_weights(bundle):
            st.caption(
                ":orange[Random weights: an untrained network. Its predictions and maps show the "
                "architecture, not anything learned.]"
            )


def has_random_weights(bundle: ModelBundle) -> bool:
    """Whether ``bundle`` was built with random weights (a torchvision model without its weights)."""
    return bundle.source.startswith("torchvision:") and bundle.source.endswith("/random")


def model_caption(bundle: ModelBundle) -> str:
    """The line under the model: name, classes, input size, fingerprint; says random weights."""
    h, w = bundle.input_size
    name = plain(bundle.name)
    if has_random_weights(bundle) and "random weights" not in name:
        name = f"{name} (random weights)"
    return f"{name} · {bundle.num_classes} classes · input {h}×{w} · fingerprint `{bundle.fingerprint[:12]}`"


def parse_floats(text: str, *, what: str, count: int = 3) -> tuple[float, ...]:
    """``count`` numbers from text like ``"0.485, 0.456, 0.406"``; ParameterError otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise ParameterError(f"{what} must be {count} numbers separated by commas, like 0.5, 0.5, 0.5.") from exc
    if len(values) != count:
        raise ParameterError(f"{what} must be {count} numbers separated by commas; got {len(values)}.")
    return values


def parse_channel_values(text: str, *, what: str) -> tuple[float, ...]:
    """One number (a one-channel model) or three (R, G, B) from the checkpoint form."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    return parse_floats(text, what=what, count=1 if len(parts) == 1 else 3)


def parse_class_names(text: str) -> tuple[str, ...]:
    """Class names, one per line (or separated by commas when given on one line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = [part.strip() for part in lines[0].split(",") if part.strip()]
    return tuple(lines)


def load_checkpoint(
    source: bytes | Path,
    *,
    arch: str,
    class_names: Sequence[str],
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    grayscale: bool,
    file_name: str | None = None,
) -> ModelBundle:
    """A bundle from an uploaded state dict, as bytes or a file (checked by xaicore: weights
    only, strict keys); ``file_name`` names the model (the upload's name)."""
    from xaicore.models.loading import load_checkpoint_model

    if not class_names:
        raise ParameterError("Give the class names of your model, one per line, in output order.")
    return load_checkpoint_model(
        source,
        file_name=file_name,
        arch=arch,
        num_classes=len(class_names),
        class_names=tuple(class_names),
        input_size=(input_size, input_size),
        mean=tuple(mean),
        std=tuple(std),
        grayscale=grayscale,
    )


def _checkpoint_form(arch_names: list[str]) -> ModelBundle | None:
    keys = [f"{W_CKPT}.{name}" for name in ("arch", "classes", "size", "mean", "std", "gray")]
    with st.expander("Your checkpoint", expanded=state.current_uploaded_model() is None):
        with st.form(W_CKPT_FORM, border=False):
            file = st.file_uploader(
                "State dict (.pt / .pth)",
                key=f"{W_CKPT_FORM}.file",
                max_upload_size=uploads.CHECKPOINT_UPLOAD_MB,
                help=uploads.CHECKPOINT_HELP,
            )
            arch = st.selectbox(
                "Architecture", arch_names, **state.kept(keys[0], default=arch_names[0], options=arch_names, form=True)
            )
            names = st.text_area("Class names, one per line", **state.kept(keys[1], default="", form=True))
            size = st.number_input(
                "Input size (pixels)", 16, 1024, **state.kept(keys[2], default=CKPT_DEFAULTS["size"], form=True)
            )
            mean = st.text_input(
                "Mean (R, G, B; one value for a one-channel model)",
                **state.kept(keys[3], default=CKPT_DEFAULTS["mean"], form=True),
            )
            std = st.text_input(
                "Std (R, G, B; one value for a one-channel model)",
                **state.kept(keys[4], default=CKPT_DEFAULTS["std"], form=True),
            )
            gray = st.checkbox(
                "Grayscale model (input turned to gray)", **state.kept(keys[5], default=False, form=True)
            )
            submitted = st.form_submit_button("Load checkpoint", on_click=state.commit_kept, args=(keys,))
        if submitted:
            if file is None:
                st.error("Choose a .pt or .pth file with your model's state dict first.")
            else:
                try:
                    with uploads.spooled(file, name=file.name) as path:
                        bundle = load_checkpoint(
                            path,
                            arch=arch,
                            file_name=file.name,
                            class_names=parse_class_names(names),
                            input_size=int(size),
                            mean=parse_channel_values(mean, what="Mean"),
                            std=parse_channel_values(std, what="Std"),
                            grayscale=gray,
                        )
                except XaiError as exc:
                    st.error(plain(exc))
                else:
                    st.session_state[state.UPLOADED_MODEL_KEY] = bundle
    return state.current_uploaded_model()


# --- image ---------------------------------------------------------------------------------


def accept_upload(data: bytes, name: str) -> state.CurrentImage:
    """An uploaded file as the current image's data; raises ImageLoadError for a bad file."""
    if is_dicom(data):  # pydicom reads one frame under the same caps; the panel shows the window
        return dicom_panel.accept_dicom(data, name)
    loaded = load_image_isolated(data, name=name)  # a child process, stopped after a time limit
    return state.CurrentImage(
        array=loaded.array,
        name=name,
        hash=image_hash(loaded.array),
        source="upload",
        notices=loaded.notices,
    )


def receive_upload(file_id: str, data: bytes | BinaryIO, name: str) -> str | None:
    """Handle one upload widget value; returns the error sentence when the file is refused.

    ``data`` is the file's bytes or the uploaded file itself; a file over the image cap is
    refused from its size, before it is read. A new file replaces the current image only when
    it loads, and stays the session's uploaded image (:data:`state.UPLOADED_IMAGE_KEY`) on
    pages where the uploader is empty; a refused file leaves the previous image in place. The
    same file (same ``file_id``) is processed once; its error, if any, is returned again on
    later reruns without reading it again.
    """
    last = st.session_state.get(_LAST_UPLOAD)
    if last is not None and last[0] == file_id:
        return last[1] or None
    try:
        uploads.check_image_size(data, name)
        image = accept_upload(_content(data), name)
    except XaiError as exc:
        st.session_state[_LAST_UPLOAD] = (file_id, str(exc))
        return str(exc)
    st.session_state[_LAST_UPLOAD] = (file_id, "")
    st.session_state[state.IMAGE_KEY] = image
    st.session_state[state.UPLOADED_IMAGE_KEY] = image
    return None


def _content(data: bytes | BinaryIO) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if hasattr(data, "getvalue"):  # Streamlit's UploadedFile: its bytes without a copy
        return data.getvalue()
    data.seek(0)
    return data.read()


def _image_section() -> None:
    st.header("Image")
    source = st.radio(
        "Image source",
        [SAMPLE, UPLOAD],
        horizontal=True,
        label_visibility="collapsed",
        **state.kept(W_SOURCE, default=SAMPLE, options=[SAMPLE, UPLOAD]),
    )
    if source == SAMPLE:
        names = state.sample_names()
        name = st.selectbox("Sample image", names, **state.kept(W_SAMPLE, default=names[0], options=names))
        if name is not None:
            st.session_state[state.IMAGE_KEY] = state.sample_image(name)
    else:
        upload = st.file_uploader(
            "Upload an image",
            key=W_UPLOAD,
            max_upload_size=uploads.IMAGE_UPLOAD_MB,
            help=uploads.IMAGE_HELP,
        )
        if upload is not None:
            error = receive_upload(upload.file_id, upload, upload.name)
            if error:
                st.error(plain(error))
        uploaded = st.session_state.get(state.UPLOADED_IMAGE_KEY)
        if uploaded is not None:  # also when this page's uploader is empty: the upload stays current
            st.session_state[state.IMAGE_KEY] = uploaded
            if upload is None:
                st.caption(f"Current upload: {plain(uploaded.name)}. Choose a file to replace it.")
    image = state.current_image()
    if image is None:
        st.info("Choose a sample or upload an image.")
        return
    image = dicom_panel.render(image, state.current_model())
    model_input.show(state.current_model(), image, key="model-input-sidebar")
    for notice in image.notices:
        st.caption(plain(notice))
    if image.description:
        st.caption(plain(image.description))


# --- target class --------------------------------------------------------------------------


def _target_section() -> None:
    bundle, image = state.current_model(), state.current_image()
    st.session_state[state.TARGET_KEY] = None
    if bundle is None or image is None:
        return
    st.header("Class to explain")
    top = state.predictions(bundle, image)
    predicted = top[0]
    options: list[int | None] = [None, *range(bundle.num_classes)]

    def label(option: int | None) -> str:
        if option is None:
            return f"Predicted: {predicted.label} ({predicted.probability:.0%})"
        return f"{option}: {bundle.labels[option]}"

    choice = st.selectbox(
        "Class",
        options,
        format_func=label,
        **state.kept(W_TARGET, default=None, options=options, scope=bundle.fingerprint),
    )
    st.session_state[state.TARGET_KEY] = predicted.index if choice is None else int(choice)
