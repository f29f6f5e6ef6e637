"""Completeness as a figure with its reference: what the attributions of Integrated Gradients
add up to, against forward passes computed here, and how the figure travels to JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xaicore.data.shapes import generate
from xaicore.explainers import integrated
from xaicore.explainers.api import attribute, explain
from xaicore.explainers.baselines import make_baseline
from xaicore.explainers.registry import Attribution
from xaicore.explainers.results import COMPLETENESS_TOLERANCE, MethodResult, Status


@pytest.fixture(scope="module")
def images(default_bundle):
    pictures, _labels = generate(8, seed=21, size=max(default_bundle.input_size))
    x = torch.cat([default_bundle.to_input(p) for p in pictures])
    return x, default_bundle.logits(x).argmax(1)


def _gap(bundle, x, baseline, target):
    with torch.no_grad():
        scores = bundle.logits(torch.cat([x, baseline]))
    rows = torch.arange(x.shape[0])
    return scores[: x.shape[0]][rows, target] - scores[x.shape[0] :][rows, target]


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_automatic_steps_keep_every_image_within_one_percent(default_bundle, images, baseline):
    x, target = images
    out = attribute(default_bundle, x, method="integrated_gradients", target=target, baseline=baseline)
    gap = _gap(default_bundle, x, make_baseline(baseline, x, generator=torch.Generator()), target)
    torch.testing.assert_close(out.expected, gap, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.delta, out.values.flatten(1).sum(1) - gap, rtol=1e-4, atol=1e-4)
    steps = out.details["steps"]
    assert set(steps.tolist()) <= {32.0, 64.0, 128.0, 256.0, 512.0}
    relative = out.delta.abs() / gap.abs()
    assert bool(((relative <= COMPLETENESS_TOLERANCE) | (steps == integrated.MAX_AUTO_STEPS)).all()), relative
    # each image's map is the fixed rule with the steps it was given
    for value in sorted(set(steps.tolist())):
        rows = (steps == value).nonzero().flatten()
        fixed = attribute(
            default_bundle,
            x[rows],
            method="integrated_gradients",
            target=target[rows],
            baseline=baseline,
            params={"steps": int(value)},
        )
        torch.testing.assert_close(out.values[rows], fixed.values, rtol=1e-5, atol=1e-6)


def test_more_steps_than_the_first_rule_are_used_only_where_it_falls_short(default_bundle, images):
    x, target = images
    first = attribute(
        default_bundle, x, method="integrated_gradients", target=target, params={"steps": integrated.AUTO_START}
    )
    auto = attribute(default_bundle, x, method="integrated_gradients", target=target)
    short = first.delta.abs() > COMPLETENESS_TOLERANCE * first.expected.abs()
    assert torch.equal(auto.details["steps"] > integrated.AUTO_START, short & (first.delta.abs() > 1e-5))
    torch.testing.assert_close(auto.values[~short], first.values[~short])


def test_fixed_steps_are_used_as_given_and_recorded(default_bundle, images):
    x, target = images
    out = attribute(default_bundle, x[:2], method="integrated_gradients", target=target[:2], params={"steps": 5})
    assert out.details["steps"].tolist() == [5.0, 5.0]
    assert out.reference == "f(x) - f({baseline})"


def test_explain_records_the_relative_error_and_its_reference(default_bundle, images):
    image = images[0][0].permute(1, 2, 0).numpy()
    result = explain(default_bundle, image, methods=["integrated_gradients", "saliency"], baseline="blur")
    ig, saliency = result.methods
    assert ig.reference == "f(x) - f(blur)"
    record = json.loads(json.dumps(result.record()))
    figures = record["methods"][0]["completeness"]
    assert figures["reference"] == "f(x) - f(blur)"
    assert figures["error"] == pytest.approx(figures["sum"] - figures["expected"], abs=1e-5)
    assert figures["relative_error"] == pytest.approx(abs(ig.delta) / abs(ig.expected))
    assert figures["above_tolerance"] is (figures["relative_error"] > COMPLETENESS_TOLERANCE)
    assert record["methods"][0]["details"]["steps"] in (32, 64, 128, 256, 512)
    assert record["methods"][1]["completeness"] is None and saliency.relative_error is None
    assert float(ig.attribution.sum()) == pytest.approx(figures["sum"], rel=1e-4, abs=1e-4)


def _result(delta, expected):
    return MethodResult(
        method="integrated_gradients",
        title="Integrated Gradients",
        status=Status.OK,
        attribution=np.zeros((3, 2, 2), np.float32),
        target=0,
        params={},
        runtime_s=0.0,
        delta=delta,
        expected=expected,
        reference="f(x) - f(black)",
    )


def test_relative_error_and_the_tolerance():
    assert _result(-0.25, 10.0).relative_error == pytest.approx(0.025)
    assert _result(-0.25, 10.0).incomplete
    assert not _result(0.05, -10.0).incomplete
    assert _result(0.05, 0.0).relative_error is None and not _result(0.05, 0.0).incomplete
    assert _result(None, None).completeness() is None


def test_joined_chunks_keep_every_figure():
    parts = [
        Attribution.complete(
            torch.ones(n, 1, 2, 2), torch.full((n,), 3.0), reference="f(x)", details={"k": torch.ones(n)}
        )
        for n in (2, 3)
    ]
    joined = Attribution.cat(parts)
    assert joined.values.shape[0] == 5 and joined.reference == "f(x)"
    assert joined.delta.tolist() == [1.0] * 5 and joined.expected.tolist() == [3.0] * 5
    assert joined.details["k"].shape == (5,)
