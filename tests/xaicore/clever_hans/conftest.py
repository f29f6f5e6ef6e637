"""The shipped Clever-Hans model and small test sets, once per session (read only)."""

from __future__ import annotations

import pytest

from xaicore.clever_hans import measures
from xaicore.models.bundle import ModelBundle


@pytest.fixture(scope="session")
def hans_bundle() -> ModelBundle:
    from xaicore.clever_hans.model import load_clever_hans_bundle

    return load_clever_hans_bundle(device="cpu")


@pytest.fixture(scope="session")
def hans_tests() -> measures.TestSets:
    return measures.make_test_sets(seed=2024, n=320)


@pytest.fixture(scope="session")
def hans_findings(hans_bundle, hans_tests) -> measures.Findings:
    return measures.find(hans_bundle, hans_tests, relevance_images=16)
