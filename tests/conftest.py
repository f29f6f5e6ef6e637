"""Fixtures shared by the whole suite.

``default_bundle``: the embedded default model on the CPU, loaded once per session. Its users
only read it (weights, hooks and mode are checked unchanged by the concurrency tests); a test
that changes a model works on ``bundle.private_copy()`` or loads its own.

``_review_database`` (automatic): verdicts written by pages under test go to a temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from xaicore.models.bundle import ModelBundle


@pytest.fixture(scope="session")
def default_bundle() -> ModelBundle:
    from xaicore.models.default import load_default_bundle

    return load_default_bundle(device="cpu")


@pytest.fixture(scope="session", autouse=True)
def _review_database(tmp_path_factory) -> Iterator[None]:
    """Pages and servers the tests start keep verdicts in a temporary database, never in the
    user's own (``XAI_REVIEW_DB``; tests that need their own set it again)."""
    from xaicore.review.config import DB_ENV

    before = os.environ.get(DB_ENV)
    os.environ[DB_ENV] = str(tmp_path_factory.mktemp("review") / "reviews.sqlite3")
    yield
    if before is None:
        os.environ.pop(DB_ENV, None)
    else:
        os.environ[DB_ENV] = before
