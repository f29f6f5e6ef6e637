"""The shipped grayscale X-ray teaching model: loads offline as a one-channel model, is accurate on
fresh images, and its explanations fall on the finding (localization metrics with the true mask)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xaicore.cli.main import main
from xaicore.data import xray as data
from xaicore.explainers.api import attribute
from xaicore.metrics.localization import localization_scores
from xaicore.models import xray
from xaicore.models.bundle import fingerprint
from xaicore.models.loading import load_model
from xaicore.models.xray_training import XrayTrainConfig, as_input, held_out_seed, predict

FRESH_SEED = 987_654  # neither the training set nor the card's test set


@pytest.fixture(scope="module")
def bundle():
    return load_model("xray", device="cpu")


def test_the_shipped_model_is_small_one_channel_and_matches_its_card(bundle):
    card = xray.read_card()
    assert xray.WEIGHTS_PATH.stat().st_size < 1_000_000
    assert bundle.model.in_channels == 1 and bundle.model.net.features.conv1.in_channels == 1
    assert bundle.labels == data.CLASSES == tuple(card["classes"])
    assert bundle.fingerprint == card["fingerprint"] == fingerprint(bundle.model)
    assert bundle.input_size == (64, 64) and bundle.source == "xray"
    assert bundle.unavailable == {}
    assert card["training"]["config"] == json.loads(json.dumps(XrayTrainConfig().__dict__))
    assert card["data"]["test_seed"] == held_out_seed(0)


def test_accuracy_on_a_fresh_test_set(bundle):
    images, labels, _ = data.generate(300, seed=FRESH_SEED)
    accuracy = float((predict(bundle.model, images) == labels).mean())
    assert accuracy >= 0.9, accuracy


def test_explanations_fall_on_the_finding(bundle):
    """Relevance mass on the true mask and the pointing game, against the chance level of the mask's area."""
    images, labels, masks = data.generate(60, seed=FRESH_SEED + 1)  # 987655
    x = as_input(images)
    found = (predict(bundle.model, images) == 1) & (labels == 1)
    x, masks = x[found], masks[found]
    assert len(x) >= 20
    target = torch.ones(len(x), dtype=torch.long)
    chance = float(np.mean([m.mean() for m in masks]))
    # measured on this set: Integrated Gradients mass 0.23, hits 0.86; DeepLift 0.26, 1.0; chance 0.015
    for method, params in (("integrated_gradients", {"steps": 16}), ("deeplift", {})):
        maps = attribute(bundle, x, method=method, target=target, params=params).values.numpy()
        scores = [localization_scores(maps[i], masks[i]) for i in range(len(x))]
        mass = float(np.mean([s.relevance_mass for s in scores]))
        hits = float(np.mean([s.pointing_hit for s in scores]))
        assert mass > 8 * chance, (method, mass, chance)
        assert hits >= 0.7, (method, hits)


def test_train_command_writes_a_loadable_model_and_card(tmp_path, capsys):
    code = main(
        ["train-xray", "--train-images", "32", "--epochs", "1", "--test-images", "8", "--threads", "1",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    card = json.loads((tmp_path / "xray_model.json").read_text())
    state = torch.load(tmp_path / "xray_model.pt", weights_only=True)
    net = xray.XrayNet()
    net.load_state_dict(state)
    assert fingerprint(xray.wrap(net, card["mean"][0], card["std"][0])) == card["fingerprint"]
    assert "bn1.weight" not in " ".join(state)  # batch norms folded away
    assert "--train-images 32" in card["training"]["command"]
    assert "Test accuracy" in (tmp_path / "XRAY_MODEL_CARD.md").read_text()
    assert "test accuracy" in capsys.readouterr().out
