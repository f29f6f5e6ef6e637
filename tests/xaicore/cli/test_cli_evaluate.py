"""``xai evaluate`` end to end on generated images, with the default architecture (seeded weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import xaicore.cli.cmd_evaluate as cmd_evaluate
import xaicore.evaluation.rows as evaluate_module
import xaicore.models.loading as loading
from xaicore.cli.main import main
from xaicore.data import shapes
from xaicore.metrics.faithfulness import RANDOM
from xaicore.metrics.intervals import t_interval
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.default import INPUT_SIZE, ShapesNet
from xaicore.models.layers import forward_order, last_conv_layer

ARGS = ["--methods", "saliency,gradcam", "--step", "0.2", "--batch", "3"]
MEASURED = ["--metrics", "insertion,deletion"]  # no runtime: two runs must give equal figures


def random_default_bundle() -> ModelBundle:
    """The default model's architecture with weights from a seeded local generator."""
    generator = torch.Generator().manual_seed(0)
    net = ShapesNet(len(shapes.CLASSES))
    with torch.no_grad():
        for param in net.parameters():
            fan_in = param[0].numel() if param.ndim > 1 else param.numel()
            param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    model = PixelSpaceModel(net).eval()
    example = torch.zeros(1, 3, *INPUT_SIZE)
    return ModelBundle(
        model=model,
        labels=shapes.CLASSES,
        input_size=INPUT_SIZE,
        cam_layer=last_conv_layer(model, example),
        layers=tuple(forward_order(model, example)),
        name="Shapes CNN (random weights)",
        fingerprint=fingerprint(model),
        source="test",
    )


@pytest.fixture(scope="module")
def bundle():
    return random_default_bundle()


@pytest.fixture(autouse=True)
def model_loader(bundle, monkeypatch):
    asked = []

    def load(name, **kwargs):
        asked.append(name)
        return bundle

    monkeypatch.setattr(loading, "load_model", load)
    return asked


@pytest.fixture()
def attributions(monkeypatch):
    calls: list[int] = []
    real = evaluate_module.attribute

    def counting(b, inputs, **kwargs):
        calls.append(int(inputs.shape[0]))
        return real(b, inputs, **kwargs)

    monkeypatch.setattr(evaluate_module, "attribute", counting)
    return calls


def run(*args: str) -> int:
    return main(["evaluate", *args])


def test_evaluate_writes_rows_summary_and_report(tmp_path, capsys, model_loader, attributions):
    out = tmp_path / "run"
    assert run("generated:6", "--model", "default", *ARGS, "--out", str(out)) == 0
    assert model_loader == ["default"]
    printed = capsys.readouterr()
    assert "6/6 images" in printed.err and "Saliency" in printed.out and "Random control" in printed.out
    assert sum(attributions) == 6 * 2

    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * 3 and {r["method"] for r in rows} == {"saliency", "gradcam", RANDOM}
    assert all(r["relevance_mass"] is None for r in rows)  # generated shapes carry no masks
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["n_images"] == 6
    assert summary["settings"]["data"] == "generated:6" and summary["settings"]["step_fraction"] == 0.2
    by_method = {m["method"]: m for m in summary["methods"]}
    for method in ("saliency", "gradcam", RANDOM):  # recompute the figures from the rows
        mine = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        reference = t_interval([r["insertion_auc"] for r in mine])
        figure = by_method[method]["metrics"]["insertion"]
        assert figure["n"] == reference.n and figure["mean"] == pytest.approx(reference.mean)
        assert figure["low"] == pytest.approx(reference.low) and figure["high"] == pytest.approx(reference.high)
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,title,n_rows") and len(csv_lines) == 4
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "report_card" and report["summary"][0].startswith("Data-set evaluation")
    assert (out / "report.md").read_text().startswith("# Report card")
    assert len((out / "rows.csv").read_text().splitlines()) == 1 + 6 * 3

    attributions.clear()
    before = (out / "rows.jsonl").read_bytes()
    assert run("generated:6", *ARGS, "--out", str(out)) == 0  # everything done: nothing recomputed
    assert attributions == [] and (out / "rows.jsonl").read_bytes() == before


def test_an_interrupted_command_resumes(tmp_path, capsys, monkeypatch, attributions):
    whole = tmp_path / "whole"
    assert run("generated:6", *ARGS, *MEASURED, "--out", str(whole)) == 0
    real_call = cmd_evaluate.ProgressBar.__call__

    def interrupt(self, done, total, message):
        real_call(self, done, total, message)
        if done == 3 and message.endswith("done"):
            raise KeyboardInterrupt

    monkeypatch.setattr(cmd_evaluate.ProgressBar, "__call__", interrupt)
    part = tmp_path / "part"
    assert run("generated:6", *ARGS, *MEASURED, "--out", str(part)) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len((part / "rows.jsonl").read_text().splitlines()) == 3 * 3
    monkeypatch.setattr(cmd_evaluate.ProgressBar, "__call__", real_call)
    attributions.clear()
    assert run("generated:6", *ARGS, *MEASURED, "--out", str(part)) == 0
    assert attributions == [3, 3]  # the second batch only, once per method

    def comparable(folder):
        record = json.loads((folder / "summary.json").read_text())
        record.pop("provenance"), record.pop("runtime_s")
        return record

    assert comparable(part) == comparable(whole)
    rows = lambda folder: sorted((folder / "rows.jsonl").read_text().splitlines())
    assert rows(part) == rows(whole)


def test_other_settings_on_the_same_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("generated:2", "--metrics", "runtime", "--methods", "saliency", "--out", str(out)) == 0
    capsys.readouterr()
    assert run("generated:2", "--metrics", "runtime", "--methods", "saliency", "--seed", "1", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed" in err and "another output folder" in err


def test_scenes_with_masks_and_results_of_other_commands_join_the_report(tmp_path, capsys):
    sanity = tmp_path / "sanity.json"
    sanity.write_text(
        json.dumps(
            {
                "methods": {
                    "saliency": {"verdict": {"status": "pass", "value": 0.2, "threshold": 0.9, "reason": ""}},
                    "guided_backprop": {"verdict": {"status": "fail", "value": 0.97, "threshold": 0.9, "reason": ""}},
                }
            }
        )
    )
    co = tmp_path / "co.csv"
    co.write_text(
        "image,method,variant,co,predicted,true,correct,status\n"
        + "".join(
            f"i{k},saliency,x+h,{v},0,0,{c},ok\n"
            for k, (v, c) in enumerate([(9, True), (10, True), (11, True), (1, False), (2, False)])
        )
    )
    out = tmp_path / "run"
    assert (
        run(
            "scenes:2",
            "--methods",
            "saliency",
            "--metrics",
            "mass,rank",
            "--out",
            str(out),
            "--sanity",
            str(sanity),
            "--co",
            str(co),
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 and all(r["relevance_mass"] is not None for r in rows if r["status"] == "ok")
    assert all(r["insertion_auc"] is None for r in rows)
    report = json.loads((out / "report.json").read_text())
    methods = {m["method"]: m for m in report["methods"]}
    assert methods["saliency"]["checks"]["sanity"]["outcome"] == "pass"
    assert methods["saliency"]["checks"]["co_gap"]["outcome"] == "pass"
    assert methods["guided_backprop"]["checks"]["sanity"]["outcome"] == "fail"
    assert methods["saliency"]["checks"]["faithfulness"]["outcome"] == "not measured"
    assert any("Guided Backprop fails" in line for line in report["summary"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["generated:zero"], "not understood"),
        (["generated:6", "--metrics", "speed"], "Unknown metric"),
        (["generated:6", "--methods", "nonsense"], "No explanation method"),
        ([str(np.__file__)], "zip"),
    ],
)
def test_mistakes_are_reported_in_one_sentence(tmp_path, capsys, args, words):
    assert run(*args, "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
