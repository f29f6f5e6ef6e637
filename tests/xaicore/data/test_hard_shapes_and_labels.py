"""Harder generated shapes (a difficulty knob the default model gets some of wrong) and labels
matched to any model's classes by name."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from xaicore.confidence.co_sets import iter_co_rows
from xaicore.data import shapes
from xaicore.data.evalsets import parse_data
from xaicore.data.imagesets import HARD_DIFFICULTY, generated_test_set, load_image_set, match_class, relabel
from xaicore.errors import ParameterError
from xaicore.evaluation.rows import evaluate, make_settings
from xaicore.models.loading import load_model


def test_difficulty_zero_is_the_plain_generator_and_harder_images_are_reproducible():
    plain, labels = shapes.generate(24, seed=5)
    same, same_labels = shapes.generate(24, seed=5, difficulty=0.0)
    assert np.array_equal(plain, same) and np.array_equal(labels, same_labels)
    hard, hard_labels = shapes.generate(24, seed=5, difficulty=1.0)
    again, _ = shapes.generate(24, seed=5, difficulty=1.0)
    assert np.array_equal(hard, again) and np.array_equal(hard_labels, labels)  # same classes, other pixels
    assert hard.dtype == np.float32 and hard.min() >= 0.0 and hard.max() <= 1.0
    assert np.abs(hard - plain).mean() > 0.03
    for bad in (-0.1, 1.5, True, "hard"):
        with pytest.raises(ParameterError, match="difficulty"):
            shapes.generate(4, seed=0, difficulty=bad)


def test_an_evaluation_matches_set_labels_to_a_model_spelling_its_classes_otherwise():
    """A torchvision checkpoint trained on the shapes, its classes in capitals: labels are kept."""
    bundle = load_model("resnet18", weights=None, class_names=[c.upper() for c in shapes.CLASSES], input_size=32)
    image_set = generated_test_set(4, seed=1)
    settings = make_settings(
        bundle, image_set, methods=["saliency"], metrics=["insertion"], data="generated:4:1", step_fraction=0.25
    )
    rows = evaluate(bundle, image_set, settings).rows
    labels = {row.name: row.label for row in rows if row.method == "saliency"}
    assert labels == {item.name: item.label for item in image_set.items}
    assert all(row.target == row.label for row in rows if row.method == "saliency")


def _accuracy(bundle, image_set) -> float:
    x = torch.cat([bundle.to_input(item.array) for item in image_set.items])
    with torch.no_grad():
        predicted = bundle.model(x).argmax(dim=1).numpy()
    return float(np.mean(predicted == np.array(image_set.labels())))


def test_the_default_model_gets_some_hard_images_wrong_and_most_plain_ones_right():
    bundle = load_model("default")
    plain = _accuracy(bundle, parse_data("generated:256:11"))
    hard_set = parse_data("generated-hard:256:11")
    hard = _accuracy(bundle, hard_set)
    assert plain >= 0.97  # the plain set: nearly every prediction right (no gap to measure)
    assert 0.4 < hard < 0.95, hard  # clearly below 99% and far above chance (1/8)
    assert hard_set.items[0].name == "hard-shape-00000" and len(hard_set) == 256
    reference = generated_test_set(256, seed=11, difficulty=HARD_DIFFICULTY)
    assert np.array_equal(hard_set.items[7].array, reference.items[7].array)
    with pytest.raises(ParameterError, match="generated-hard"):
        parse_data("generated-hard:many")


def test_class_names_match_ignoring_case_spaces_and_underscores():
    classes = ("golden retriever", "tabby", "Egyptian cat")
    assert match_class("golden retriever", classes) == 0
    assert match_class("Golden_Retriever", classes) == 0
    assert match_class("egyptian-cat", classes) == 2
    assert match_class("TABBY", classes) == 1
    assert match_class("tiger", classes) is None


@pytest.fixture(scope="module")
def torchvision_bundle():
    """A torchvision ResNet-18 (random weights: no download) whose classes are three shape names
    in other spellings, as a user's checkpoint of a shapes model would have."""
    return load_model("resnet18", weights=None, class_names=["Heart", "STAR", "circle"], input_size=32)


def test_generated_labels_are_kept_for_a_torchvision_bundle_with_those_class_names(torchvision_bundle):
    bundle = torchvision_bundle
    image_set = generated_test_set(16, seed=2)
    matched = relabel(image_set, bundle.labels)
    assert matched.class_names == bundle.labels
    for before, after in zip(image_set.items, matched.items, strict=True):
        name = shapes.CLASSES[before.label]
        expected = {"heart": 0, "star": 1, "circle": 2}.get(name)
        assert after.label == expected
        assert after.array is before.array
    assert any("no class named" in n for n in matched.notices)
    # the CO scores use the matched labels: "true" is the model's own class index
    rows = [
        r
        for batch in iter_co_rows(bundle, image_set, methods=["saliency"], variants=["x+h"], batch_size=8)
        for r in batch.rows
    ]
    by_name = {item.name: item.label for item in matched.items}
    assert [r.true for r in rows] == [by_name[r.image] for r in rows]
    assert {r.true for r in rows} - {None} == {0, 1, 2}
    # the evaluation maps labels by name too
    labelled = relabel(image_set, ("circle", "square", "triangle", "Star", "cross", "ring", "crescent", "HEART"))
    assert [i.label for i in labelled.items] == [i.label for i in image_set.items]


def _png(value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_zip_folders_label_images_for_a_torchvision_bundle(torchvision_bundle):
    bundle = torchvision_bundle
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("heart/a.png", _png(10))
        archive.writestr("Star/b.png", _png(80))
        archive.writestr("cir cle/c.png", _png(160))
        archive.writestr("square/d.png", _png(240))
    image_set = load_image_set(buffer.getvalue(), class_names=bundle.labels, size=bundle.input_size)
    assert {i.name: i.label for i in image_set.items} == {
        "heart/a.png": 0,
        "Star/b.png": 1,
        "cir cle/c.png": 2,
        "square/d.png": None,
    }
    settings = make_settings(bundle, image_set, methods=["saliency"], metrics=["insertion"], data="zip")
    assert settings.n_images == 4


def test_the_co_scores_command_reads_the_hard_set_and_keeps_matching_labels(torchvision_bundle):
    from xaicore.cli.cmd_co_scores import read_image_set

    hard = read_image_set("generated-hard:8", load_model("default"), seed=4, limit=None)
    assert [i.name for i in hard.items][:2] == ["hard-shape-00000", "hard-shape-00001"]
    assert np.array_equal(hard.items[3].array, generated_test_set(8, seed=4, difficulty=HARD_DIFFICULTY).items[3].array)
    other = read_image_set("generated:8", torchvision_bundle, seed=4, limit=None)  # Heart, STAR, circle
    plain = generated_test_set(8, seed=4)
    names = {"heart": 0, "star": 1, "circle": 2}
    assert [i.label for i in other.items] == [names.get(shapes.CLASSES[i.label]) for i in plain.items]
    with pytest.raises(ParameterError, match="generated-hard:N"):
        read_image_set("generated-hard:0", torchvision_bundle, seed=0, limit=None)
