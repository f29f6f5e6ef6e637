"""``xai gax`` and ``xai co-scores``: the documented files with the values the core computes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.gax_models import conv_bundle, one_thread  # noqa: F401 (autouse)
from xaicore.cli.main import main
from xaicore.confidence.co_sets import co_scores
from xaicore.confidence.gax import run_gax
from xaicore.data import shapes
from xaicore.data.images import load_image
from xaicore.models import loading

ASKED: list[str] = []


@pytest.fixture
def bundle(monkeypatch):
    """A tiny model with the default model's classes, returned for every model name."""
    tiny = dataclasses.replace(
        conv_bundle(size=16, num_classes=len(shapes.CLASSES), seed=3, dtype=torch.float32), labels=tuple(shapes.CLASSES)
    )
    ASKED.clear()

    def load(name, **kwargs):
        ASKED.append(name)
        return tiny

    monkeypatch.setattr(loading, "load_model", load)
    return tiny


def png(path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def test_gax_writes_json_and_history(bundle, tmp_path, capsys):
    image = tmp_path / "in.png"
    png(image, 0)
    out = tmp_path / "out"
    code = main(
        [
            "gax",
            str(image),
            "--model",
            "tiny",
            "--target-class",
            "2",
            "--target-co",
            "1e6",
            "--max-steps",
            "5",
            "--lr",
            "0.05",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and ASKED == ["tiny"]
    printed = capsys.readouterr().out
    assert "did not reach CO 1e+06 within 5 steps" in printed and "gax.json" in printed
    record = json.loads((out / "gax.json").read_text())
    (one,) = record["images"]
    assert one["steps"] == 5 and one["reached"] is False and one["target"] == 2
    assert record["params"]["lr"] == 0.05 and record["params"]["l_s"] == 100.0
    assert len(one["final_logits"]) == len(shapes.CLASSES)
    expected = run_gax(bundle, load_image(image).array, target=2, target_co=1e6, max_steps=5, lr=0.05)[0]
    assert one["co_curve"] == pytest.approx(expected.co_curve.tolist(), rel=1e-6)
    with np.load(out / "gax_history.npz") as data:
        assert data["frames"].shape == (6, 3, 16, 16) and data["frames"].dtype == np.float16
        assert data["steps"].tolist() == list(range(6))
        np.testing.assert_array_equal(data["frames"], expected.history.frames)


def test_gax_stops_at_the_target(bundle, tmp_path, capsys):
    image = tmp_path / "in.png"
    png(image, 1)
    assert main(["gax", str(image), "--model", "tiny", "--target-co=-1e9", "--out", str(tmp_path / "o")]) == 0
    assert "reached CO -1e+09 at step 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-steps", "0"], "at least 1"),
        (["--target-class", "nope"], "not a class"),
    ],
)
def test_gax_mistakes_are_one_sentence(bundle, tmp_path, capsys, argv, words):
    image = tmp_path / "in.png"
    png(image, 2)
    assert main(["gax", str(image), "--model", "tiny", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_co_scores_on_generated_images(bundle, tmp_path, capsys):
    out = tmp_path / "co"
    code = main(
        [
            "co-scores",
            "generated:5",
            "--model",
            "tiny",
            "--methods",
            "saliency,gradcam",
            "--variants",
            "x+h",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with (out / "co_scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * 2
    assert {r["method"] for r in rows} == {"saliency", "gradcam"}
    summary = json.loads((out / "co_scores.json").read_text())
    assert summary["n_rows"] == 10 and summary["complete"] is True
    from xaicore.data.imagesets import generated_test_set

    expected = co_scores(bundle, generated_test_set(5, seed=0), methods=["saliency", "gradcam"], variants=("x+h",))
    assert [float(r["co"]) for r in rows] == pytest.approx([r.co for r in expected.rows], rel=1e-5, abs=1e-6)
    assert [r["correct"] for r in rows] == [str(r.correct) for r in expected.rows]
    assert summary["gaps"] == json.loads(json.dumps(expected.record()["gaps"]))
    assert "mean gap" in capsys.readouterr().out


def test_co_scores_on_a_labelled_folder(bundle, tmp_path):
    data = tmp_path / "data"
    for i, name in enumerate(shapes.CLASSES[:2]):
        (data / name).mkdir(parents=True)
        png(data / name / f"{i}.png", i)
    (data / "unknown").mkdir()
    png(data / "unknown" / "x.png", 9)
    out = tmp_path / "co"
    assert main(["co-scores", str(data), "--model", "tiny", "--methods", "saliency", "--out", str(out)]) == 0
    with (out / "co_scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    truth = {r["image"]: r["true"] for r in rows}
    assert len(rows) == 3 * 2
    assert sorted(truth.values()) == ["", "0", "1"]


def test_co_scores_refuses_bad_data(bundle, tmp_path, capsys, monkeypatch):
    assert main(["co-scores", "generated:x", "--model", "tiny", "--out", str(tmp_path)]) == 2
    assert "generated:N" in capsys.readouterr().err
    other = dataclasses.replace(bundle, labels=tuple(f"c{i}" for i in range(len(shapes.CLASSES))))
    monkeypatch.setattr(loading, "load_model", lambda name, **kwargs: other)
    assert main(["co-scores", "generated:3", "--model", "tiny", "--out", str(tmp_path)]) == 2
    assert "default model" in capsys.readouterr().err
