"""resolve_methods and ModelBundle.available_methods: the one way names become method specs."""

from __future__ import annotations

import dataclasses

import pytest

from tests.helpers.explain_models import tiny_bundle
from xaicore.errors import MethodUnavailable, ParameterError, UnknownNameError
from xaicore.explainers.api import resolve_methods
from xaicore.explainers.registry import get_method, list_methods


def test_names_titles_and_all_in_the_given_order_duplicates_dropped() -> None:
    assert [s.name for s in resolve_methods(None)] == list_methods()
    assert [s.name for s in resolve_methods("all")] == list_methods()
    title = get_method("gradcam").title
    assert [s.name for s in resolve_methods(["saliency", title, "saliency"])] == ["saliency", "gradcam"]
    assert [s.name for s in resolve_methods(" gradcam, saliency ,")] == ["gradcam", "saliency"]


def test_unique_refuses_duplicates_and_nothing_chosen_is_refused() -> None:
    with pytest.raises(ParameterError, match="once; remove the duplicates"):
        resolve_methods(["saliency", "Saliency"], unique=True)
    for empty in ((), [], "", [" "]):
        with pytest.raises(ParameterError, match="pick at least one"):
            resolve_methods(empty)
    with pytest.raises(UnknownNameError, match="sailency"):
        resolve_methods(["sailency"])


def test_available_on_refuses_what_the_model_cannot_run_and_available_methods_leaves_it_out() -> None:
    bundle = dataclasses.replace(tiny_bundle(), unavailable={"lrp": "functional ReLU"})
    assert bundle.available_methods() == [m for m in list_methods() if m != "lrp"]
    assert tiny_bundle().available_methods() == list_methods()
    assert [s.name for s in resolve_methods(["lrp", "saliency"])] == ["lrp", "saliency"]
    with pytest.raises(MethodUnavailable, match=f"{get_method('lrp').title} cannot run on .*: functional ReLU"):
        resolve_methods(["saliency", "lrp"], available_on=bundle)
