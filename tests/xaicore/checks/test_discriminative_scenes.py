"""Class-discriminativeness over many scenes on a tiny model: per-scene values, intervals, JSON, CLI.

The figures on the default model (200 scenes) are tested in ``test_discriminative.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.checks.discriminative import compare_classes
from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
from xaicore.data.shapes import generate_scene, generate_scenes
from xaicore.errors import ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

METHODS = ("saliency", "guided_backprop", "gradcam")


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(seed=2, num_classes=8)


@pytest.fixture(scope="module")
def scenes():
    return generate_scenes(7, seed=3, size=32)


@pytest.fixture(scope="module")
def result(bundle, scenes):
    return discriminativeness_over_scenes(bundle, scenes, methods=METHODS, batch_size=3)


def test_each_scene_gives_what_compare_classes_gives(bundle, scenes, result):
    assert result.ssim.shape == result.spearman.shape == (3, 7)
    assert result.status.shape == (3, 7, 2)
    np.testing.assert_array_equal(result.labels, [s.labels for s in scenes])
    for i, scene in enumerate(scenes):
        one = compare_classes(bundle, scene, methods=METHODS)
        assert one.classes == tuple(scene.labels)
        for k, method in enumerate(METHODS):
            # float32 attributions differ in the last bits between batch sizes
            assert result.ssim[k, i] == pytest.approx(one.pair_ssim(method), abs=1e-5)
            assert result.spearman[k, i] == pytest.approx(one.pair_spearman(method), abs=1e-5)
            assert list(result.status[k, i]) == list(one.status[k])


def test_the_batch_size_does_not_change_the_values(bundle, scenes, result):
    single = discriminativeness_over_scenes(bundle, scenes, methods=METHODS, batch_size=1)
    np.testing.assert_allclose(single.ssim, result.ssim, atol=1e-5)


def test_intervals_are_student_t_over_scenes(result):
    for method in METHODS:
        values = result.values(method)
        interval = result.interval(method)
        low, high = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        assert interval.n == 7 and interval.kind == "t"
        assert interval.mean == pytest.approx(values.mean(), abs=1e-12)
        assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    diff = result.difference("gradcam", "saliency")
    paired = stats.ttest_rel(result.values("gradcam"), result.values("saliency")).confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((paired.low, paired.high), abs=1e-12)
    spearman = result.interval("saliency", metric="spearman")
    assert spearman.mean == pytest.approx(result.spearman[0].mean(), abs=1e-12)


def test_the_table_orders_methods_and_counts_lowest_scenes(result):
    table = result.table()
    means = [row["ssim"]["mean"] for row in table]
    assert means == sorted(means)
    assert [row["method"] for row in table] == result.ordered()
    lowest = np.argmin(result.ssim, axis=0)
    for row in table:
        k = METHODS.index(row["method"])
        assert row["lowest_share"] == pytest.approx(np.mean(lowest == k))
        assert row["maps_not_ok"] == int(np.sum(result.status[k] != "ok"))
    assert sum(row["lowest_share"] for row in table) == pytest.approx(1.0)


def test_save_writes_the_table_and_every_scene(tmp_path, result, bundle):
    path = result.save(tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "classes_scenes.json" and record["n_scenes"] == 7
    assert record["scenes"]["ssim"]["gradcam"] == pytest.approx(result.values("gradcam").tolist())
    assert record["scenes"]["labels"] == result.labels.tolist()
    assert record["table"][0]["ssim"]["mean"] == pytest.approx(result.interval(result.ordered()[0]).mean)
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scenes": []}, "at least one scene"),
        ({"batch_size": 0}, "batch_size"),
        ({"normalization": "signed"}, "absolute"),
        ({"methods": ("saliency", "saliency")}, "once"),
        ({"scenes": [generate_scene(seed=1, size=32), generate_scene(seed=2, size=48)]}, "same size"),
    ],
)
def test_bad_arguments_are_refused(bundle, scenes, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        discriminativeness_over_scenes(bundle, **{"scenes": scenes[:2], "methods": ("saliency",), **kwargs})


def test_cli_classes_over_scenes(tmp_path, monkeypatch, capsys, bundle):
    from xaicore.cli.main import main
    from xaicore.models import loading

    monkeypatch.setattr(loading, "load_model", lambda name, **_: bundle)
    argv = ["classes", "--scenes", "5", "--scene-seed", "3", "--methods", "saliency,gradcam", "--out", str(tmp_path)]
    assert main(argv) == 0
    record = json.loads((tmp_path / "classes_scenes.json").read_text())
    expected = discriminativeness_over_scenes(bundle, generate_scenes(5, seed=3), methods=("saliency", "gradcam"))
    assert record["n_scenes"] == 5 and record["params"]["scene_seed"] == 3
    assert record["scenes"]["ssim"]["gradcam"] == pytest.approx(expected.values("gradcam").tolist(), abs=1e-6)
    printed = capsys.readouterr().out
    first = expected.ordered()[0]
    line = next(row for row in printed.splitlines() if row.startswith(expected.titles[expected.methods.index(first)]))
    interval = expected.interval(first)
    assert f"{interval.mean:.3f}" in line and f"[{interval.low:.3f}, {interval.high:.3f}]" in line

    assert main(["classes", "--out", str(tmp_path)]) == 2
    assert "either one image" in capsys.readouterr().err
    assert main(["classes", "scene: circle + square", "--scenes", "5", "--out", str(tmp_path)]) == 2
    assert main(["classes", "--scenes", "1", "--out", str(tmp_path)]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_typical_scene_seed_says_when_no_seed_fits(bundle):
    from xaicore.checks.discriminative_scenes import typical_scene_seed

    with pytest.raises(ParameterError, match=r"No scene of classes \(0, 1\) from seed 5 on \(3 tries\)"):
        typical_scene_seed(bundle, (0, 1), start=5, methods=METHODS, lowest_at_most=-2.0, tries=3, size=32)
