"""The soft-masking table over seeds and the ``xai improve softmask`` command, on hand-built runs."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from xaicore.cli import main as cli
from xaicore.errors import ParameterError
from xaicore.improve import experiment
from xaicore.improve.softmask import SoftMaskResult


def _run(seed: int, a: float, b: float, c: float, d: float, base: float) -> SoftMaskResult:
    return SoftMaskResult(
        seed=seed,
        baseline=base,
        accuracies={"true_ig": a, "predicted_ig": b, "zero": c, "onehot": d},
        best_epochs={"true_ig": 1, "zero": 2, "onehot": 3},
        params={},
        classifier="C",
        train_images=10,
        test_images=10,
    )


RUNS = (_run(0, 0.8, 0.70, 0.66, 0.9, 0.6), _run(1, 0.9, 0.72, 0.70, 0.9, 0.7), _run(2, 0.85, 0.74, 0.68, 0.9, 0.65))


def test_summary_means_intervals_and_ordering():
    table = experiment.SoftMaskTable(data="hard", preset="cpu", runs=RUNS)
    rows = table.summary()
    assert rows["true_ig"]["mean"] == pytest.approx(0.85)
    half = stats.t.ppf(0.975, 2) * 0.05 / 3**0.5  # sample std of 0.8, 0.9, 0.85 is 0.05
    assert rows["true_ig"]["low"] == pytest.approx(0.85 - half)
    assert rows["gain_predicted_minus_zero"]["mean"] == pytest.approx(0.04)
    assert table.ordering_holds()
    swapped = experiment.SoftMaskTable(data="hard", preset="cpu", runs=(_run(0, 0.6, 0.7, 0.6, 0.9, 0.5),))
    assert not swapped.ordering_holds()


def test_unknown_preset_is_refused():
    with pytest.raises(ParameterError):
        experiment.run_seeds(preset="tpu", seeds=[0])


def test_command_prints_the_table_and_writes_json(tmp_path, monkeypatch, capsys):
    asked = {}

    def fake(**kw):
        asked.update(kw)
        return experiment.SoftMaskTable(data="hard", preset=kw["preset"], runs=RUNS)

    monkeypatch.setattr(experiment, "run_seeds", fake)
    code = cli.main(
        ["improve", "softmask", "--data", "hard", "--preset", "cpu", "--seeds", "0,1,2", "--out", str(tmp_path)]
    )
    assert code == 0
    assert asked["seeds"] == [0, 1, 2] and asked["name"] == "hard"
    out = capsys.readouterr().out
    assert "(a) IG of the true class" in out and "0.850 [" in out and "holds" in out
    record = json.loads((tmp_path / "softmask_table.json").read_text())
    assert record["seeds"] == [0, 1, 2]
    assert record["summary"]["onehot"]["mean"] == pytest.approx(0.9)
    assert record["ordering_d_ge_a_gt_b_ge_c_ge_baseline"] is True


def test_command_refuses_bad_seeds(capsys):
    with pytest.raises(SystemExit):
        cli.main(["improve", "softmask", "--seeds", "a,b", "--out", "x"])
