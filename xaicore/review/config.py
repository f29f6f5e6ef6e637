"""Where review data lives, set by environment variables (``xai-dashboard --review-db`` and
``--cases-root`` set them for the server). No heavy imports: the launcher reads this."""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "XAI_REVIEW_DB"
"""Environment variable naming the review database file (read by :func:`default_db_path`)."""
CASES_ROOT_ENV = "XAI_CASES_ROOT"
"""Environment variable naming the folder whose sub-folders the dashboard may open as case lists."""


def default_db_path() -> Path:
    """Where verdicts are kept unless told otherwise: ``$XAI_REVIEW_DB``, else
    ``$XDG_DATA_HOME/xaicore/reviews.sqlite3`` (``~/.local/share`` when that is not set)."""
    given = os.environ.get(DB_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / "xaicore" / "reviews.sqlite3"


def cases_root() -> Path | None:
    """The folder of case lists the dashboard may open (``$XAI_CASES_ROOT``), or ``None``."""
    given = os.environ.get(CASES_ROOT_ENV, "").strip()
    return Path(given).expanduser() if given else None
