"""Several users at once on ONE shared model, and runs interrupted half-way.

The dashboard caches one :class:`~xaicore.models.bundle.ModelBundle` per model for every
browser session (``st.cache_resource``), and each session's script runs in its own thread.
Here eight threads run a mix of explanation methods (hook-based ones included) and sanity
checks on the one embedded default model at the same time. Every result must equal the one
from a sequential run bit for bit, no hook may be left on any module, and the model's weights
(its fingerprint) never change. Interrupted runs (an exception from the progress callback, as
a Streamlit rerun raises at its next call, or from inside the model while hooks are attached)
must leave the same clean model behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch

from tests.helpers.hooks import hooks_left
from xaicore.checks.sanity import run_sanity
from xaicore.data.shapes import generate
from xaicore.explainers.api import attribute, explain
from xaicore.models.bundle import ModelBundle, fingerprint

THREADS = 8
# Small settings: the point is the interleaving, not the size of each job.
PARAMS = {
    "smoothgrad": {"samples": 4},
    "integrated_gradients": {"steps": 8},
    "gradient_shap": {"samples": 4},
}
EXPLAIN_METHODS = (
    "guided_backprop",
    "deeplift",
    "smoothgrad",
    "saliency",
    "gradcam",
    "deconvolution",
    "guided_gradcam",
    "lrp",
    "integrated_gradients",
    "gradient_shap",
)


class Interrupted(BaseException):
    """Stands in for Streamlit's rerun/stop exceptions (BaseException, not Exception)."""


@pytest.fixture(scope="module")
def bundle(default_bundle) -> ModelBundle:
    return default_bundle  # shared, read only (tests/conftest.py)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    pictures, _ = generate(3, seed=21, size=64)
    return pictures


def _assert_clean(bundle: ModelBundle) -> None:
    assert hooks_left(bundle.model) == []
    assert fingerprint(bundle.model) == bundle.fingerprint
    assert not bundle.model.training
    assert all(p.grad is None for p in bundle.model.parameters())
    # The lock is free: another thread can take it at once.
    taken: list[bool] = []

    def take() -> None:
        if bundle.lock.acquire(timeout=5):
            taken.append(True)
            bundle.lock.release()

    worker = threading.Thread(target=take)
    worker.start()
    worker.join()
    assert taken == [True]


# --- the jobs: each returns plain numpy arrays ----------------------------------------------


def _attribute_job(method: str, index: int) -> Callable[[ModelBundle, np.ndarray], dict[str, np.ndarray]]:
    def job(bundle: ModelBundle, images: np.ndarray) -> dict[str, np.ndarray]:
        inputs = bundle.to_input(images[index % len(images) :][:2])
        result = attribute(
            bundle, inputs, method=method, target=index % bundle.num_classes, seed=index, params=PARAMS.get(method)
        )
        return {"values": result.values.detach().cpu().numpy()}

    job.__name__ = f"attribute[{method},{index}]"
    return job


def _explain_job(index: int) -> Callable[[ModelBundle, np.ndarray], dict[str, np.ndarray]]:
    def job(bundle: ModelBundle, images: np.ndarray) -> dict[str, np.ndarray]:
        result = explain(
            bundle,
            images[index % len(images)],
            methods=["saliency", "guided_backprop", "gradcam", "deeplift", "guided_gradcam"],
            seed=index,
            params=PARAMS,
        )
        return {m.method: m.attribution for m in result.methods}

    job.__name__ = f"explain[{index}]"
    return job


def _sanity_job(mode: str, seed: int) -> Callable[[ModelBundle, np.ndarray], dict[str, np.ndarray]]:
    def job(bundle: ModelBundle, images: np.ndarray) -> dict[str, np.ndarray]:
        result = run_sanity(
            bundle, images[0], methods=["guided_backprop", "gradcam"], mode=mode, seeds=(seed,), keep_maps="first"
        )
        return {
            **{f"values.{k}": v for k, v in result.values.items()},
            **{f"maps.{k}": v for k, v in result.maps.items()},
        }

    job.__name__ = f"sanity[{mode},{seed}]"
    return job


def _jobs() -> list[Callable]:
    jobs: list[Callable] = [_attribute_job(m, i) for i, m in enumerate(EXPLAIN_METHODS)]
    jobs += [_explain_job(i) for i in range(2)]
    jobs += [_sanity_job("cascading", 0), _sanity_job("independent", 1)]
    order = np.random.default_rng(4).permutation(len(jobs))
    return [jobs[i] for i in order]


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], name: str) -> None:
    assert sorted(got) == sorted(expected), name
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name}: {key}")


def test_eight_threads_on_one_shared_model_equal_a_sequential_run(bundle, images):
    jobs = _jobs()
    sequential = [job(bundle, images) for job in jobs]
    _assert_clean(bundle)

    # The jobs dealt round robin to 8 threads that start together.
    work = list(enumerate(jobs))
    shares = [work[i::THREADS] for i in range(THREADS)]
    start = threading.Barrier(THREADS)
    results: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        try:
            start.wait(timeout=60)
            for position, (_index, job) in enumerate(shares[thread]):
                results[(thread, position)] = job(bundle, images)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert len(results) == len(work)
    for thread, share in enumerate(shares):
        for position, (index, job) in enumerate(share):
            _assert_same(results[(thread, position)], sequential[index], job.__name__)
    _assert_clean(bundle)


def test_the_sequential_results_are_real_maps(bundle, images):
    """Guard for the test above: the jobs produce finite, non-zero, method-specific maps."""
    saliency = _attribute_job("saliency", 0)(bundle, images)["values"]
    guided = _attribute_job("guided_backprop", 0)(bundle, images)["values"]
    assert np.isfinite(saliency).all() and np.abs(saliency).sum() > 0
    assert not np.allclose(np.abs(guided), saliency)


# --- interrupted runs -----------------------------------------------------------------------


def _interrupt_after(calls: int) -> Callable[[int, int, str], None]:
    seen = []

    def progress(_done: int, _total: int, _title: str) -> None:
        seen.append(_title)
        if len(seen) > calls:
            raise Interrupted(f"interrupted before {_title}")

    return progress


@pytest.mark.parametrize("after", [1, 4])
def test_an_explain_run_interrupted_from_its_progress_callback_leaves_the_model_clean(bundle, images, after):
    methods = ["deeplift", "guided_backprop", "lrp", "smoothgrad", "gradcam", "deconvolution"]
    with pytest.raises(Interrupted):
        explain(bundle, images[1], methods=methods, seed=3, params=PARAMS, progress=_interrupt_after(after))
    _assert_clean(bundle)
    again = explain(bundle, images[1], methods=methods, seed=3, params=PARAMS)
    reference = explain(bundle, images[1], methods=methods, seed=3, params=PARAMS)
    for a, b in zip(again.methods, reference.methods, strict=True):
        np.testing.assert_array_equal(a.attribution, b.attribution)


def test_a_sanity_check_interrupted_half_way_leaves_the_shared_model_clean(bundle, images):
    with pytest.raises(Interrupted):
        run_sanity(
            bundle,
            images[0],
            methods=["guided_backprop", "deeplift"],
            mode="cascading",
            seeds=(0,),
            progress=_interrupt_after(3),
        )
    _assert_clean(bundle)


class _RaiseInside:
    """A forward hook on one layer that raises while the method's own hooks are attached.

    (LRP is not among the methods: it runs on a throw-away copy and never hooks the shared model.)
    """

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def __call__(self, _module, _inputs, _output) -> None:
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution", "deeplift", "gradcam", "saliency"])
@pytest.mark.parametrize(
    "exc", [Interrupted("stop"), torch.OutOfMemoryError("out of memory (simulated)")], ids=["interrupt", "oom"]
)
def test_an_error_inside_the_model_while_hooks_are_attached_removes_them(bundle, images, method, exc):
    layer = bundle.model.get_submodule(bundle.layers[len(bundle.layers) // 2])
    raiser = _RaiseInside(exc)
    handle = layer.register_forward_hook(raiser)
    try:
        with pytest.raises((Interrupted, Exception)):
            attribute(bundle, bundle.to_input(images[:1]), method=method, target=0)
    finally:
        handle.remove()
    assert raiser.calls >= 1
    _assert_clean(bundle)
