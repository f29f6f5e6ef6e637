"""Fixtures of the sanity-check tests: the tiny model, one image, and one full check of both modes
(all methods, two seeds, every map kept), computed once and only read."""

from __future__ import annotations

import pytest

from tests.helpers.sanity_fixtures import tiny_bundle, tiny_image
from xaicore.bench.sanity import METHODS
from xaicore.checks.sanity import run_sanity


@pytest.fixture(scope="session")
def bundle():
    return tiny_bundle(seed=0)


@pytest.fixture(scope="session")
def image():
    return tiny_image(seed=1).numpy()


@pytest.fixture(scope="session")
def both(bundle, image):
    return run_sanity(bundle, image, methods=METHODS, mode="both", seeds=(0, 1), keep_maps="all")
