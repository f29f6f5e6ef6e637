"""The ``xai explain`` and ``xai methods`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers.explain_models import tiny_bundle
from xaicore.cli import cmd_explain
from xaicore.cli.main import main
from xaicore.explainers.registry import list_methods


@pytest.fixture()
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def tiny(monkeypatch):
    bundle = tiny_bundle(seed=8, unavailable={"lrp": "LRP has no rule for this model."})
    seen: list[tuple] = []

    def fake_load(name, device, **options):
        seen.append((name, device, *sorted(options.items())))
        return bundle

    monkeypatch.setattr(cmd_explain, "load_bundle", fake_load)
    return bundle, seen


def test_explain_writes_the_documented_files(tiny, image_file, tmp_path, capsys) -> None:
    bundle, seen = tiny
    out = tmp_path / "run"
    code = main(
        [
            "explain",
            str(image_file),
            "--model",
            "mine",
            "--methods",
            "saliency,Grad-CAM,smoothgrad,lrp",
            "--out",
            str(out),
            "--target",
            "2",
            "--seed",
            "4",
            "--baseline",
            "blur",
            "--param",
            "smoothgrad.samples=3",
            "--param",
            "gradcam.relu=false",
        ]
    )
    assert code == 0 and seen == [("mine", None)]
    with np.load(out / "attributions.npz") as npz:
        assert sorted(npz.files) == ["gradcam", "saliency", "smoothgrad"]
        assert npz["saliency"].shape == (3, 16, 16) and npz["saliency"].dtype == np.float32
    record = json.loads((out / "explain.json").read_text())
    assert record["target"] == 2 and record["baseline"] == "blur"
    assert record["provenance"]["seed"] == 4 and record["provenance"]["model_fingerprint"] == bundle.fingerprint
    assert len(record["predictions"]) == 4
    methods = {m["method"]: m for m in record["methods"]}
    assert list(methods) == ["saliency", "gradcam", "smoothgrad", "lrp"]
    assert methods["smoothgrad"]["params"]["samples"] == 3 and methods["gradcam"]["params"] == {"relu": False}
    assert methods["lrp"]["status"] == "unavailable" and "no rule" in methods["lrp"]["reason"]
    assert methods["saliency"]["shared_with"] == ["gradcam"]
    with Image.open(out / "grid.png") as grid:
        assert grid.mode == "RGB" and grid.width > 160
    printed = capsys.readouterr().out
    assert "Grad-CAM" in printed and "unavailable" in printed and "total:" in printed


def test_explain_accepts_a_sample_name(tiny, tmp_path) -> None:
    from xaicore.data.samples import list_samples

    name = next(s for s in list_samples() if s.startswith("shape:"))
    assert main(["explain", name, "--methods", "saliency", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "explain.json").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--methods", "sailency"], "No explanation method named"),
        (["--param", "smoothgrad.samples"], "METHOD.NAME=VALUE"),
        (["--param", "smoothgrad.steps=3"], "has no parameter steps"),
        (["--target", "9"], "out of range"),
        (["--baseline", "white"], "Unknown baseline"),
    ],
)
def test_explain_reports_bad_requests_in_one_line(tiny, image_file, tmp_path, capsys, argv, message) -> None:
    code = main(["explain", str(image_file), "--out", str(tmp_path / "x"), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_missing_image_is_a_plain_error(tiny, tmp_path, capsys) -> None:
    assert main(["explain", str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert "neither an image file nor a sample name" in capsys.readouterr().err


def test_parse_value() -> None:
    assert cmd_explain.parse_value("3") == 3
    assert cmd_explain.parse_value("0.5") == 0.5
    assert cmd_explain.parse_value("False") is False
    assert cmd_explain.parse_value("gausslegendre") == "gausslegendre"


def test_methods_lists_every_method(capsys) -> None:
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in list_methods():
        assert f"{name}  (" in text
    assert "--param integrated_gradients.steps=0" in text
    assert main(["methods", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list_methods()
    by = {e["name"]: e for e in entries}
    assert by["gradcam"]["flags"] == ["single_pass", "needs_layer"]
    assert by["smoothgrad"]["params"][0]["name"] == "samples"


def test_layer_chooses_the_cam_methods_layer_and_is_recorded(tiny, image_file, tmp_path) -> None:
    bundle, _seen = tiny
    out = tmp_path / "layer"
    args = ["explain", str(image_file), "--methods", "saliency,layercam", "--target", "1", "--out", str(out)]
    assert main([*args, "--layer", "net.features.0"]) == 0
    record = json.loads((out / "explain.json").read_text())
    assert {m["method"]: m["layer"] for m in record["methods"]} == {"saliency": None, "layercam": "net.features.0"}
    early = np.load(out / "attributions.npz")["layercam"]
    assert main([*args[:-1], str(tmp_path / "default")]) == 0
    late = np.load(tmp_path / "default" / "attributions.npz")["layercam"]
    assert json.loads((tmp_path / "default" / "explain.json").read_text())["methods"][1]["layer"] == bundle.cam_layer
    assert not np.allclose(early, late)
    assert main([*args[:-1], str(tmp_path / "bad"), "--layer", "net.head.0"]) != 0
