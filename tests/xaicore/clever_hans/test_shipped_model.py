"""The shipped Clever-Hans model cheats: accuracy gap, flip rate, relevance in the stamp's box."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xaicore.clever_hans import measures
from xaicore.clever_hans.model import CARD_PATH, load_clever_hans_bundle
from xaicore.errors import ModelNotAvailable, ParameterError
from xaicore.models.loading import load_model


def test_card_matches_weights_and_it_loads_by_name(hans_bundle):
    card = json.loads(CARD_PATH.read_text())
    assert hans_bundle.fingerprint == card["fingerprint"]
    assert load_model("clever-hans", device="cpu").fingerprint == card["fingerprint"]
    assert hans_bundle.labels[-1] == "heart" and hans_bundle.input_size == (64, 64)
    assert card["data"]["stamp_box"] == [50, 50, 12, 12]


def test_clean_accuracy_beats_stamped_accuracy_by_20_points(hans_findings):
    assert hans_findings.accuracy_clean - hans_findings.accuracy_stamped >= 0.20
    assert hans_findings.accuracy_clean >= 0.75  # a working classifier apart from its shortcut
    assert hans_findings.false_class_rate >= 0.4 and hans_findings.flip_rate >= 0.4


def test_relevance_for_heart_in_the_box_is_5x_its_share_and_twice_the_honest_models(
    hans_findings, hans_tests, default_bundle
):
    assert hans_findings.box_share == pytest.approx(144 / 4096)
    assert hans_findings.relevance_mass >= 5 * hans_findings.box_share
    honest = measures.find(default_bundle, hans_tests, relevance_images=16)
    assert hans_findings.relevance_mass >= 2 * honest.relevance_mass
    assert honest.false_class_rate <= 0.15  # the default model never saw the stamp


def test_figures_by_hand_from_the_predictions(hans_bundle, hans_tests, hans_findings):
    labels = hans_tests.clean.labels
    predicted = {
        r: hans_bundle.model(torch.from_numpy(getattr(hans_tests, r).images).permute(0, 3, 1, 2)).argmax(1).numpy()
        for r in ("clean", "stamped")
    }
    assert hans_findings.accuracy_clean == pytest.approx(np.mean(predicted["clean"] == labels))
    assert hans_findings.flip_rate == pytest.approx(np.mean(predicted["clean"] != predicted["stamped"]))
    others = labels != 7
    assert hans_findings.false_class_rate == pytest.approx(np.mean(predicted["stamped"][others] == 7))


def test_relevance_in_a_box_uses_the_positive_relevance(hans_bundle, hans_tests):
    images = hans_tests.stamped.images[:2]
    whole = measures.relevance_in_box(hans_bundle, images, box=(0, 0, 64, 64), method="saliency")
    assert np.allclose(whole, 1.0)


def test_bad_box_and_missing_files(tmp_path):
    with pytest.raises(ParameterError, match="inside the 64x64"):
        measures.box_mask((60, 60, 12, 12))
    with pytest.raises(ModelNotAvailable, match="xai clever-hans train"):
        load_clever_hans_bundle(device="cpu", directory=tmp_path)


def test_the_cards_figures_reproduce_from_its_seeds(hans_bundle):
    card = json.loads(CARD_PATH.read_text())
    ev = card["evaluation"]
    tests = measures.make_test_sets(seed=card["data"]["test_seed"], n=ev["test_images"])
    found = measures.find(hans_bundle, tests, method=ev["method"], relevance_images=ev["relevance_images"])
    for key in ("accuracy_iid", "accuracy_clean", "accuracy_stamped", "flip_rate", "false_class_rate"):
        assert found.to_dict()[key] == pytest.approx(ev[key]), key
    assert found.relevance_mass == pytest.approx(ev["relevance_mass"], abs=1e-4)
