"""The pages of the dashboard, in menu order.

To add a page, put its script in ``dashboard/pages/`` and add ONE line to :data:`PAGES`::

    PageSpec("sanity.py", "Sanity checks", ":material/shuffle:"),

Entries are plain specs, not ``st.Page`` objects: an ``st.Page`` can only be built inside a
script run and carries per-run state, so :func:`build_pages` makes fresh ones on every run
(module-level objects would be shared by all sessions).

A page script starts with ``sidebar.render()`` (the shared model / image / class selection),
then reads the selection with ``dashboard.state.current_model()``, ``current_image()`` and
``current_target()``, and wraps its body in ``with state.guarded("..."):`` so that errors are
shown as one sentence. See ``pages/explain.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    """One page: its script file in ``dashboard/pages/``, menu title and Material icon."""

    file: str
    title: str
    icon: str
    default: bool = False

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file

    def build(self) -> st.Page:
        return st.Page(self.path, title=self.title, icon=self.icon, default=self.default)


PAGES: list[PageSpec] = [
    PageSpec("home.py", "Home", ":material/home:", default=True),
    PageSpec("explain.py", "Explain", ":material/compare:"),
    PageSpec("sanity.py", "Sanity checks", ":material/shuffle:"),
    PageSpec("classes.py", "Class discriminativeness", ":material/call_split:"),
    PageSpec("gax.py", "GAX", ":material/auto_graph:"),
    PageSpec("co_scores.py", "AX / CO scores", ":material/leaderboard:"),
    PageSpec("faithfulness.py", "Faithfulness", ":material/trending_down:"),
    PageSpec("report.py", "Report card", ":material/fact_check:"),
    PageSpec("review.py", "Review", ":material/rate_review:"),
    PageSpec("clever_hans.py", "Clever-Hans lab", ":material/pets:"),
]


def build_pages() -> list[st.Page]:
    """Fresh ``st.Page`` objects for this run, in :data:`PAGES` order."""
    return [spec.build() for spec in PAGES]
