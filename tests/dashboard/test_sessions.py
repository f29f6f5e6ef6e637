"""Several browser sessions on one server, long sessions, and runs interrupted by a rerun.

Each AppTest is one browser session; sessions in one process share ``st.cache_resource``,
so they share the cached default model exactly as the users of one server do.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import numpy as np
import pytest

from dashboard import state
from tests.dashboard import apptest_support as support
from tests.helpers.hooks import hooks_left
from xaicore.checks.sanity import run_sanity
from xaicore.explainers.api import explain
from xaicore.models.bundle import fingerprint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

EXPLAIN_METHODS = ["saliency", "gradcam", "guided_backprop", "deeplift", "smoothgrad"]
SANITY_METHODS = ["guided_backprop", "deeplift"]


def _stored(at, kind: str) -> list:
    return [value for key, value in at.session_state[state._STORE_KEY].items() if key[0] == kind]


def _explain_session():
    at = support.start()
    at.session_state["explain.w.auto"] = False
    at = support.open_page(at, "pages/explain.py")
    at.multiselect(key="explain.w.methods").set_value(EXPLAIN_METHODS)
    at.button(key="explain.act.run").click()
    return at


def _sanity_session():
    at = support.open_page(support.start(), "pages/sanity.py")
    at.multiselect(key="sanity.w.methods").set_value(SANITY_METHODS)
    at.number_input(key="sanity.w.seeds").set_value(2)
    at.radio(key="sanity.w.mode").set_value("cascading")
    at.run()
    at.button(key="sanity.act.run").click()
    return at


@pytest.fixture
def one_compile_at_a_time(monkeypatch):
    """Each AppTest compiles the page scripts itself; CPython 3.11.7's AST constructor keeps
    unsynchronized global state (fixed in later 3.11 releases), so two threads compiling at once
    can fail with "AST constructor recursion depth mismatch". The runs still overlap: only the
    compilation of the scripts is serialized."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    lock = threading.Lock()
    compile_script = ScriptCache.get_bytecode

    def serialized(self, script_path: str):
        with lock:
            return compile_script(self, script_path)

    monkeypatch.setattr(ScriptCache, "get_bytecode", serialized)


@pytest.mark.usefixtures("one_compile_at_a_time")
def test_a_sanity_check_in_one_session_leaves_another_sessions_explanations_unaffected():
    explaining, checking = _explain_session(), _sanity_session()
    bundle = explaining.session_state[state.MODEL_KEY]
    assert checking.session_state[state.MODEL_KEY] is bundle  # one cached model for both users
    windows: dict[str, tuple[float, float]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def press(name: str, at) -> None:
        try:
            start.wait(timeout=60)
            began = time.perf_counter()
            at.run()
            windows[name] = (began, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=press, args=("explain", explaining)),
        threading.Thread(target=press, args=("sanity", checking)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert failures == []
    (a0, a1), (b0, b1) = windows["explain"], windows["sanity"]
    assert max(a0, b0) < min(a1, b1), "the two runs did not overlap"
    for at in (explaining, checking):
        assert not at.exception and support.errors(at) == []

    # The explanations equal a run on the same model with nobody else around.
    image = explaining.session_state[state.IMAGE_KEY]
    target = explaining.session_state[state.TARGET_KEY]
    alone = explain(bundle, image.array, methods=EXPLAIN_METHODS, target=target)
    got = {r.methods[0].method: r.methods[0] for r in _stored(explaining, "explain")}
    assert sorted(got) == sorted(EXPLAIN_METHODS)
    for item in alone.methods:
        np.testing.assert_array_equal(got[item.method].attribution, item.attribution, err_msg=item.method)

    # And the check equals a check run alone.
    (checked,) = _stored(checking, "sanity")
    reference = run_sanity(
        bundle,
        checking.session_state[state.IMAGE_KEY].array,
        methods=SANITY_METHODS,
        mode="cascading",
        seeds=(0, 1),
        target=checking.session_state[state.TARGET_KEY],
    )
    for key, values in reference.values.items():
        np.testing.assert_array_equal(checked.values[key], values, err_msg=key)
    assert hooks_left(bundle.model) == [] and fingerprint(bundle.model) == bundle.fingerprint


# --- interrupted runs ---------------------------------------------------------------------------


def test_a_run_interrupted_from_its_progress_bar_keeps_finished_work_and_the_model_clean(monkeypatch):
    """Streamlit interrupts a run at its next Streamlit call: here the progress bar update
    before SmoothGrad. What finished is kept; the next run computes only SmoothGrad."""
    import streamlit as st

    from xaicore.explainers import api, deeplift, shared, smoothgrad

    counts = {"fused pass": 0, "deeplift": 0, "smoothgrad": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    # gradients, Guided Backprop and the CAM maps come from one fused pass per run
    monkeypatch.setattr(shared, "fused_pass", counted("fused pass", shared.fused_pass))
    monkeypatch.setattr(deeplift, "deeplift", counted("deeplift", deeplift.deeplift))
    monkeypatch.setattr(smoothgrad, "smoothgrad", counted("smoothgrad", smoothgrad.smoothgrad))

    real = api.explain
    interrupt = {"on": True}

    def explain_with_a_rerun(*args, progress=None, **kwargs):
        def bar(done, total, title):
            if interrupt["on"] and title == "SmoothGrad":
                st.stop()  # what a widget change does at the next Streamlit call
            progress(done, total, title)

        return real(*args, progress=bar, **kwargs)

    monkeypatch.setattr(api, "explain", explain_with_a_rerun)
    at = _explain_session().run()
    assert not at.exception
    assert sorted(r.methods[0].method for r in _stored(at, "explain")) == sorted(
        m for m in EXPLAIN_METHODS if m != "smoothgrad"
    )
    assert counts == {"fused pass": 1, "deeplift": 1, "smoothgrad": 0}
    bundle = at.session_state[state.MODEL_KEY]
    assert hooks_left(bundle.model) == [] and fingerprint(bundle.model) == bundle.fingerprint

    interrupt["on"] = False
    at.button(key="explain.act.run").click()
    at = at.run()
    assert counts == {"fused pass": 1, "deeplift": 1, "smoothgrad": 1}
    assert sorted(r.methods[0].method for r in _stored(at, "explain")) == sorted(EXPLAIN_METHODS)
    at.run()  # a plain rerun computes nothing
    assert counts["smoothgrad"] == 1 and counts["fused pass"] == 1


# --- a long session -------------------------------------------------------------------------------

UPLOADS = 50
UPLOAD_SIDE = 384  # pixels: each upload is 1.7 MiB as float32, so keeping uploads would show
GROWTH_BOUND = 3 * 2**20  # bytes of numpy/Python memory the last 30 uploads may add (tracemalloc)
STORE_BOUND = 5 * 2**19  # 2.5 MiB: bytes of arrays the session's result store may hold


def _held_bytes(value, seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays reachable from ``value`` (dataclasses, tuples, dicts, lists)."""
    import dataclasses

    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_held_bytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(_held_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_held_bytes(v, seen) for v in value)
    return 0


def test_fifty_uploads_and_explanations_keep_memory_bounded():
    """50 uploads, each explained with two methods, in one session.

    Bounds: (1) the arrays held by the session's result store stay under 2.5 MiB and stop
    growing once the store is full (measured: 1.55 MiB for its 32 entries, predictions and
    explanations of the last 16 uploads; an unbounded store held 8.1 MiB after 50 uploads,
    still growing); (2) tracemalloc (numpy arrays made by the loader and
    Python objects, after a garbage collection) grows by less than 3 MiB from upload 20 to
    upload 50 (measured: 0.0 MiB, at 4.8 MiB in all), where keeping the 30 uploads would add
    51 MiB (1.7 MiB each as float32). Attributions are made by torch, whose allocations
    tracemalloc does not see: bound (1) covers them.
    """
    at = support.start()
    at.session_state["explain.w.auto"] = True
    at = support.open_page(at, "pages/explain.py")
    at.multiselect(key="explain.w.methods").set_value(["saliency", "gradcam"]).run()
    rng = np.random.default_rng(8)
    traced, held = [], []
    tracemalloc.start()
    try:
        for i in range(UPLOADS):
            pixels = rng.integers(0, 256, size=(UPLOAD_SIDE, UPLOAD_SIDE, 3), dtype=np.uint8)
            at = support.upload_image(at, f"u{i}.png", support.png_bytes(pixels))
            assert at.session_state[state.IMAGE_KEY].name == f"u{i}.png"
            store = at.session_state[state._STORE_KEY]
            assert len(store) <= state.RESULT_CAPACITY
            held.append(_held_bytes(store.items()))
            gc.collect()  # count what is still referenced, not garbage waiting for the collector
            traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert not at.exception and support.errors(at) == []
    stored = _stored(at, "explain")
    assert len(stored) >= 2 and stored[-1].image_hash == at.session_state[state.IMAGE_KEY].hash
    print(
        f"store: {held[19] / 2**20:.2f} MiB at upload 20, {held[-1] / 2**20:.2f} MiB at 50; traced memory: "
        f"{traced[19] / 2**20:.1f} MiB at upload 20, {traced[-1] / 2**20:.1f} MiB at 50"
    )
    assert max(held) < STORE_BOUND and max(held[20:]) <= max(held[:20]) * 1.1
    growth = traced[-1] - traced[19]
    assert growth < GROWTH_BOUND, f"memory grew by {growth / 2**20:.1f} MiB over 30 uploads"
