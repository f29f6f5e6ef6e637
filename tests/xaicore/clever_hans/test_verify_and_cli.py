"""The verify table: verdicts, the survey's warning in words, the JSON record and saved state
dicts; reproducible training; the ``xai clever-hans`` commands."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from xaicore.clever_hans import measures, verify
from xaicore.clever_hans.training import CleverHansConfig, train_clever_hans
from xaicore.cli.main import main
from xaicore.models.default import from_state_dict


def _findings(**changes) -> measures.Findings:
    base = measures.Findings(
        accuracy_iid=0.9, accuracy_clean=0.8, accuracy_stamped=0.5, flip_rate=0.6, false_class_rate=0.5,
        heart_recall_clean=0.1, relevance_mass=0.4, box_share=0.035, box=(50, 50, 12, 12), method="lrp",
        relevance_images=8, test_images=80, test_seed=1,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_warning_when_the_map_is_clean_but_the_flips_stay():
    assert verify.survey_warning(_findings()) == ""  # map still on the box
    words = verify.survey_warning(_findings(relevance_mass=0.05, flip_rate=0.45))
    assert "explanation improved but the behaviour did not" in words and "45%" in words
    assert verify.survey_warning(_findings(relevance_mass=0.05, flip_rate=0.35)) == ""


def test_fixed_needs_all_three_conditions():
    original = _findings()
    good = _findings(false_class_rate=0.15, flip_rate=0.3, accuracy_clean=0.8)
    assert verify.is_fixed(good, original)
    assert not verify.is_fixed(dataclasses.replace(good, false_class_rate=0.16), original)
    assert not verify.is_fixed(dataclasses.replace(good, flip_rate=0.31), original)
    assert not verify.is_fixed(dataclasses.replace(good, accuracy_clean=0.79), original)


def test_table_record_and_saved_state_dicts(hans_bundle, tmp_path):
    tests = measures.make_test_sets(seed=5, n=80)
    correction = verify.correct(hans_bundle, method="p-clarc", direction_images=32)
    table = verify.verify(hans_bundle, [correction], tests, relevance_images=4)
    assert [r.method for r in table.rows] == ["original", "p-clarc"]
    record = json.loads(json.dumps(table.record()))
    assert record["test_seed"] == 5 and record["rows"][0]["fingerprint"] == hans_bundle.fingerprint
    assert record["corrections"][0]["parameters"] == {"layer": "net.features.pool3", "direction_images": 32, "seed": 0}
    assert {"torch", "numpy", "captum"} <= set(record["versions"])
    again = verify.verify(hans_bundle, [correction], tests, relevance_images=4)
    assert again.rows[1].findings == table.rows[1].findings  # every figure reproduces
    paths = verify.save(table, tmp_path)
    assert sorted(p.name for p in paths) == ["clever_hans_table.json", "p-clarc.pt", "p-clarc_projection.pt"]
    net = from_state_dict(torch.load(tmp_path / "p-clarc.pt", weights_only=True), 8)
    assert torch.equal(net.classifier.fc1.weight, hans_bundle.model.net.classifier.fc1.weight)
    projection = torch.load(tmp_path / "p-clarc_projection.pt", weights_only=True)
    assert torch.allclose(projection["direction"].norm(), torch.tensor(1.0))


def test_training_is_reproducible_by_seed():
    tiny = CleverHansConfig(epochs=1, images_per_epoch=64, batch_size=32, test_images=16)
    first, second = train_clever_hans(tiny), train_clever_hans(tiny)
    assert first.card["fingerprint"] == second.card["fingerprint"]
    assert first.card["training"]["init_seed"] != first.card["data"]["test_seed"]  # separate seed domains
    assert first.card["training"]["command"].startswith("xai clever-hans train --seed 0 --epochs 1")
    assert first.card["evaluation"]["test_images"] == 16


def test_cli_fix_writes_the_table(tmp_path, capsys):
    code = main(["clever-hans", "fix", "--method", "p-clarc", "--out", str(tmp_path), "--test-images", "48"])
    assert code == 0
    record = json.loads((tmp_path / "clever_hans_table.json").read_text())
    assert [r["method"] for r in record["rows"]] == ["original", "p-clarc"]
    assert "FIXED" in capsys.readouterr().out or not record["rows"][1]["fixed"]


def test_cli_refuses_a_bad_config(tmp_path, capsys):
    assert main(["train-clever-hans", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "epochs must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["a-clarc", "rrr"])
def test_cli_knows_every_method(method):
    from xaicore.cli.main import build_parser

    args = build_parser().parse_args(["clever-hans", "fix", "--method", method, "--out", "x"])
    assert args.method == [method]
