"""Widgets several pages share."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dashboard import state
from dashboard.render import tiles
from xaicore.explainers.registry import get_method, single_pass_methods
from xaicore.models.bundle import ModelBundle


def choose_methods(key: str, bundle: ModelBundle, *, default: Sequence[str] | None = None) -> list[str]:
    """The page's choice of methods among those ``bundle`` can run, with the ones it cannot (and
    why) listed beneath. A new model starts with ``default`` (the registry's single-pass methods
    when None) as far as it can run them; the choice is kept per model under ``key``."""
    available = bundle.available_methods()
    wanted = single_pass_methods() if default is None else default
    chosen = st.multiselect(
        "Methods",
        available,
        format_func=lambda n: get_method(n).title,
        **state.kept(key, default=[m for m in wanted if m in available], options=available, scope=bundle.fingerprint),
    )
    tiles.unavailable_methods(bundle.unavailable)
    return list(chosen)


def choose_cam_layer(key: str, bundle: ModelBundle) -> str:
    """The layer the CAM methods use, among ``bundle.cam_layers()`` in forward order (each shown
    with its output's channels and map size); a new model starts with its own default layer, and the
    choice is kept per model under ``key``."""
    layers = list(bundle.cam_layers())
    if not layers:
        return bundle.cam_layer
    default = bundle.cam_layer if bundle.cam_layer in layers else layers[-1]

    def label(name: str) -> str:
        channels, height, width = bundle.cam_layer_shape(name) or (0, 0, 0)
        return f"{name} · {channels} ch · {height}x{width}{' (default)' if name == bundle.cam_layer else ''}"

    chosen = st.selectbox(
        "CAM layer",
        layers,
        format_func=label,
        help="The layer Grad-CAM and the other CAM methods weigh and upsample: a later layer gives a "
        "coarser map of the class's evidence, an earlier one a finer map of simpler features. "
        "Score-CAM costs one forward pass per channel of this layer.",
        **state.kept(key, default=default, options=layers, scope=bundle.fingerprint),
    )
    return str(chosen)
