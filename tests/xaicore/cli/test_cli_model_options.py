"""The model options every ``xai`` command shares: ``--random-weights`` and the checkpoint options."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from xaicore.cli import common
from xaicore.cli.main import build_parser, main
from xaicore.models import loading

MODEL_COMMANDS = {
    "explain": ["IMG", "--out", "o"],
    "sanity": ["IMG", "--out", "o"],
    "classes": ["IMG", "--out", "o"],
    "faithfulness": ["IMG", "--out", "o"],
    "gax": ["IMG", "--out", "o"],
    "co-scores": ["DATA", "--out", "o"],
    "evaluate": ["DATA", "--out", "o"],
    "bench": [],
}
CHECKPOINT_ARGS = [
    "--arch",
    "squeezenet1_1",
    "--labels",
    "cat,dog,fox",
    "--input-size",
    "64",
    "--mean",
    "0.5,0.5,0.5",
    "--std",
    "0.25, 0.25, 0.25",
    "--grayscale",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "mine.pt"
    torch.save(torchvision.models.get_model("squeezenet1_1", num_classes=3).state_dict(), path)
    return path


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_every_model_command_takes_random_weights_and_the_checkpoint_options(command, checkpoint) -> None:
    argv = [command, *MODEL_COMMANDS[command], "--model", str(checkpoint), *CHECKPOINT_ARGS]
    args = build_parser().parse_args(argv)
    assert common.model_options(args) == {
        "arch": "squeezenet1_1",
        "class_names": ("cat", "dog", "fox"),
        "input_size": 64,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "grayscale": True,
    }
    args = build_parser().parse_args([command, *MODEL_COMMANDS[command], "--model", "resnet18", "--random-weights"])
    assert common.model_options(args) == {"weights": None}


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_each_command_passes_the_options_to_the_loader(command, monkeypatch, tmp_path, capsys) -> None:
    asked = []

    def refuse(name, **options):
        asked.append((name, options))
        from xaicore.errors import ModelNotAvailable

        raise ModelNotAvailable("stop here")

    monkeypatch.setattr(loading, "load_model", refuse)
    argv = [command, *[str(tmp_path / "o") if a == "o" else a for a in MODEL_COMMANDS[command]]]
    argv = [a.replace("IMG", "shape: star").replace("DATA", "generated:4") for a in argv]
    assert main([*argv, "--model", "resnet18", "--random-weights", "--num-classes", "5"]) == 2
    assert capsys.readouterr().err == "error: stop here\n"
    assert asked[0][0] == "resnet18"
    assert asked[0][1]["weights"] is None and asked[0][1]["num_classes"] == 5


def test_explain_loads_a_checkpoint_with_the_sidebar_settings(checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "explain",
            "shape: star",
            "--model",
            str(checkpoint),
            *CHECKPOINT_ARGS,
            "--methods",
            "saliency",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "explain.json").read_text())
    assert record["provenance"]["model_name"] == "squeezenet1_1 from mine.pt"
    assert record["target_label"] in ("cat", "dog", "fox")
    assert {p["label"] for p in record["predictions"]} == {"cat", "dog", "fox"}


def test_labels_from_a_file_one_per_line(tmp_path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("benign\n\nmalignant, stage 2\n", encoding="utf-8")
    assert common.parse_labels(str(path)) == ("benign", "malignant, stage 2")
    assert common.parse_labels(" a , b,c ") == ("a", "b", "c")


def test_random_weights_of_a_torchvision_model_in_the_cli(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "explain",
            "shape: star",
            "--model",
            "squeezenet1_1",
            "--random-weights",
            "--input-size",
            "64",
            "--methods",
            "saliency",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "explain.json").read_text())
    assert "random weights" in record["provenance"]["model_name"]
    assert len(record["predictions"]) > 0


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--model", "default", "--random-weights"], "--random-weights applies to torchvision models"),
        (["--model", "CKPT", "--random-weights", "--arch", "squeezenet1_1"], "a checkpoint brings its own weights"),
        (["--model", "CKPT"], "say which architecture it is for with --arch"),
        (["--model", "resnet18", "--arch", "resnet18"], "is a model name, not a file"),
        (["--model", "CKPT", "--arch", "squeezenet1_1", "--mean", "0.5,0.5"], "--mean must be 3 numbers"),
        (["--model", "CKPT", "--arch", "squeezenet1_1", "--std", "nan,1,1"], "--std must be finite numbers"),
        (["--model", "CKPT", "--arch", "squeezenet1_1", "--std", "0,1,1"], "--std must be positive"),
        (["--model", "CKPT", "--arch", "squeezenet1_1", "--input-size", "big"], "--input-size must be one whole"),
        (["--model", "CKPT", "--arch", "squeezenet1_1", "--labels", " , "], "holds no class names"),
    ],
)
def test_option_mistakes_are_one_sentence(argv, words, checkpoint, tmp_path, capsys) -> None:
    argv = [str(checkpoint) if a == "CKPT" else a for a in argv]
    assert main(["explain", "shape: star", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["explain", "sanity", "classes", "faithfulness", "gax", "co-scores", "evaluate"])
def test_out_pointing_at_an_existing_file_is_a_plain_error(command, tmp_path, capsys) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    source = "generated:4" if command in ("co-scores", "evaluate") else "shape: star"
    assert main([command, source, "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: The output folder {str(taken)!r} is an existing file; give a folder name with --out "
        "(it is created when missing).\n"
    )
    assert main([command, source, "--out", str(taken / "inside")]) == 2
    assert "lies under" in capsys.readouterr().err
    assert taken.read_text() == "keep me"


def test_bench_out_must_be_a_file_not_a_folder(tmp_path, capsys) -> None:
    assert main(["bench", "explain", "--out", str(tmp_path)]) == 2
    assert "is a folder; give the name of the JSON file" in capsys.readouterr().err


def test_models_show_takes_random_weights_too() -> None:
    args = build_parser().parse_args(["models", "--show", "resnet18", "--random-weights"])
    assert args.random is True


def test_a_safetensors_checkpoint_loads_from_the_cli(checkpoint, tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "mine.safetensors"
    save_file(torch.load(checkpoint, weights_only=True), str(path))
    out = tmp_path / "run"
    code = main(
        [
            "explain",
            "shape: star",
            "--model",
            str(path),
            "--arch",
            "squeezenet1_1",
            "--input-size",
            "64",
            "--methods",
            "saliency",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "explain.json").read_text())
    assert record["provenance"]["model_name"] == "squeezenet1_1 from mine.safetensors"
    assert {p["label"] for p in record["predictions"]} <= {"class 0", "class 1", "class 2"}
