"""``python -m dashboard.serve run dashboard/app.py [OPTIONS]``: Streamlit's command line, with
``dashboard/pages/`` never read as an old-style multipage folder.

Streamlit treats a ``pages/`` folder next to the entry script as its first multipage system until
some script calls ``st.navigation``; on a fresh server the first request for a deep link such as
``/explain`` would run that page alone, under a menu of raw file names. The dashboard's pages are
``st.navigation`` pages (see :mod:`dashboard.navigation`), so this process says so before the
server starts. ``xai-dashboard`` starts the server through this module.
"""

from __future__ import annotations


def main() -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web.cli import main as streamlit_main

    if hasattr(PagesManager, "uses_pages_directory"):
        PagesManager.uses_pages_directory = False
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
