"""Data-set evaluation: rows against a one-image-at-a-time reference, resuming, aggregation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import xaicore.evaluation.rows as evaluate_module
from tests.helpers.explain_models import TinyConvNet, make_bundle
from xaicore.data import shapes
from xaicore.data.evalsets import parse_data, scene_set
from xaicore.data.imagesets import ImageItem, ImageSet, generated_test_set
from xaicore.errors import ParameterError
from xaicore.evaluation.rows import (
    EvalRow,
    EvalSettings,
    evaluate,
    iter_rows,
    make_settings,
    rows_csv,
    summarize,
)
from xaicore.evaluation.store import ROWS_FILE, RunFolder, evaluate_in_folder
from xaicore.explainers.api import attribute, method_seed
from xaicore.metrics.faithfulness import RANDOM, insertion_deletion
from xaicore.metrics.localization import localization_scores
from xaicore.models.bundle import fingerprint

STEP = 0.1  # 11 points per curve: small and fast


def shapes_bundle(**kwargs):
    """A seeded 16x16 CNN with the eight shape classes."""
    return make_bundle(
        TinyConvNet(seed=4, classes=len(shapes.CLASSES)),
        input_size=(16, 16),
        cam_layer="net.features.3",
        labels=shapes.CLASSES,
        **kwargs,
    )


@pytest.fixture(scope="module")
def bundle():
    return shapes_bundle()


@pytest.fixture(scope="module")
def scenes():
    return scene_set(2, seed=5)  # four items, each with an object mask


# ----------------------------------------------------------------------------- rows


def test_rows_equal_a_one_image_at_a_time_reference(bundle, scenes):
    settings = make_settings(bundle, scenes, methods=["saliency", "gradcam"], step_fraction=STEP, batch_size=3)
    rows = {r.key: r for r in evaluate(bundle, scenes, settings).rows}
    assert len(rows) == 4 * 3  # two methods and the random control
    for i, item in enumerate(scenes.items):
        x = bundle.to_input(item.array)
        predicted = int(bundle.logits(x).argmax())
        mask = (
            torch.nn.functional.interpolate(
                torch.from_numpy(item.mask.astype(np.float32))[None, None], size=(16, 16), mode="nearest"
            )[0, 0].numpy()
            > 0.5
        )
        start = (i // 3) * 3
        size = min(3, 4 - start)
        noise = torch.rand(
            (size, 16, 16),
            generator=torch.Generator().manual_seed(method_seed(0, f"{RANDOM}:{start}")),
            dtype=torch.float64,
        )[i - start].float()
        maps = {RANDOM: noise[None]}
        for method in ("saliency", "gradcam"):
            maps[method] = attribute(bundle, x, method=method, target=item.label).values.sum(dim=1)
        curves = insertion_deletion(bundle, x, maps, target=item.label, step_fraction=STEP, random_control=False)
        for method, c in curves.by_method().items():
            row = rows[(i, method)]
            assert row.status == "ok" and row.name == item.name and row.label == item.label
            assert row.target == item.label and row.predicted == predicted
            assert row.correct == (predicted == item.label)
            assert row.insertion_auc == pytest.approx(float(c.insertion_auc[0]), abs=1e-5)
            assert row.deletion_auc == pytest.approx(float(c.deletion_auc[0]), abs=1e-5)
            ref = localization_scores(maps[method][0].numpy(), mask)
            assert row.relevance_mass == pytest.approx(ref.relevance_mass, abs=1e-5)
            assert row.relevance_rank == pytest.approx(ref.relevance_rank, abs=1e-5)
            assert row.pointing_hit == ref.pointing_hit
            assert (row.runtime_s is None) == (method == RANDOM)


def test_target_policy_and_images_without_masks(bundle):
    images = generated_test_set(3, seed=2)
    by_label = evaluate(bundle, images, make_settings(bundle, images, methods=["saliency"], step_fraction=STEP)).rows
    settings = make_settings(bundle, images, methods=["saliency"], target="predicted", step_fraction=STEP)
    by_prediction = evaluate(bundle, images, settings).rows
    for row in by_label:
        assert row.target == row.label and row.pointing_hit is None and row.relevance_mass is None
        assert row.insertion_auc is not None
    for row in by_prediction:
        assert row.target == row.predicted


def test_only_the_requested_metrics_are_measured(bundle, scenes):
    settings = make_settings(bundle, scenes, methods=["saliency"], metrics=["mass", "runtime"], step_fraction=STEP)
    for row in evaluate(bundle, scenes, settings).rows:
        assert row.insertion_auc is None and row.deletion_auc is None and row.pointing_hit is None
        assert row.relevance_mass is not None and row.relevance_rank is None
    only_runtime = make_settings(bundle, scenes, methods=["saliency"], metrics=["runtime"])
    rows = evaluate(bundle, scenes, only_runtime).rows
    assert {r.method for r in rows} == {"saliency"}  # no random control without a metric to compare
    assert all(r.runtime_s > 0 for r in rows)


class _NanGradient(torch.autograd.Function):
    """Zero forward; NaN gradient wherever the output's gradient is non-zero (zero elsewhere)."""

    @staticmethod
    def forward(ctx, x):
        return x.sum(dim=(1, 2, 3)) * 0.0

    @staticmethod
    def backward(ctx, grad):
        nan = torch.where(grad != 0, torch.full_like(grad, float("nan")), torch.zeros_like(grad))
        return nan.view(-1, 1, 1, 1).expand(-1, 3, 8, 8)


class _Degenerate(nn.Module):
    """class 0: constant (all-zero attributions); class 1: NaN gradients; class 2: mean red."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        features = self.relu(self.conv(x)).mean(dim=(1, 2, 3))
        return torch.stack([features * 0.0, _NanGradient.apply(x), 4 * features], 1)


def test_maps_without_signal_or_with_nan_get_a_status_and_no_metric():
    bundle = make_bundle(_Degenerate(), input_size=(8, 8), cam_layer="net.conv", labels=("nothing", "nan", "red"))
    rng = np.random.default_rng(0)
    items = tuple(
        ImageItem(name=f"im{k}", array=rng.random((8, 8, 3), dtype=np.float32), label=k, mask=np.eye(8, dtype=bool))
        for k in range(3)
    )
    image_set = ImageSet(items=items, class_names=("nothing", "nan", "red"))
    settings = make_settings(bundle, image_set, methods=["saliency"], step_fraction=0.25)
    rows = {r.key: r for r in evaluate(bundle, image_set, settings).rows}
    assert rows[(0, "saliency")].status == "no signal"
    assert rows[(1, "saliency")].status == "numerical error"
    assert rows[(2, "saliency")].status == "ok" and rows[(2, "saliency")].insertion_auc is not None
    for k in (0, 1):
        row = rows[(k, "saliency")]
        assert row.insertion_auc is None and row.relevance_mass is None and row.reason
        assert row.runtime_s is not None
    summary = evaluate(bundle, image_set, settings).summary.by_method()["saliency"]
    assert summary.counts == {"ok": 1, "no signal": 1, "numerical error": 1, "failed": 0, "unavailable": 0}
    assert summary.metrics["insertion"].n == 1


def test_a_failing_method_gives_failed_rows_and_the_others_go_on(bundle, scenes, monkeypatch):
    real = evaluate_module.attribute

    def flaky(b, inputs, *, method, **kwargs):
        if method == "gradcam":
            raise RuntimeError("boom")
        return real(b, inputs, method=method, **kwargs)

    monkeypatch.setattr(evaluate_module, "attribute", flaky)
    settings = make_settings(bundle, scenes, methods=["saliency", "gradcam"], metrics=["insertion"], step_fraction=STEP)
    rows = evaluate(bundle, scenes, settings).rows
    failed = [r for r in rows if r.method == "gradcam"]
    assert len(failed) == 4 and all(r.status == "failed" and "RuntimeError: boom" in r.reason for r in failed)
    assert all(r.insertion_auc is None and r.runtime_s is None for r in failed)
    assert all(r.status == "ok" and r.insertion_auc is not None for r in rows if r.method == "saliency")


def test_methods_the_model_cannot_run_are_left_out_with_their_reason(scenes):
    bundle = shapes_bundle(unavailable={"guided_backprop": "functional ReLU"})
    settings = make_settings(bundle, scenes, methods=["saliency", "Guided Backprop"])
    assert settings.methods == ("saliency",) and settings.skipped == {"guided_backprop": "functional ReLU"}
    with pytest.raises(ParameterError, match="None of the chosen methods"):
        make_settings(bundle, scenes, methods=["guided_backprop"])


def test_the_shared_model_is_not_changed(bundle, scenes):
    before = fingerprint(bundle.model)
    evaluate(bundle, scenes, make_settings(bundle, scenes, methods=["guided_backprop", "gradcam"], step_fraction=STEP))
    assert fingerprint(bundle.model) == before == bundle.fingerprint


def test_settings_are_checked(bundle, scenes):
    for kwargs, words in (
        ({"metrics": ["insertion", "speed"]}, "Unknown metric"),
        ({"metrics": []}, "at least one metric"),
        ({"target": "true"}, "target"),
        ({"background": "white"}, "background"),
        ({"baseline": "grey"}, "baseline"),
        ({"batch_size": 0}, "batch_size"),
        ({"step_fraction": 0.0}, "step_fraction"),
        ({"params": {"smoothgrad": {"samples": 3}}}, "not among the methods"),
    ):
        with pytest.raises(ParameterError, match=words):
            make_settings(bundle, scenes, methods=["saliency"], **kwargs)
    with pytest.raises(ParameterError, match="empty"):
        make_settings(bundle, ImageSet(items=(), class_names=()), methods=["saliency"])


def test_labels_are_matched_to_the_model_by_class_name(bundle):
    images = generated_test_set(4, seed=1)
    reordered = tuple(reversed(shapes.CLASSES))
    renamed = ImageSet(
        items=tuple(ImageItem(i.name, i.array, reordered.index(shapes.CLASSES[i.label])) for i in images.items),
        class_names=reordered,
    )
    settings = make_settings(bundle, renamed, methods=["saliency"], metrics=["runtime"])
    rows = evaluate(bundle, renamed, settings).rows
    assert [r.label for r in rows] == [i.label for i in images.items]
    foreign = ImageSet(items=(ImageItem("x", images.items[0].array, 0),), class_names=("zebra",))
    with pytest.raises(ParameterError, match="zebra"):
        make_settings(bundle, foreign, methods=["saliency"])


def test_rows_are_refused_for_another_model_or_image_set(bundle, scenes):
    settings = make_settings(bundle, scenes, methods=["saliency"], metrics=["runtime"])
    with pytest.raises(ParameterError, match="another model"):
        other = make_bundle(
            TinyConvNet(seed=6, classes=8), input_size=(16, 16), cam_layer="net.features.3", labels=shapes.CLASSES
        )
        next(iter_rows(other, scenes, settings))
    with pytest.raises(ParameterError, match="another image set"):
        next(iter_rows(bundle, scene_set(2, seed=6), settings))


# ----------------------------------------------------------------------------- resuming


class Interrupted(Exception):
    pass


def _count_attributions(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = evaluate_module.attribute

    def counting(b, inputs, **kwargs):
        calls.append(int(inputs.shape[0]))
        return real(b, inputs, **kwargs)

    monkeypatch.setattr(evaluate_module, "attribute", counting)
    return calls


def _comparable(summary) -> dict:
    record = summary.record()
    record.pop("provenance")
    return record


def test_an_interrupted_run_resumes_where_it_stopped(bundle, tmp_path, monkeypatch):
    images = scene_set(3, seed=9)  # six items with masks
    settings = make_settings(
        bundle,
        images,
        methods=["saliency", "smoothgrad"],
        metrics=["insertion", "deletion", "mass"],
        step_fraction=STEP,
        batch_size=3,
        params={"smoothgrad": {"samples": 4}},
    )
    calls = _count_attributions(monkeypatch)

    def stop_after_three(done, total, message):
        if done == 3 and message.endswith("done"):
            raise Interrupted

    with pytest.raises(Interrupted):
        evaluate_in_folder(bundle, images, settings, tmp_path / "run", progress=stop_after_three)
    assert sum(calls) == 3 * 2
    written = (tmp_path / "run" / ROWS_FILE).read_text().splitlines()
    assert len(written) == 3 * 3 and {json.loads(line)["image"] for line in written} == {0, 1, 2}
    assert not (tmp_path / "run" / "summary.json").exists()

    calls.clear()
    resumed = evaluate_in_folder(bundle, images, settings, tmp_path / "run")
    assert sum(calls) == 3 * 2 and calls == [3, 3]  # only the second batch, once per method
    assert len((tmp_path / "run" / ROWS_FILE).read_text().splitlines()) == 6 * 3

    whole = evaluate_in_folder(bundle, images, settings, tmp_path / "whole")
    assert resumed.rows == whole.rows  # smoothgrad's noise included: batches are fixed
    assert resumed.summary.complete and _comparable(resumed.summary) == _comparable(whole.summary)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    on_disk.pop("provenance"), on_disk.pop("runtime_s")
    assert on_disk == json.loads(json.dumps(_comparable(whole.summary)))

    calls.clear()
    again = evaluate_in_folder(bundle, images, settings, tmp_path / "run")
    assert calls == [] and again.rows == whole.rows


def test_a_line_cut_short_is_dropped_and_computed_again(bundle, tmp_path):
    images = generated_test_set(4, seed=3)
    settings = make_settings(
        bundle, images, methods=["saliency"], metrics=["insertion"], step_fraction=STEP, batch_size=2
    )
    whole = evaluate_in_folder(bundle, images, settings, tmp_path / "a")
    path = tmp_path / "a" / ROWS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:17])  # the last row of the 2nd batch cut mid-line
    resumed = evaluate_in_folder(bundle, images, settings, tmp_path / "a")
    assert resumed.rows == whole.rows
    assert len(path.read_text().splitlines()) == 8
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_damaged_line_in_the_middle_is_refused(bundle, tmp_path):
    images = generated_test_set(2, seed=3)
    settings = make_settings(bundle, images, methods=["saliency"], metrics=["runtime"])
    evaluate_in_folder(bundle, images, settings, tmp_path)
    path = tmp_path / ROWS_FILE
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(ParameterError, match="Line 1"):
        evaluate_in_folder(bundle, images, settings, tmp_path)


def test_other_settings_are_refused_on_the_same_folder(bundle, tmp_path):
    images = generated_test_set(2, seed=3)
    settings = make_settings(bundle, images, methods=["saliency"], metrics=["runtime"])
    evaluate_in_folder(bundle, images, settings, tmp_path)
    other = make_settings(bundle, images, methods=["saliency"], metrics=["runtime"], seed=7)
    with pytest.raises(ParameterError, match="other settings.*seed"):
        RunFolder.open(tmp_path, other)
    (tmp_path / "settings.json").unlink()
    with pytest.raises(ParameterError, match="no settings.json"):
        RunFolder.open(tmp_path, settings)


def test_settings_survive_json(bundle, scenes):
    settings = make_settings(bundle, scenes, methods=["saliency", "gradcam"], data="scenes:2:5")
    again = EvalSettings.from_record(json.loads(json.dumps(settings.record())))
    assert again.differences(settings) == [] and again.record() == settings.record()


def test_should_stop_ends_with_a_partial_summary(bundle):
    images = generated_test_set(5, seed=3)
    settings = make_settings(
        bundle, images, methods=["saliency"], metrics=["insertion"], step_fraction=STEP, batch_size=2
    )
    kept: list[EvalRow] = []
    result = evaluate(bundle, images, settings, on_rows=kept.extend, should_stop=lambda: True)
    assert not result.summary.complete and result.summary.n_images_done == 2
    assert len(kept) == 2 * 2 and result.rows == tuple(kept)
    finished = evaluate(bundle, images, settings, done_rows=kept)
    assert finished.summary.complete and finished.rows[:4] == tuple(kept)


# ----------------------------------------------------------------------------- aggregation


def _row(image, method, **values):
    base = dict(name=f"im{image}", status="ok", label=1, target=1, predicted=1, correct=True)
    base.update(values)
    return EvalRow(image=image, method=method, **base)


def _hand_settings(n: int) -> EvalSettings:
    return EvalSettings(
        model_name="m",
        model_fingerprint="f",
        data="hand",
        data_digest="d",
        n_images=n,
        methods=("saliency",),
        metrics=("insertion", "deletion", "pointing", "runtime"),
    )


def test_summary_equals_numpy_and_scipy_on_hand_rows():
    ins = [0.61, 0.42, 0.55, 0.73, 0.38]
    dele = [0.2, 0.25, 0.1, 0.3, 0.22]
    hits = [True, True, False, True, True]
    rand_ins = [0.4, 0.41, 0.5, 0.45, 0.3]
    rand_del = [0.4, 0.3, 0.35, 0.33, 0.31]
    rows = []
    for i in range(5):
        rows.append(
            _row(
                i,
                "saliency",
                insertion_auc=ins[i],
                deletion_auc=dele[i],
                pointing_hit=hits[i],
                runtime_s=0.01 * (i + 1),
            )
        )
        rows.append(_row(i, RANDOM, insertion_auc=rand_ins[i], deletion_auc=rand_del[i], pointing_hit=i == 2))
    rows.append(_row(5, "saliency", status="no signal", runtime_s=0.5))
    rows.append(_row(5, RANDOM, insertion_auc=0.9, deletion_auc=0.9, pointing_hit=False))
    summary = summarize(rows, _hand_settings(6))
    sal = summary.by_method()["saliency"]
    assert sal.counts["ok"] == 5 and sal.counts["no signal"] == 1 and sal.n_rows == 6
    m = sal.metrics["insertion"]
    low, high = stats.t.interval(0.95, 4, loc=np.mean(ins), scale=stats.sem(ins))
    assert (m.mean, m.low, m.high) == (pytest.approx(np.mean(ins)), pytest.approx(low), pytest.approx(high))
    rt = sal.metrics["runtime"]
    assert rt.mean == pytest.approx(0.03) and rt.n == 5  # the no-signal row's runtime is not aggregated
    ci = stats.binomtest(4, 5).proportion_ci(method="wilson")
    p = sal.metrics["pointing"]
    assert p.kind == "wilson" and p.mean == 0.8 and (p.low, p.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    paired = stats.ttest_rel(ins, rand_ins).confidence_interval(0.95)
    d = sal.vs_random["insertion"]
    assert d.n == 5 and d.mean == pytest.approx(np.mean(np.subtract(ins, rand_ins)))
    assert (d.low, d.high) == (pytest.approx(paired.low), pytest.approx(paired.high))
    assert "runtime" not in sal.vs_random
    control = summary.by_method()[RANDOM]
    assert control.metrics["insertion"].n == 6 and control.vs_random == {}
    assert summary.complete and summary.n_images_done == 6


def test_partial_rows_give_an_incomplete_summary_and_csv_files():
    rows = [
        _row(0, "saliency", insertion_auc=0.5, deletion_auc=0.2, pointing_hit=True, runtime_s=0.1),
        _row(0, RANDOM, insertion_auc=0.3, deletion_auc=0.3, pointing_hit=False),
        _row(1, "saliency", insertion_auc=0.7, deletion_auc=0.1, pointing_hit=False, runtime_s=0.1),
    ]
    summary = summarize(rows, _hand_settings(3))
    assert not summary.complete and summary.n_images_done == 1
    sal = summary.by_method()["saliency"]
    assert sal.metrics["insertion"].n == 2 and sal.vs_random["insertion"].n == 1
    text = summary.csv_text().splitlines()
    header = text[0].split(",")
    assert header[:3] == ["method", "title", "n_rows"] and "insertion_auc_minus_random_low" in header
    first = dict(zip(header, text[1].split(",")))
    assert float(first["insertion_auc_mean"]) == pytest.approx(0.6) and first["n_ok"] == "2"
    assert rows_csv(rows).splitlines()[0].startswith("image,name,method,status")
    assert json.loads(json.dumps(summary.record()))["complete"] is False


# ----------------------------------------------------------------------------- data sources


def test_scene_set_gives_one_item_per_object():
    items = scene_set(2, seed=4).items
    scenes = shapes.generate_scenes(2, seed=4)
    assert len(items) == 4
    for k, scene in enumerate(scenes):
        for j in range(2):
            item = items[2 * k + j]
            assert item.label == scene.labels[j] and np.array_equal(item.mask, scene.masks[j])
            assert np.array_equal(item.array, scene.image)


def test_parse_data():
    generated = parse_data("generated:5:2")
    reference = generated_test_set(5, seed=2)
    assert [i.label for i in generated.items] == [i.label for i in reference.items]
    assert np.array_equal(generated.items[4].array, reference.items[4].array)
    assert len(parse_data("scenes:2")) == 4 and len(parse_data("generated:6", limit=2)) == 2
    for bad in ("generated:abc", "scenes:0", "generated:2:x"):
        with pytest.raises(ParameterError):
            parse_data(bad)
