"""The verdict store: what is written comes back exactly, history is kept, nothing is lost to a
killed writer or to concurrent writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from xaicore.errors import ParameterError, ReviewStoreError
from xaicore.explainers.api import explain
from xaicore.explainers.results import Prediction
from xaicore.review.config import DB_ENV, default_db_path
from xaicore.review.verdicts import CaseRef, Judgement, ReviewedMap, ReviewStore

CASE = CaseRef(source="/data/chest", name="a/case-1.png", sha256="ab" * 32)


def _map(method: str = "saliency", *, seed: int = 0, fill: float = 0.25) -> ReviewedMap:
    rng = np.random.default_rng(seed)
    return ReviewedMap(
        model_name="default",
        model_fingerprint="f" * 64,
        method=method,
        title=method.title(),
        params={"steps": 8, "abs": True},
        seed=seed,
        baseline="black",
        target=2,
        target_label="triangle",
        predictions=(Prediction(2, "triangle", 0.75), Prediction(0, "circle", 0.125)),
        status="ok",
        image=np.full((4, 5, 3), fill, np.float32),
        attribution=rng.normal(size=(3, 4, 5)).astype(np.float32),
        provenance={"model_fingerprint": "f" * 64, "versions": {"torch": "x"}},
    )


def test_a_verdict_comes_back_with_its_map_exactly(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite3")
    reviewed = _map()
    written = store.record(CASE, reviewed, reviewer="  Dr  Ada ", judgement="plausible", note=" edges only ")
    assert written.reviewer == "Dr Ada" and written.note == "edges only"
    assert written.judgement is Judgement.PLAUSIBLE

    again = ReviewStore(tmp_path / "r.sqlite3")  # a fresh handle reads it from the file
    (stored,) = again.maps()
    assert stored.case == CASE
    assert np.array_equal(stored.map.attribution, reviewed.attribution)
    assert stored.map.attribution.dtype == np.float32
    assert np.array_equal(stored.map.image, reviewed.image)
    assert stored.map.params == {"steps": 8, "abs": True}
    assert stored.map.predictions == reviewed.predictions
    assert (stored.map.target, stored.map.target_label, stored.map.provenance) == (2, "triangle", reviewed.provenance)
    (verdict,) = stored.verdicts
    assert (verdict.reviewer, verdict.judgement, verdict.note, verdict.method) == (
        "Dr Ada",
        Judgement.PLAUSIBLE,
        "edges only",
        "saliency",
    )


def test_history_is_kept_and_latest_is_the_newest_per_reviewer(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite3")
    store.record(CASE, _map(), reviewer="ada", judgement="plausible", note="first look")
    store.record(CASE, _map(), reviewer="bob", judgement="unsure")
    store.record(CASE, _map(), reviewer="ada", judgement="not plausible", note="on second thought")
    store.record(CASE, _map("gradcam"), reviewer="ada", judgement="unsure")

    assert [v.judgement.value for v in store.history(CASE)] == ["plausible", "unsure", "not plausible", "unsure"]
    latest = store.latest(CASE, method="saliency")
    assert [(v.reviewer, v.judgement.value, v.note) for v in latest] == [
        ("ada", "not plausible", "on second thought"),
        ("bob", "unsure", ""),
    ]
    assert [v.method for v in store.latest(CASE)] == ["saliency", "saliency", "gradcam"]
    assert len(store.maps()) == 2  # the same map judged three times is stored once
    (saliency,) = [m for m in store.maps(CASE) if m.map.method == "saliency"]
    assert [v.reviewer for v in saliency.latest()] == ["ada", "bob"]


def test_another_case_or_other_parameters_are_other_maps(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite3")
    other = CaseRef(CASE.source, CASE.name, "cd" * 32)  # same name, other bytes: another case
    store.record(CASE, _map(), reviewer="ada", judgement="plausible")
    store.record(other, _map(), reviewer="ada", judgement="unsure")
    store.record(CASE, _map(seed=1), reviewer="ada", judgement="unsure")
    assert store.cases() == (CASE, other)
    store.record(CaseRef("elsewhere", "b.png", "00" * 32), _map(), reviewer="bob", judgement="unsure")
    assert store.judged(CASE.source) == {CASE.name: frozenset({"ada"})}
    assert len(store.maps(CASE)) == 2 and len(store.maps(other)) == 1
    assert [v.judgement.value for v in store.latest(other)] == ["unsure"]


@pytest.mark.parametrize(
    ("reviewer", "judgement", "note", "words"),
    [
        ("  ", "plausible", "", "name"),
        ("ada", "maybe", "", "'plausible'"),
        ("ada", "unsure", "x" * 5001, "5,000"),
        ("a" * 101, "unsure", "", "100"),
    ],
)
def test_bad_verdicts_are_refused_and_nothing_is_written(tmp_path, reviewer, judgement, note, words):
    store = ReviewStore(tmp_path / "r.sqlite3")
    with pytest.raises(ParameterError, match=words):
        store.record(CASE, _map(), reviewer=reviewer, judgement=judgement, note=note)
    assert store.count() == 0 and store.maps() == ()


def test_the_database_runs_in_wal_mode_with_full_sync(tmp_path):
    path = tmp_path / "r.sqlite3"
    ReviewStore(path).record(CASE, _map(), reviewer="ada", judgement="plausible")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_review_database_is_refused(tmp_path):
    junk = tmp_path / "notes.sqlite3"
    junk.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(ReviewStoreError, match="notes.sqlite3"):
        ReviewStore(junk)
    newer = tmp_path / "newer.sqlite3"
    ReviewStore(newer)
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ReviewStoreError, match="schema version 99"):
        ReviewStore(newer)


def test_the_default_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DB_ENV, str(tmp_path / "x.sqlite3"))
    assert default_db_path() == tmp_path / "x.sqlite3"
    monkeypatch.delenv(DB_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "xaicore" / "reviews.sqlite3"


def test_two_threads_writing_verdicts_on_one_case_lose_no_row(tmp_path):
    path = tmp_path / "r.sqlite3"
    ReviewStore(path)
    per_thread = 40
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def reviewer(name: str) -> None:
        store = ReviewStore(path, busy_timeout_s=30)
        start.wait()
        try:
            for k in range(per_thread):
                store.record(CASE, _map(), reviewer=name, judgement="unsure", note=f"{name} {k}")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(n,)) for n in ("ada", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = ReviewStore(path).history(CASE)
    assert len(history) == 2 * per_thread
    for name in ("ada", "bob"):
        assert [v.note for v in history if v.reviewer == name] == [f"{name} {k}" for k in range(per_thread)]
    assert len(ReviewStore(path).maps()) == 1


# A writer in its own process, with nothing but the store imported (no torch: it starts fast).
WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from xaicore.review.verdicts import CaseRef, ReviewedMap, ReviewStore
case = CaseRef({source!r}, {case_name!r}, {sha!r})
reviewed = ReviewedMap(
    model_name="default", model_fingerprint="f" * 64, method="saliency", title="Saliency", params={{}},
    seed=0, baseline="black", target=2, target_label="triangle", predictions=(), status="ok",
    image=np.zeros((4, 5, 3), np.float32), attribution=np.ones((3, 4, 5), np.float32),
)
store = ReviewStore({path!r}, busy_timeout_s=30)
go = Path({go!r})
while not go.exists():
    time.sleep(0.01)
for k in range({count}):
    verdict = store.record(case, reviewed, reviewer={name!r}, judgement="unsure", note=str(k))
    print(verdict.id, flush=True)
"""


def _writer(tmp_path: Path, name: str, *, count: int, go: Path | None = None) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parents[3])
    script = WRITER.format(
        source=CASE.source,
        case_name=CASE.name,
        sha=CASE.sha256,
        path=str(tmp_path / "r.sqlite3"),
        go=str(go or tmp_path),
        count=count,
        name=name,
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": root}
    )


def test_two_processes_writing_at_once_lose_no_row(tmp_path):
    ReviewStore(tmp_path / "r.sqlite3")
    go = tmp_path / "go"
    workers = {name: _writer(tmp_path, name, count=30, go=go) for name in ("ada", "bob")}
    time.sleep(0.5)
    go.touch()  # both start writing at the same moment
    printed = {name: w.communicate(timeout=120)[0].split() for name, w in workers.items()}
    assert [w.returncode for w in workers.values()] == [0, 0]
    history = ReviewStore(tmp_path / "r.sqlite3").history()
    assert sorted((v.reviewer, int(v.note)) for v in history) == sorted(
        (name, k) for name in ("ada", "bob") for k in range(30)
    )
    assert sorted(int(i) for ids in printed.values() for i in ids) == [v.id for v in history]
    assert len(ReviewStore(tmp_path / "r.sqlite3").maps()) == 1


def test_every_verdict_acknowledged_before_a_sigkill_is_there(tmp_path):
    path = tmp_path / "r.sqlite3"
    process = _writer(tmp_path, "ada", count=100_000)
    acknowledged: list[int] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert len(acknowledged) >= 20, "the writer did not get going"
    stored = {v.id for v in ReviewStore(path).history()}
    assert set(acknowledged) <= stored
    assert sorted(stored) == list(range(1, len(stored) + 1))  # no torn or half-written row


def test_a_map_from_an_explanation_keeps_what_the_report_needs(default_bundle, tmp_path):
    image = np.random.default_rng(3).random((64, 64, 3), dtype=np.float32)
    result = explain(default_bundle, image, methods=["saliency", "gradcam"], seed=5)
    reviewed = ReviewedMap.from_result(result, "gradcam")
    assert reviewed.model_fingerprint == default_bundle.fingerprint
    assert reviewed.target == result.target and reviewed.seed == 5
    assert reviewed.predictions[0].probability == pytest.approx(result.predictions[0].probability)
    assert np.array_equal(reviewed.attribution, result.by_method()["gradcam"].attribution)
    store = ReviewStore(tmp_path / "r.sqlite3")
    store.record(CASE, reviewed, reviewer="ada", judgement="plausible")
    (stored,) = store.maps()
    assert np.array_equal(stored.map.attribution, reviewed.attribution)
    assert stored.map.provenance["versions"]["torch"] == result.provenance.versions["torch"]
    with pytest.raises(ParameterError, match="occlusion"):
        ReviewedMap.from_result(result, "occlusion")
