"""Sanity checks: equal to a plain reference, invariants, verdict rule, outputs, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tests.helpers.sanity_fixtures import tiny_bundle, tiny_image
from xaicore.bench.sanity import METHODS, normalize_reference, reference_sanity, spearman_reference
from xaicore.checks.sanity import METRICS, run_sanity
from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.models.bundle import fingerprint
from xaicore.models.randomization import layer_seed, reinitialize

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def test_values_equal_the_plain_reference(bundle, image, both):
    # deep copy per step, one explainer call per method, scikit-image SSIM and SciPy Spearman per pair
    reference = reference_sanity(
        bundle,
        bundle.to_input(image),
        methods=METHODS,
        modes=("cascading", "independent"),
        seeds=(0, 1),
        targets=torch.as_tensor(both.targets),
    )
    for metric in METRICS:
        assert both.values[metric].shape == (2, len(METHODS), 2, 3, 1)
        np.testing.assert_allclose(both.values[metric], reference[metric], rtol=0, atol=1e-6)


def test_shared_model_untouched_and_no_hooks_left(bundle, both):
    assert fingerprint(bundle.model) == bundle.fingerprint
    assert _hooks(bundle.model) == 0
    assert both.provenance.model_fingerprint == bundle.fingerprint


def test_layers_and_steps(both, bundle):
    assert both.layers == bundle.layers == ("net.conv1", "net.conv2", "net.head")
    assert both.steps == ("net.head", "net.conv2", "net.conv1")


def test_output_layer_step_is_the_same_in_both_modes(both):
    # Step 0 randomizes only the output layer in both schedules, with the same weights.
    for metric in METRICS:
        np.testing.assert_array_equal(both.values[metric][0, :, :, 0], both.values[metric][1, :, :, 0])
    # later steps differ: cascading keeps the output layer random
    assert not np.allclose(both.values["ssim_abs"][0, :, :, 2], both.values["ssim_abs"][1, :, :, 2])


def test_kept_maps_reproduce_every_value(both):
    # The saved maps are the compared ones: recomputing with scikit-image gives the stored values.
    for kind, data_range in (("abs", 1.0), ("signed", 2.0)):
        maps, trained = both.maps[kind], both.trained_maps[kind]
        assert maps.shape == (2, len(METHODS), 2, 3, 1, 16, 16)
        for index in np.ndindex(maps.shape[:5]):
            i, j, s, t, n = index
            a, b = maps[index].astype(np.float64), trained[j, n].astype(np.float64)
            assert both.values[f"ssim_{kind}"][index] == pytest.approx(
                structural_similarity(a, b, data_range=data_range), abs=1e-6
            )
            assert both.values[f"spearman_{kind}"][index] == pytest.approx(spearman_reference(a, b), abs=1e-9)


def test_trained_maps_follow_the_stated_normalizations(bundle, image, both):
    from xaicore.explainers.api import attribute

    assert both.params["normalizations"] == {"abs": "abs", "signed": "signed"}
    assert both.params["data_ranges"] == {"abs": 1.0, "signed": 2.0}
    x = bundle.to_input(image)
    raw = attribute(bundle, x, method="saliency", target=int(both.targets[0])).values[0].numpy()
    j = both.methods.index("saliency")
    np.testing.assert_allclose(both.trained_maps["abs"][j, 0], normalize_reference(raw, "abs"), atol=1e-6)
    np.testing.assert_allclose(both.trained_maps["signed"][j, 0], normalize_reference(raw, "signed"), atol=1e-6)
    assert both.trained_maps["abs"].max() == pytest.approx(1.0)
    assert both.trained_maps["signed"].min() >= -1.0


def test_same_seeds_same_values_other_seeds_other_values(bundle, image, both):
    again = run_sanity(bundle, image, methods=("saliency", "gradcam"), mode="cascading", seeds=(0, 1))
    other = run_sanity(bundle, image, methods=("saliency", "gradcam"), mode="cascading", seeds=(2, 3))
    picks = [both.methods.index("saliency"), both.methods.index("gradcam")]
    for metric in METRICS:
        np.testing.assert_array_equal(again.values[metric][0], both.values[metric][0][picks])
    assert not np.allclose(other.values["ssim_abs"], again.values["ssim_abs"])


def _randomized_bundle(bundle, layers, seed):
    private = bundle.private_copy()
    for name in layers:
        reinitialize(private.module(name), generator=torch.Generator().manual_seed(layer_seed(seed, name)))
    return private


def test_randomized_prediction_policy_explains_the_randomized_models_class(bundle, image):
    from xaicore.explainers.api import attribute

    result = run_sanity(
        bundle, image, methods=("saliency",), mode="cascading", seeds=(3,), target_policy="randomized_prediction"
    )
    x = bundle.to_input(image)
    steps = result.steps
    for t in range(len(steps)):
        randomized = _randomized_bundle(bundle, steps[: t + 1], 3)
        with torch.no_grad():
            predicted = int(randomized.model(x).argmax())
        assert result.step_targets[0, 0, t, 0] == predicted
        raw = attribute(randomized, x, method="saliency", target=predicted).values[0].numpy()
        trained = attribute(bundle, x, method="saliency", target=int(result.targets[0])).values[0].numpy()
        expected = structural_similarity(
            normalize_reference(raw, "abs").astype(np.float64),
            normalize_reference(trained, "abs").astype(np.float64),
            data_range=1.0,
        )
        assert result.values["ssim_abs"][0, 0, 0, t, 0] == pytest.approx(expected, abs=1e-6)
    assert result.params["target_policy"] == "randomized_prediction"


def test_original_policy_keeps_the_target_and_accepts_a_label(bundle, image):
    result = run_sanity(bundle, image, methods=("saliency",), seeds=(0,), target="class2")
    assert result.targets.tolist() == [2]
    assert (result.step_targets == 2).all()


def test_a_batch_of_images_gives_per_image_values(bundle, image):
    other = tiny_image(seed=5).numpy()
    batch = run_sanity(bundle, np.stack([image, other]), methods=("gradcam",), seeds=(0,), target=1)
    alone = run_sanity(bundle, other, methods=("gradcam",), seeds=(0,), target=1)
    assert batch.values["ssim_abs"].shape == (1, 1, 1, 3, 2)
    np.testing.assert_allclose(
        batch.values["ssim_abs"][..., 1], alone.values["ssim_abs"][..., 0], atol=1e-5
    )  # float32 batching
    assert "per_image" in batch.record()["methods"]["gradcam"]["modes"]["cascading"]["ssim_abs"]


def test_a_model_with_no_signal_gives_an_undetermined_verdict():
    dead = tiny_bundle(seed=0)
    with torch.no_grad():
        dead.model.net.conv2.weight.zero_()
        dead.model.net.conv2.bias.zero_()
    dead = type(dead)(**{**dead.__dict__, "fingerprint": fingerprint(dead.model)})
    result = run_sanity(dead, tiny_image().numpy(), methods=("saliency", "gradcam"), seeds=(0,), mode="independent")
    assert (result.trained_status == "no signal").all()
    assert [v.status for v in result.verdicts] == ["undetermined", "undetermined"]
    assert "no signal" in result.verdicts[0].reason
    # the maps stay all zero instead of being blown up into a picture
    assert not result.trained_maps["abs"].any()
    # randomizing conv2 wakes the gradient up again: that step is not flagged
    step = result.steps.index("net.conv2")
    assert not result.no_signal[0, 0, 0, step, 0]
    assert result.no_signal[0, 0, 0, result.steps.index("net.head"), 0]


def test_progress_names_mode_seed_and_layer(bundle, image):
    calls = []
    run_sanity(bundle, image, methods=("saliency",), mode="both", seeds=(4,), progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == list(range(1, 8))
    assert all(c[1] == 7 for c in calls)
    assert calls[0][2] == "trained model"
    assert calls[1][2] == "cascading, seed 4: randomized net.head"
    assert calls[-1][2] == "independent, seed 4: randomized net.conv1"


def test_keep_maps_options(bundle, image):
    none = run_sanity(bundle, image, methods=("saliency",), seeds=(0, 1), keep_maps="none")
    first = run_sanity(bundle, image, methods=("saliency",), seeds=(0, 1))
    assert none.maps["abs"].shape[2] == 0 and none.map_seeds == ()
    assert first.maps["signed"].shape == (1, 1, 1, 3, 1, 16, 16) and first.map_seeds == (0,)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mode": "sideways"}, ParameterError, "mode"),
        ({"seeds": (1, 1)}, ParameterError, "seed"),
        ({"seeds": ()}, ParameterError, "seed"),
        ({"threshold": 1.5}, ParameterError, "threshold"),
        ({"normalization": "signed"}, ParameterError, "ABSOLUTE"),
        ({"normalization": "log"}, ParameterError, "normalization"),
        ({"target_policy": "whatever"}, ParameterError, "target_policy"),
        ({"keep_maps": "some"}, ParameterError, "keep_maps"),
        ({"params": {"gradcam": {"relu": False}}}, ParameterError, "not among"),
        ({"target": 9}, ParameterError, "out of range"),
    ],
)
def test_bad_parameters_are_refused(bundle, image, kwargs, error, match):
    with pytest.raises(error, match=match):
        run_sanity(bundle, image, **{"methods": ("saliency",), **kwargs})


def test_unavailable_methods_are_refused_before_any_work(image):
    bundle = tiny_bundle()
    blocked = type(bundle)(**{**bundle.__dict__, "unavailable": {"guided_backprop": "functional ReLU"}})
    calls = []
    with pytest.raises(MethodUnavailable, match="functional ReLU"):
        run_sanity(blocked, image, methods=("saliency", "guided_backprop"), progress=lambda *a: calls.append(a))
    assert calls == []


def test_schedule_order_does_not_change_values(bundle, image, both):
    reverse = run_sanity(bundle, image, methods=METHODS, mode=("independent", "cascading"), seeds=(0, 1))
    for metric in METRICS:
        np.testing.assert_array_equal(reverse.values[metric][::-1], both.values[metric])


def test_cli_writes_sanity_json_and_maps(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from xaicore.cli.main import main
    from xaicore.models import loading

    tiny = tiny_bundle(seed=0)
    monkeypatch.setattr(loading, "load_model", lambda name, **_: tiny)
    picture = tmp_path / "in.png"
    Image.fromarray((tiny_image(seed=1).numpy() * 255).astype(np.uint8)).save(picture)
    out = tmp_path / "out"
    code = main(
        [
            "sanity",
            str(picture),
            "--methods",
            "saliency,gradcam",
            "--mode",
            "both",
            "--seeds",
            "2",
            "--save-maps",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads((out / "sanity.json").read_text())
    assert list(record["methods"]) == ["saliency", "gradcam"]
    entry = record["methods"]["gradcam"]
    assert entry["layers_forward_order"] == list(tiny.layers)
    assert np.array(entry["modes"]["independent"]["ssim_abs"]["per_seed"]).shape == (2, 3)
    assert entry["verdict"]["status"] in ("pass", "fail")
    with np.load(out / "sanity_maps.npz") as npz:
        assert npz["randomized_abs"].shape == (2, 2, 2, 3, 1, 16, 16)
        # anyone can recompute a stored value from the saved maps
        a = npz["randomized_abs"][1, 1, 1, 2, 0].astype(np.float64)
        b = npz["trained_abs"][1, 0].astype(np.float64)
        assert structural_similarity(a, b, data_range=1.0) == pytest.approx(
            entry["modes"]["independent"]["ssim_abs"]["per_seed"][1][2], abs=1e-6
        )
    printed = capsys.readouterr().out
    assert "Grad-CAM" in printed and "sanity.json" in printed
    assert main(["sanity", str(picture), "--seeds", "0", "--out", str(out)]) == 2
    assert main(["sanity", str(tmp_path / "missing.png"), "--out", str(out)]) == 2


def test_cli_classes_on_a_scene_sample(tmp_path, monkeypatch):
    from xaicore.cli.main import main
    from xaicore.data.samples import list_samples
    from xaicore.models import loading

    monkeypatch.setattr(loading, "load_model", lambda name, **_: tiny_bundle(seed=0, num_classes=8))
    scene = next(n for n in list_samples() if n.startswith("scene:"))
    assert main(["classes", scene, "--methods", "saliency,guided_backprop", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "classes.json").read_text())
    assert len(record["classes"]) == 2 and record["mask_labels"] is not None
    assert set(record["methods"]["guided_backprop"]["relevance_share"]) == set(record["class_labels"])
    assert main(["classes", scene, "--classes", "class1,class1", "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------------- the literature, on the default model


@pytest.fixture(scope="module")
def default_check():
    """Cascading check of the trained default model on six generated shapes (two seeds)."""
    from xaicore.data.shapes import generate
    from xaicore.models.loading import load_model

    images, _ = generate(6, seed=123)
    bundle = load_model("default", device="cpu")
    methods = ("saliency", "input_x_gradient", "guided_backprop", "gradcam")
    return run_sanity(bundle, images, methods=methods, mode="cascading", seeds=(0, 1), keep_maps="none")


@pytest.mark.slow
def test_guided_backprop_fails_the_cascading_check_on_the_default_model(default_check):
    # Adebayo et al. 2018 (and the thesis "Sanity Checks for Explanations of Deep Neural Networks
    # Predictions", with Captum): Guided Backprop barely changes when the output layer is randomized.
    verdict = default_check.verdict("guided_backprop")
    assert verdict.status == "fail" and verdict.value >= 0.9
    # ...and it still resembles the trained map after two more layers are destroyed
    assert default_check.mean("ssim_abs", mode="cascading", method="guided_backprop")[2] >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "gradcam"])
def test_gradient_methods_and_gradcam_pass_on_the_default_model(default_check, method):
    verdict = default_check.verdict(method)
    assert verdict.status == "pass" and verdict.value < 0.9
    # randomizing everything down to the first layer leaves little of the trained map
    assert default_check.mean("ssim_abs", mode="cascading", method=method)[-1] < 0.6
