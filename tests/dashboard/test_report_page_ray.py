"""The Report card page computing on Ray (a real local Ray, started once for the module): the rows
of the page's own engine, and the address the user gives goes to the engine."""

from __future__ import annotations

import pytest

import dashboard.pages.report as report_page
from tests.dashboard import apptest_support as support
from tests.dashboard.test_report_page import BUNDLE, METHODS, PAGE, SCENES, W, _evaluations, _press_run
from tests.helpers.local_ray import local_ray
from xaicore.data.evalsets import scene_set
from xaicore.evaluation import ray_engine
from xaicore.evaluation.rows import evaluate, make_settings

pytestmark = pytest.mark.slow  # a real Ray and its actors


@pytest.fixture(scope="module", autouse=True)
def ray_startup_s():
    with local_ray() as startup_s:
        yield startup_s


def _open_on_ray(address: str = ""):
    at = support.use_model(support.start(), BUNDLE)
    at.session_state[W + "source"] = SCENES
    at.session_state[W + "n"] = 2
    at.session_state[W + "methods"] = METHODS
    at.session_state[W + "metrics"] = ["insertion", "deletion", "pointing", "mass", "rank"]
    at.session_state[W + "step"] = 0.25
    at.session_state[W + "batch"] = 2
    at.session_state[W + "engine"] = report_page.RAY
    at.session_state[W + "ray_address"] = address
    return support.open_page(at, PAGE)


def test_a_run_on_ray_at_the_address_typed_gives_the_rows_of_this_process(monkeypatch):
    engines = []
    real = ray_engine.RayEngine

    def recording(**kwargs):
        engines.append(kwargs)
        return real(**{**kwargs, "address": None})  # the test's own Ray stands in for the cluster typed

    monkeypatch.setattr(ray_engine, "RayEngine", recording)
    at = _open_on_ray("10.1.2.3:6379")
    assert at.text_input(key=W + "ray_address").value == "10.1.2.3:6379"
    at = _press_run(at)
    assert not at.exception and support.errors(at) == []
    assert engines and all(e == {"address": "10.1.2.3:6379"} for e in engines)
    (evaluation,) = _evaluations(at)
    image_set = scene_set(2, seed=0)
    settings = make_settings(
        BUNDLE,
        image_set,
        methods=METHODS,
        metrics=["insertion", "deletion", "pointing", "mass", "rank"],
        step_fraction=0.25,
        batch_size=2,
    )
    assert evaluation.rows == evaluate(BUNDLE, image_set, settings).rows
    assert evaluation.summary.complete and len(at.dataframe) == 1


def test_an_empty_address_field_is_filled_from_the_environment(monkeypatch):
    monkeypatch.setenv(report_page.ADDRESS_VARIABLE, "auto")
    at = support.use_model(support.start(), BUNDLE)
    at.session_state[W + "engine"] = report_page.RAY
    at = support.open_page(at, PAGE)
    assert not at.exception and at.text_input(key=W + "ray_address").value == "auto"
