"""Entry script of the dashboard: ``streamlit run dashboard/app.py`` (or ``xai-dashboard``).

Builds the navigation from :data:`dashboard.navigation.PAGES` and runs the chosen page. Each
page draws the shared sidebar itself (``dashboard.sidebar.render()``), so a page also works
when Streamlit runs it without this script (its old ``pages/`` folder mode, used by AppTest's
``switch_page`` and by the first request of a fresh server).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import dashboard  # noqa: F401 - installed with `pip install -e .`
except ImportError:  # started from a source tree that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.navigation import build_pages

st.set_page_config(page_title="Explanation dashboard", page_icon=":material/visibility:", layout="wide")
page = st.navigation(build_pages())
page.run()
