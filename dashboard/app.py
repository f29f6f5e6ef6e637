"""Entry script of the dashboard: ``streamlit run dashboard/app.py`` (or ``xai-dashboard``).

Builds the navigation from :data:`dashboard.navigation.PAGES` and runs the chosen page. Each
page draws the shared sidebar itself (``dashboard.sidebar.render()``), so a page also works
when Streamlit runs it without this script (its old ``pages/`` folder mode, used by AppTest's
``switch_page`` and by the first request of a fresh server).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

try:
    import dashboard  # noqa: F401 - installed with `pip install -e .`
except ImportError:  # started from a source tree that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.navigation import build_pages


def favicon(size: int = 32) -> Image.Image:
    """The tab icon, drawn here: an eye (a dark pupil in a red iris on white).

    A Material icon name as ``page_icon`` makes the browser fetch the icon from Google's font
    servers, which an offline or privacy-minded installation must not do; an array is served
    by the app itself (a PIL image: Streamlit compares ``page_icon`` with strings first).
    """
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(x, y) / (size / 2)
    icon = np.full((size, size, 3), 255, np.uint8)
    icon[radius < 0.9] = (204, 41, 56)
    icon[radius < 0.4] = (26, 26, 31)
    return Image.fromarray(icon)


st.set_page_config(page_title="Explanation dashboard", page_icon=favicon(), layout="wide")
page = st.navigation(build_pages())
page.run()
