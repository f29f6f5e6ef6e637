"""The evaluation on a real local Ray: the local engine's rows, resuming, an actor killed mid-run.

Ray starts once for the module (two CPUs, a small object store, no dashboard) and is shut down
at the end; the teardown checks that none of its processes is left.
"""

from __future__ import annotations

import json

import pytest
import ray

from tests.helpers.local_ray import local_ray
from tests.xaicore.cli.test_cli_evaluate import random_default_bundle
from tests.xaicore.evaluation.test_evaluate import shapes_bundle
from xaicore.bench.common import BenchContext
from xaicore.data.evalsets import scene_set
from xaicore.data.imagesets import generated_test_set
from xaicore.errors import ParameterError
from xaicore.evaluation.ray_engine import ACTOR_PREFIX, RayEngine
from xaicore.evaluation.report import build_report
from xaicore.evaluation.rows import evaluate, make_settings
from xaicore.evaluation.store import ROWS_FILE, evaluate_in_folder

STEP = 0.1
pytestmark = pytest.mark.slow  # each run starts actors, each importing PyTorch: seconds apiece


@pytest.fixture(scope="module", autouse=True)
def ray_startup_s():
    with local_ray() as startup_s:
        yield startup_s


@pytest.fixture(scope="module")
def bundle():
    return shapes_bundle()


@pytest.fixture(scope="module")
def scenes():
    return scene_set(3, seed=5)  # six items with object masks


def _settings(bundle, images, **kwargs):
    options = {
        "methods": ["saliency", "gradcam", "smoothgrad"],
        "metrics": ["insertion", "deletion", "pointing", "mass", "rank"],  # no runtime: a measured time
        "step_fraction": STEP,
        "batch_size": 2,
        "params": {"smoothgrad": {"samples": 3}},
    }
    options.update(kwargs)
    return make_settings(bundle, images, **options)


def _comparable(record):
    record = json.loads(json.dumps(record))
    record.get("provenance", {}).pop("created", None)
    return record


def _batches_done(messages):
    return sorted(m for m in messages if m.endswith(" done"))


def test_the_rows_summary_and_report_equal_the_local_engine_s(bundle, scenes, tmp_path):
    settings = _settings(bundle, scenes)
    local = evaluate(bundle, scenes, settings)
    messages = []
    on_ray = evaluate_in_folder(
        bundle,
        scenes,
        settings,
        tmp_path,
        engine=RayEngine(actors=2),
        progress=lambda done, total, message: messages.append(message),
    )
    exact = [r for r in local.rows if r.method != "smoothgrad"]
    assert [r for r in on_ray.rows if r.method != "smoothgrad"] == exact  # every field, bit for bit
    assert len(on_ray.rows) == 6 * 4 and any(r.relevance_mass is not None for r in on_ray.rows)
    for mine, theirs in zip(on_ray.rows, local.rows):
        # SmoothGrad: the same seeded noise; its mean over samples is summed in another order
        # when the actor's PyTorch has another thread count, so the last float32 bits may differ
        assert mine.key == theirs.key and mine.status == theirs.status
        for field in ("insertion_auc", "deletion_auc", "relevance_mass", "relevance_rank"):
            assert getattr(mine, field) == pytest.approx(getattr(theirs, field), rel=1e-6, abs=1e-9)
    figures = [{m["method"]: m for m in _comparable(e.summary.record())["methods"]} for e in (on_ray, local)]
    for method in ("saliency", "gradcam", "random"):
        assert figures[0][method] == figures[1][method]  # every figure, exactly
    assert build_report(on_ray.summary).summary == build_report(local.summary).summary
    assert _batches_done(messages) == ["images 1-2 done", "images 3-4 done", "images 5-6 done"]
    stored = [json.loads(line) for line in (tmp_path / ROWS_FILE).read_text().splitlines()]
    assert sorted((r["image"], r["method"]) for r in stored) == sorted(r.key for r in local.rows)


def test_a_stopped_run_resumes_with_only_the_missing_rows(bundle, scenes, tmp_path):
    settings = _settings(bundle, scenes)
    whole = evaluate(bundle, scenes, settings)
    one_at_a_time = RayEngine(actors=1, in_flight=1)
    first = evaluate_in_folder(bundle, scenes, settings, tmp_path, engine=one_at_a_time, should_stop=lambda: True)
    assert not first.summary.complete and first.summary.n_images_done == 2
    path = tmp_path / ROWS_FILE
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 2 * 4
    path.write_text("".join(lines) + lines[0][:20])  # an interrupted write: half a row at the end

    messages = []
    resumed = evaluate_in_folder(
        bundle,
        scenes,
        settings,
        tmp_path,
        engine=RayEngine(actors=1),
        progress=lambda done, total, message: messages.append(message),
    )
    assert _batches_done(messages) == ["images 3-4 done", "images 5-6 done"]  # the first batch is not recomputed
    assert [r.key for r in resumed.rows] == [r.key for r in whole.rows] and resumed.summary.complete
    assert [r for r in resumed.rows if r.method != "smoothgrad"] == [r for r in whole.rows if r.method != "smoothgrad"]
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["image"], r["method"]) for r in stored]
    assert len(keys) == len(set(keys)) == 6 * 4  # no duplicate, no half row


def test_an_actor_killed_mid_run_is_restarted_and_its_batches_sent_again(bundle, tmp_path):
    images = generated_test_set(6, seed=2)
    settings = _settings(
        bundle, images, methods=["saliency", "gradcam"], metrics=["insertion", "deletion"], batch_size=1, params={}
    )
    whole = evaluate(bundle, images, settings)
    killed = []

    def kill_once(done, total, message):
        if killed or not message.endswith(" done"):
            return
        names = [name for name in ray.util.list_named_actors() if name.startswith(ACTOR_PREFIX)]
        assert len(names) == 1
        ray.kill(ray.get_actor(names[0]), no_restart=False)  # its next batch is in flight (in_flight=2)
        killed.append(names[0])

    evaluation = evaluate_in_folder(
        bundle, images, settings, tmp_path, engine=RayEngine(actors=1, in_flight=2), progress=kill_once
    )
    assert killed and evaluation.rows == whole.rows
    keys = [(r["image"], r["method"]) for r in map(json.loads, (tmp_path / ROWS_FILE).read_text().splitlines())]
    assert len(keys) == len(set(keys)) == 6 * 3


def test_the_command_on_ray_writes_the_files_of_the_local_command(tmp_path, monkeypatch, capsys):
    import xaicore.models.loading as loading
    from xaicore.cli.main import main

    model = random_default_bundle()
    monkeypatch.setattr(loading, "load_model", lambda name, **kwargs: model)
    common = ["generated:4", "--methods", "saliency,gradcam", "--metrics", "insertion,deletion", "--step", "0.2"]
    assert main(["evaluate", *common, "--batch", "2", "--out", str(tmp_path / "local")]) == 0
    assert (
        main(["evaluate", *common, "--batch", "2", "--engine", "ray", "--actors", "1", "--out", str(tmp_path / "ray")])
        == 0
    )
    capsys.readouterr()
    for name in ("rows.csv", "summary.csv", "report.md"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    rows = {p: sorted((tmp_path / p / ROWS_FILE).read_text().splitlines()) for p in ("local", "ray")}
    assert rows["ray"] == rows["local"]


def test_engine_options_are_checked():
    with pytest.raises(ParameterError, match="actors"):
        RayEngine(actors=0)
    with pytest.raises(ParameterError, match="in_flight"):
        RayEngine(in_flight=0)


def test_the_benchmark_times_the_local_engine_and_ray(bundle):
    import torch

    from xaicore.bench import evaluate as bench

    assert bench.ACTOR_COUNTS == (1, 2)
    ctx = BenchContext(bundle=bundle, device=torch.device("cpu"), batch=1, repeats=1)
    figures = bench.measure(ctx, actor_counts=(1,))  # one pool here: each start costs seconds
    assert figures["images"] == 4 and figures["ray_cpus"] == 2 and figures["ray_gpus"] == 0
    for engine in ("local", "ray_1_actor"):
        entry = figures[engine]
        assert entry["images_per_s"] == pytest.approx(4 / entry["wall_s"])
        assert 0 < entry["first_batch_s"] < entry["wall_s"] and entry["steady_images_per_s"] > 0
    assert figures["ray_1_actor"]["rows_equal_local"] and "ray_2_actors" not in figures
