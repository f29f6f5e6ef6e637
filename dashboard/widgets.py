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
