"""Class-discriminativeness on a tiny model: values against plain computations, defaults, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tests.helpers.sanity_fixtures import tiny_bundle, tiny_image
from xaicore.bench.sanity import normalize_reference, spearman_reference
from xaicore.checks.discriminative import compare_classes
from xaicore.data.shapes import generate_scene
from xaicore.errors import ParameterError
from xaicore.explainers.api import attribute
from xaicore.models.bundle import fingerprint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

METHODS = ("saliency", "guided_backprop", "gradcam")


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(seed=2)


@pytest.fixture(scope="module")
def scene():
    return generate_scene(seed=5, size=32, classes=(0, 2))


def _raw(bundle, image, method, cls):
    return attribute(bundle, bundle.to_input(image), method=method, target=cls).values[0].numpy()


def test_pairwise_similarities_equal_plain_computations(bundle):
    image = tiny_image(seed=3).numpy()
    result = compare_classes(bundle, image, methods=METHODS, classes=(0, 1, 2))
    assert result.ssim.shape == result.spearman.shape == (3, 3, 3)
    for k, method in enumerate(METHODS):
        maps = [normalize_reference(_raw(bundle, image, method, c), "abs").astype(np.float64) for c in range(3)]
        for i in range(3):
            assert result.ssim[k, i, i] == 1.0
            for j in range(i + 1, 3):
                expected = structural_similarity(maps[i], maps[j], data_range=1.0)
                assert result.ssim[k, i, j] == pytest.approx(expected, abs=1e-6)
                assert result.ssim[k, j, i] == result.ssim[k, i, j]
                assert result.spearman[k, i, j] == pytest.approx(spearman_reference(maps[i], maps[j]), abs=1e-9)
        np.testing.assert_allclose(result.maps["abs"][k, 1], maps[1], atol=1e-6)
        off_diagonal = result.ssim[k][np.triu_indices(3, k=1)]
        assert result.pair_ssim(method) == pytest.approx(off_diagonal.mean())
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_default_classes_are_the_two_most_probable(bundle):
    image = tiny_image(seed=4).numpy()
    result = compare_classes(bundle, image, methods=("saliency",))
    probs = torch.softmax(bundle.logits(bundle.to_input(image)), dim=1)[0]
    assert result.classes == tuple(torch.argsort(probs, descending=True)[:2].tolist())
    np.testing.assert_allclose(result.probabilities, probs[list(result.classes)].double().numpy(), rtol=1e-6)
    assert result.masks is None and result.on_object is None
    assert result.class_labels == tuple(bundle.labels[c] for c in result.classes)
    assert result.params["cam_layer"] is None  # no CAM method, no layer
    early = compare_classes(bundle.with_cam_layer("net.conv1"), image, methods=("gradcam",))
    assert early.params["cam_layer"] == "net.conv1"


def test_a_scene_gives_its_classes_and_relevance_shares(bundle, scene):
    result = compare_classes(bundle, scene, methods=METHODS)
    assert result.classes == (0, 2)
    assert result.masks.shape == (2, 16, 16)
    # 32 -> 16 pixels, nearest neighbour at pixel centres: every second pixel starting at 1
    np.testing.assert_array_equal(result.masks, scene.masks[:, 1::2, 1::2])
    positive_cases = 0
    for k, method in enumerate(METHODS):
        for c, cls in enumerate(result.classes):
            positive = np.clip(_raw(bundle, scene.image, method, cls).sum(axis=0), 0, None)
            own = result.masks[list(scene.labels).index(cls)]
            other = result.masks[1 - list(scene.labels).index(cls)]
            total = positive.sum()
            if total == 0:  # no positive relevance at all: documented as share 0
                assert result.on_object[k, c] == result.on_others[k, c] == 0.0
                continue
            positive_cases += 1
            assert result.on_object[k, c] == pytest.approx(positive[own].sum() / total, abs=1e-5)  # float32 batch noise
            assert result.on_others[k, c] == pytest.approx(positive[other].sum() / total, abs=1e-5)
            assert result.on_object[k, c] + result.on_others[k, c] <= 1 + 1e-9
    assert positive_cases >= 4


def test_explicit_masks_and_a_class_without_mask(bundle, scene):
    result = compare_classes(
        bundle, scene.image, methods=("saliency",), classes=(0, 1), masks=scene.masks, mask_labels=scene.labels
    )
    assert result.classes == (0, 1)
    assert np.isfinite(result.on_object[0, 0])
    assert np.isnan(result.on_object[0, 1]) and np.isnan(result.on_others[0, 1])
    record = result.record()
    assert record["methods"]["saliency"]["relevance_share"]["class1"]["on_object"] is None


def test_a_single_uploaded_mask_has_no_other_object(bundle, scene):
    own = scene.masks[list(scene.labels).index(2)]
    result = compare_classes(bundle, scene.image, methods=("saliency",), classes=(2, 0), masks=own, mask_labels=(2,))
    assert np.isfinite(result.on_object[0, 0]) and np.isnan(result.on_others[0, 0])
    assert np.isnan(result.on_object[0, 1])


def test_identical_classes_maps_for_a_class_independent_method():
    # With every class's head row equal, the class does not matter: maps coincide, SSIM is 1.
    same = tiny_bundle(seed=1)
    with torch.no_grad():
        same.model.net.head.weight.copy_(same.model.net.head.weight[0].expand_as(same.model.net.head.weight))
    result = compare_classes(same, tiny_image(seed=2).numpy(), methods=("saliency", "gradcam"), classes=(0, 2))
    np.testing.assert_allclose(result.ssim[:, 0, 1], 1.0, atol=1e-9)


def test_save_writes_the_documented_json(tmp_path, bundle, scene):
    result = compare_classes(bundle, scene, methods=("saliency", "gradcam"))
    path = result.save(tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "classes.json"
    assert record["class_labels"] == ["class0", "class2"]
    pair = record["methods"]["gradcam"]["pairs"][0]
    assert pair["classes"] == ["class0", "class2"]
    assert pair["ssim"] == pytest.approx(result.ssim[1, 0, 1])
    assert set(record["methods"]["gradcam"]["relevance_share"]) == {"class0", "class2"}
    assert record["params"]["normalizations"] == {"abs": "abs", "signed": "signed"}
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": (1,)}, "two different classes"),
        ({"classes": (1, 1)}, "two different classes"),
        ({"classes": (0, 7)}, "out of range"),
        ({"methods": ()}, "at least one"),
        ({"masks": np.zeros((1, 5, 5), bool), "mask_labels": (0,)}, "size"),
        ({"masks": np.zeros((2, 16, 16), bool), "mask_labels": (0,)}, "one class per mask"),
        ({"mask_labels": (0, 1)}, "without masks"),
        ({"normalization": "signed"}, "absolute"),
    ],
)
def test_bad_arguments_are_refused(bundle, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        compare_classes(bundle, tiny_image().numpy(), **{"methods": ("saliency",), **kwargs})


# ---------------------------------------------------------------------- the literature, on the default model
# Measured over 200 generated two-object scenes (seed 0), batched: about 7 s on one CPU thread for
# the six single-pass methods. Margins below are several 95% t intervals wide (docs/benchmarks.md,
# "Class-discriminativeness over 200 scenes").

SIX = ("saliency", "input_x_gradient", "deconvolution", "guided_backprop", "gradcam", "guided_gradcam")
SCENES, SCENE_SEED = 200, 0


@pytest.fixture(scope="module")
def default_bundle():
    from xaicore.models.loading import load_model

    return load_model("default", device="cpu")


@pytest.fixture(scope="module")
def over_scenes(default_bundle):
    """Each method's class-map SSIM on the 200 generated scenes of seed 0."""
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
    from xaicore.data.shapes import generate_scenes

    return discriminativeness_over_scenes(default_bundle, generate_scenes(SCENES, seed=SCENE_SEED), methods=SIX)


@pytest.mark.slow
def test_gradcam_is_the_most_class_discriminative_on_scenes(over_scenes):
    # Selvaraju et al. 2017: Grad-CAM localizes the class asked for. Measured: 0.237 [0.199, 0.274],
    # the next method (Deconvolution) 0.338 higher on the same scenes [0.302, 0.375].
    assert over_scenes.ordered()[0] == "gradcam"
    assert over_scenes.interval("gradcam").high < 0.35
    for other in SIX:
        if other != "gradcam":
            assert over_scenes.difference("gradcam", other).high < -0.15, other
    assert over_scenes.lowest_share("gradcam") >= 0.7  # measured 0.83


@pytest.mark.slow
def test_guided_backprop_draws_the_same_map_for_both_classes(over_scenes):
    # Measured 0.955 [0.948, 0.962]; 0.262 [0.242, 0.282] above the next (Guided Grad-CAM).
    assert over_scenes.interval("guided_backprop").low >= 0.9
    assert over_scenes.ordered()[-1] == "guided_backprop"
    for other in SIX:
        if other != "guided_backprop":
            assert over_scenes.difference("guided_backprop", other).low > 0.15, other


@pytest.mark.slow
def test_deconvolution_is_far_less_class_discriminative_than_gradcam(over_scenes):
    assert over_scenes.difference("deconvolution", "gradcam").low > 0.2  # measured 0.338 [0.302, 0.375]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_deconvolution_keeps_the_class_through_its_trained_head(over_scenes, seed):
    # Accepted disagreement with the literature (docs/benchmarks.md, "Deconvolution's
    # class-discriminativeness"): on the default model Deconvolution keeps class information
    # (0.575 [0.557, 0.592]; near 1 on VGG-16). The measured mechanism: its backward pass ignores
    # the forward ReLU masks, so what reaches the convolutions through the fully connected layers
    # depends only on the class, and the trained 1024-wide head keeps it. Re-initialized (as the
    # cascading sanity check does, fc3 to fc1), the same convolutions give 0.906 and 0.892.
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
    from xaicore.data.shapes import generate_scenes
    from xaicore.models.loading import load_model
    from xaicore.models.randomization import LayerRandomizer

    assert over_scenes.interval("deconvolution").high < 0.7
    private, randomizer = LayerRandomizer.from_bundle(load_model("default", device="cpu"))
    for layer in private.layers:
        if ".classifier." in layer:
            randomizer.randomize(layer, seed=seed)
    scenes = generate_scenes(SCENES, seed=SCENE_SEED)
    random_head = discriminativeness_over_scenes(private, scenes, methods=("deconvolution",)).interval("deconvolution")
    assert random_head.low >= 0.85
    assert random_head.low >= over_scenes.interval("deconvolution").high + 0.25


@pytest.mark.slow
def test_the_shipped_scene_samples_show_the_typical_ordering(default_bundle):
    # Each shipped scene is chosen by the rule of xaicore.data.samples.SCENE_SEEDS: re-run here, it
    # gives the same seeds, and each sample shows Grad-CAM lowest and Guided Backprop highest.
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes, typical_scene_seed
    from xaicore.data import samples

    pairs = samples._scene_pairs()
    chosen = [
        typical_scene_seed(
            default_bundle,
            pair,
            start=samples.SCENE_SEED + samples.SCENE_SEED_STEP * k,
            methods=SIX,
            lowest_at_most=samples.SCENE_GRADCAM_AT_MOST,
        )
        for k, pair in enumerate(pairs)
    ]
    assert tuple(chosen) == samples.SCENE_SEEDS
    shipped = [samples.load_sample(n) for n in samples.list_samples() if n.startswith("scene: ")]
    assert [s.mask_labels for s in shipped] == pairs
    result = discriminativeness_over_scenes(default_bundle, [_as_scene(s) for s in shipped], methods=SIX)
    assert all(np.argmin(result.ssim, axis=0) == SIX.index("gradcam"))
    assert all(np.argmax(result.ssim, axis=0) == SIX.index("guided_backprop"))
    assert all(result.values("gradcam") <= samples.SCENE_GRADCAM_AT_MOST)


def _as_scene(sample):
    from xaicore.data.shapes import Scene

    return Scene(image=sample.image, labels=sample.mask_labels, masks=sample.masks)
