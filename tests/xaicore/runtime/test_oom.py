"""Out of memory: work is retried with halved batches down to one image, then a clear message.

Simulated on the CPU: a private copy of the embedded default model refuses (raises
``torch.OutOfMemoryError``, as CUDA does) every forward pass over more than ``limit`` images.
Every explanation method, the sanity check, insertion/deletion and GAX must then give the
results of the unlimited model, having really run in smaller batches; with no batch small
enough, the user gets :class:`~xaicore.errors.OutOfMemory` with one plain message.
(``test_methods_reference.py`` checks Integrated Gradients on a tiny model; this covers the
rest end to end.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaicore.checks.sanity import run_sanity
from xaicore.confidence.gax import run_gax
from xaicore.data.shapes import generate
from xaicore.errors import OutOfMemory
from xaicore.explainers.api import attribute, explain
from xaicore.explainers.registry import list_methods
from xaicore.explainers.results import Status
from xaicore.metrics.faithfulness import insertion_deletion
from xaicore.models.bundle import ModelBundle
from xaicore.runtime.device import is_oom, run_chunked

MESSAGE = "does not fit in memory even one image at a time"
PARAMS = {
    "integrated_gradients": {"steps": 6},
    "smoothgrad": {"samples": 3},
    "gradient_shap": {"samples": 3},
    "deeplift_shap": {"references": 2},
    "occlusion": {"window": 16, "stride": 16},
    # With biases excluded, a neuron active only through its bias shares its relevance by
    # near-zero contributions, where float rounding (which differs between batch sizes) moves
    # up to 4e-4 of the map's maximum for these low-scoring targets; with biases included the
    # chunked and whole-batch maps agree to 2e-7, which is what this test is about.
    "lrp": {"biases": "include"},
}


class Limit:
    """Refuses forward passes over ``images`` images (every pass with gradients when
    ``grad_too_big``) and records the batch sizes it let through and refused."""

    def __init__(self, images: int, *, grad_too_big: bool = False) -> None:
        self.images = images
        self.grad_too_big = grad_too_big
        self.passed: list[int] = []
        self.refused: list[int] = []

    def __deepcopy__(self, _memo: dict) -> Limit:
        return self  # copies of the model (LRP's throw-away copy) share the limit and its records

    def check(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        if n > self.images or (self.grad_too_big and torch.is_grad_enabled()):
            self.refused.append(n)
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {n} images (simulated)")
        self.passed.append(n)


def _limited_class(cls: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``cls`` whose forward checks ``self.limit`` first.

    The network inside the pixel-space wrapper gets it, rather than a hook: hook-based
    explainers and throw-away copies (LRP unwraps the normalization and copies the network)
    then see an ordinary module with the same layer names.
    """

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.limit.check(x)
        return cls.forward(self, x, *args, **kwargs)

    return type(f"Limited{cls.__name__}", (cls,), {"forward": forward})


@pytest.fixture(scope="module")
def bundle(default_bundle) -> ModelBundle:
    return default_bundle  # shared, read only (tests/conftest.py)


@pytest.fixture(scope="module")
def inputs(bundle) -> torch.Tensor:
    pictures, _ = generate(5, seed=17, size=64)
    return bundle.to_input(pictures)


def limited(bundle: ModelBundle, limit: Limit) -> ModelBundle:
    """A private copy of ``bundle`` whose model refuses batches as ``limit`` says."""
    copy = bundle.private_copy()
    net = copy.model.net
    net.__class__ = _limited_class(type(net))
    net.limit = limit
    return copy


def _close(got, expected, *, tol: float = 1e-5) -> None:
    """Equal up to float32 rounding: batch size changes the order of sums inside convolutions."""
    got, expected = np.asarray(torch.as_tensor(got).cpu()), np.asarray(torch.as_tensor(expected).cpu())
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(got, expected, rtol=10 * tol, atol=tol * scale)


# --- the mechanism --------------------------------------------------------------------------


def test_run_chunked_halves_until_a_chunk_fits_and_keeps_that_size():
    tried: list[tuple[int, int]] = []

    def fn(start: int, stop: int) -> list[int]:
        tried.append((start, stop))
        if stop - start > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return list(range(start, stop))

    out = run_chunked(fn, 11, chunk=16, combine=lambda parts: [x for p in parts for x in p])
    assert out == list(range(11))
    # 11 (capped from 16) -> 5 -> 2, then chunks of 2 to the end.
    assert tried == [(0, 11), (0, 5), (0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 11)]


def test_run_chunked_gives_a_plain_message_when_one_item_does_not_fit():
    def fn(_start: int, _stop: int) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match=MESSAGE) as info:
        run_chunked(fn, 4, chunk=4, combine=list)
    assert "XAI_DEVICE=cpu" in str(info.value) and "Traceback" not in str(info.value)


def test_other_errors_are_not_retried():
    calls = []

    def fn(start: int, stop: int) -> None:
        calls.append((start, stop))
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        run_chunked(fn, 8, chunk=8, combine=list)
    assert calls == [(0, 8)]
    assert is_oom(torch.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(MemoryError("host"))


# --- every method -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", list_methods())
def test_every_method_retries_in_smaller_batches_and_matches_the_unchunked_result(bundle, inputs, method):
    if method in bundle.unavailable:
        pytest.skip(bundle.unavailable[method])
    target = torch.arange(inputs.shape[0]) % bundle.num_classes
    # A noise baseline: paths from a flat black image meet exact ties in max-pooling, where
    # rounding differences between batch sizes would pick another maximum.
    kwargs = dict(method=method, target=target, seed=2, params=PARAMS.get(method), baseline="noise")
    expected = attribute(bundle, inputs, **kwargs)
    limit = Limit(2)
    got = attribute(limited(bundle, limit), inputs, **kwargs)
    # Grad-CAM++'s weights divide by 2 G^2 + sum(A) G^3: the gradients' rounding, which changes
    # with the batch size, enters at the third power (measured: 3e-5 of the peak)
    _close(got.values, expected.values, tol=1e-4 if method == "gradcam_pp" else 1e-5)
    if expected.delta is not None:
        # DeepLift's delta is float rounding alone (max-poolings as ReLU networks): compared on
        # the scale of the amount the attributions add up to, not on its own
        _close(got.expected, expected.expected)
        scale = float(expected.expected.abs().max())
        np.testing.assert_allclose(got.delta.numpy(), expected.delta.numpy(), rtol=0, atol=1e-5 * scale)
    assert limit.refused, "the first batch should have been too big"
    assert limit.passed and max(limit.passed) <= 2


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "deeplift", "smoothgrad", "occlusion"])
def test_a_method_that_cannot_run_on_one_image_fails_with_the_plain_message(bundle, inputs, method):
    limit = Limit(0)
    with pytest.raises(OutOfMemory, match=MESSAGE):
        attribute(limited(bundle, limit), inputs[:2], method=method, target=0, params=PARAMS.get(method))
    # DeepLift runs each image with its baseline: two images per pass at the least.
    assert limit.passed == [] and min(limit.refused) <= 2


def test_explain_reports_out_of_memory_per_method_as_one_sentence(bundle, inputs):
    """The prediction (no gradients) fits; every gradient pass is refused."""
    image = inputs[0].permute(1, 2, 0).numpy()
    result = explain(limited(bundle, Limit(1, grad_too_big=True)), image, methods=["saliency", "deeplift"])
    for item in result.methods:
        assert item.status is Status.FAILED and item.attribution is None
        assert MESSAGE in item.reason and "Traceback" not in item.reason and "CUDA" not in item.reason


# --- sanity, faithfulness, GAX ------------------------------------------------------------------


def test_a_sanity_check_under_a_memory_limit_equals_the_unlimited_one(bundle, inputs):
    kwargs = dict(methods=["guided_backprop"], mode="cascading", seeds=(0,), keep_maps="first")
    expected = run_sanity(bundle, inputs[:2], **kwargs)
    limit = Limit(1)
    got = run_sanity(limited(bundle, limit), inputs[:2], **kwargs)
    assert limit.refused and max(limit.passed) == 1
    # SSIM and rank correlations of maps with flat regions magnify float32 rounding differences
    # between batch sizes to ~1e-3; a mix-up of images or targets would move them by far more.
    for key in expected.values:
        _close(got.values[key], expected.values[key], tol=5e-3)
    assert [v.status for v in got.verdicts] == [v.status for v in expected.verdicts]


def test_insertion_deletion_under_a_memory_limit_equals_the_unlimited_one(bundle, inputs):
    maps = {"saliency": attribute(bundle, inputs, method="saliency", target=1).values}
    kwargs = dict(target=1, step_fraction=0.1, batch_size=64, seed=3)
    expected = insertion_deletion(bundle, inputs, maps, **kwargs)
    limit = Limit(7)
    got = insertion_deletion(limited(bundle, limit), inputs, maps, **kwargs)
    assert limit.refused and max(limit.passed) <= 7
    for mine, theirs in zip(got.curves, expected.curves, strict=True):
        _close(mine.insertion, theirs.insertion)
        _close(mine.deletion, theirs.deletion)
        np.testing.assert_array_equal(mine.rank, theirs.rank)
    with pytest.raises(OutOfMemory, match=MESSAGE):
        insertion_deletion(limited(bundle, Limit(0)), inputs[:1], {"saliency": maps["saliency"][:1]}, **kwargs)


def test_gax_under_a_memory_limit_equals_the_unlimited_run(bundle, inputs):
    """In float64, where batch size no longer changes the rounding: equal to 1e-9."""
    double = bundle.private_copy()
    double.model.double()
    kwargs = dict(target=[0, 1, 2], target_co=1e9, max_steps=6)
    expected = run_gax(double, inputs[:3].double(), **kwargs)
    limit = Limit(1)
    got = run_gax(limited(double, limit), inputs[:3].double(), **kwargs)
    assert limit.refused and max(limit.passed) == 1
    for mine, theirs in zip(got.images, expected.images, strict=True):
        _close(mine.co_curve, theirs.co_curve, tol=1e-9)
        _close(mine.heatmap, theirs.heatmap, tol=1e-9)
        assert mine.steps == theirs.steps and mine.reached == theirs.reached
    with pytest.raises(OutOfMemory, match=MESSAGE):
        run_gax(limited(bundle, Limit(0)), inputs[:1], target=0, max_steps=2)
