"""Fixtures shared by the whole suite.

``default_bundle``: the embedded default model on the CPU, loaded once per session. Its users
only read it (weights, hooks and mode are checked unchanged by the concurrency tests); a test
that changes a model works on ``bundle.private_copy()`` or loads its own.
"""

from __future__ import annotations

import pytest

from xaicore.models.bundle import ModelBundle


@pytest.fixture(scope="session")
def default_bundle() -> ModelBundle:
    from xaicore.models.default import load_default_bundle

    return load_default_bundle(device="cpu")
