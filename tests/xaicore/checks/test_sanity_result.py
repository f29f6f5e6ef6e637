"""The sanity check's result (:mod:`xaicore.checks.sanity_result`): mean and spread over seeds, the
verdict rule, re-judging at another threshold, CSV, JSON and NPZ."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from xaicore.checks.sanity import METRICS, run_sanity
from xaicore.errors import ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


def test_mean_and_std_over_seeds(both):
    for metric in METRICS:
        per_seed = both.values[metric][0, 2].mean(axis=-1)  # cascading, third method
        method = both.methods[2]
        np.testing.assert_allclose(both.mean(metric, mode="cascading", method=method), per_seed.mean(axis=0))
        np.testing.assert_allclose(both.std(metric, mode="cascading", method=method), per_seed.std(axis=0))
    assert both.std("ssim_abs", mode="cascading", method="saliency").max() > 0  # seeds do differ


def test_verdict_follows_the_documented_rule(bundle, image, both):
    for method in both.methods:
        value = both.mean("ssim_abs", mode="cascading", method=method)[0]
        verdict = both.verdict(method)
        assert verdict.value == pytest.approx(value)
        assert verdict.status == ("fail" if value >= 0.9 else "pass")
    # a threshold at the lowest (positive: thresholds lie in (0, 1]) SSIM fails every method at or above it
    similar = [v for v in both.verdicts if v.value > 0]
    lowest = min(v.value for v in similar)
    strict = run_sanity(
        bundle, image, methods=[v.method for v in similar], mode="independent", seeds=(0, 1), threshold=lowest
    )
    assert all(v.status == "fail" for v in strict.verdicts)
    assert [v.value for v in strict.verdicts] == pytest.approx([v.value for v in similar])


def test_csv_json_and_npz(tmp_path, both):
    rows = list(csv.DictReader(io.StringIO(both.to_csv())))
    assert len(rows) == len(METRICS) * both.values["ssim_abs"].size
    row = next(
        r
        for r in rows
        if r["mode"] == "independent"
        and r["method"] == "gradcam"
        and r["step"] == "1"
        and r["seed"] == "1"
        and r["metric"] == "spearman_signed"
    )
    j = both.methods.index("gradcam")
    assert float(row["value"]) == both.values["spearman_signed"][1, j, 1, 1, 0]
    assert row["layer"] == "net.conv2"

    paths = both.save(tmp_path, save_maps=True)
    record = json.loads(paths[0].read_text())
    entry = record["methods"]["guided_backprop"]
    assert entry["layers_forward_order"] == ["net.conv1", "net.conv2", "net.head"]
    assert entry["steps"] == ["net.head", "net.conv2", "net.conv1"]
    cascading = entry["modes"]["cascading"]
    j = both.methods.index("guided_backprop")
    assert cascading["ssim_abs"]["per_seed"] == both.values["ssim_abs"][0, j, :, :, 0].tolist()
    assert cascading["spearman_signed"]["mean"] == pytest.approx(
        both.mean("spearman_signed", mode="cascading", method="guided_backprop").tolist()
    )
    assert entry["verdict"]["status"] in ("pass", "fail")
    assert record["params"]["normalizations"]["abs"] == "abs"
    assert record["params"]["cam_layer"] == "net.conv2"  # the CAM methods' layer is recorded
    with np.load(paths[1]) as npz:
        assert npz["randomized_abs"].shape == both.maps["abs"].shape
        np.testing.assert_array_equal(npz["trained_signed"], both.trained_maps["signed"])
        assert npz["steps"].tolist() == list(both.steps)
        assert npz["normalizations"].tolist() == ["abs", "signed"]


def test_with_threshold_rejudges_without_recomputing(both):
    values = sorted(v.value for v in both.verdicts)
    middle = (values[2] + values[3]) / 2
    judged = both.with_threshold(middle)
    assert [v.status for v in judged.verdicts] == ["fail" if v.value >= middle else "pass" for v in both.verdicts]
    assert sum(v.status == "fail" for v in judged.verdicts) == len(values) - 3
    assert judged.params["threshold"] == middle and both.params["threshold"] == 0.9
    assert judged.values is both.values
    with pytest.raises(ParameterError, match="threshold"):
        both.with_threshold(0.0)
