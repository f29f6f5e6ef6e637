"""The "model input" tile: what the model received, beside the user's image, with a notice.

:func:`show` draws the chosen image (the part the model saw outlined when it was cropped or
padded), the model's input at its own resolution enlarged pixel for pixel, and a warning when
the model did not see the image as it is. Everything it draws is computed by
:func:`xaicore.render.input_view.input_view`; the last view is kept per session so that reruns (a
slider, a page switch) do not compute it again.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state
from xaicore.models.bundle import ModelBundle
from xaicore.render.input_view import InputView, input_view

_VIEW_KEY = "xai.model_input.view"  # (key, InputView) of the last view drawn in this session
CONTAINER_KEY = "model-input"  # the tile's container: CSS class st-key-model-input


def view_of(bundle: ModelBundle, image: state.CurrentImage) -> InputView:
    """The :class:`InputView` of ``image`` for ``bundle``, reused while neither changes."""
    key = (bundle.fingerprint, bundle.preprocess, image.hash)
    kept = st.session_state.get(_VIEW_KEY)
    if kept is not None and kept[0] == key:
        return kept[1]
    view = input_view(bundle, image.array)
    st.session_state[_VIEW_KEY] = (key, view)
    return view


def show(bundle: ModelBundle | None, image: state.CurrentImage, *, key: str = CONTAINER_KEY) -> None:
    """The image and, with a model, its model input side by side, then the notice if any.

    Without a model only the image is drawn. ``key`` names the container (one per place on a
    page: the sidebar and a page body each need their own).
    """
    if bundle is None:
        st.image(image.array, caption=image.name, width="stretch", clamp=True)
        return
    view = view_of(bundle, image)
    with st.container(key=key):
        given, model = st.columns(2)
        outlined = " (the box: what the model saw)" if view.framing.cropped or view.framing.padded else ""
        given.image(view.original, caption=f"{image.name}{outlined}", width="stretch")
        model.image(view.tile, caption=view.caption, width="stretch")
        if view.notice:
            icon = ":material/crop:" if view.framing.cropped else ":material/aspect_ratio:"
            st.warning(view.notice, icon=icon)
