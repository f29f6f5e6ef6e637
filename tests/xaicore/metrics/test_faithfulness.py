"""Insertion/deletion curves: hand-computed values, the obvious loop, determinism, the control."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.bench.faithfulness import step_loop_curves
from xaicore.errors import ParameterError, UnknownNameError
from xaicore.metrics.faithfulness import (
    RANDOM,
    curve_steps,
    insertion_deletion,
    make_background,
    pixel_ranks,
    trapezoid_auc,
)
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def linear_bundle(pixel_weights: np.ndarray, *, bias: float = 0.0) -> ModelBundle:
    """Two classes; logit0 = bias + sum_p w_p * (R_p + G_p + B_p), logit1 = 0.

    The probability of class 0 is sigmoid(logit0), a monotone function of one additive score.
    """
    h, w = pixel_weights.shape
    linear = nn.Linear(3 * h * w, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0] = torch.as_tensor(np.tile(pixel_weights.ravel(), 3), dtype=torch.float32)
        linear.bias[0] = bias
    model = PixelSpaceModel(nn.Sequential(nn.Flatten(), linear)).eval()
    return ModelBundle(
        model=model,
        labels=("yes", "no"),
        input_size=(h, w),
        cam_layer="",
        layers=("net.1",),
        name="linear test model",
        fingerprint=fingerprint(model),
        source="test",
    )


def test_curves_and_aucs_computed_by_hand():
    # 2x2 image of ones: pixel p contributes 3 * w_p to logit0.
    weights = np.array([[2.0, -1.0], [0.5, 0.0]])  # contributions 6, -3, 1.5, 0
    bundle = linear_bundle(weights)
    image = torch.ones(1, 3, 2, 2)
    attribution = {"gxi": torch.as_tensor(weights, dtype=torch.float32).expand(1, 3, 2, 2)}
    result = insertion_deletion(bundle, image, attribution, target=0, step_fraction=0.25, random_control=False)
    # order: p0 (6), p2 (1.5), p3 (0), p1 (-3)
    deletion_logits = [4.5, -1.5, -3.0, -3.0, 0.0]  # remove 6, then 1.5, then 0, then -3
    insertion_logits = [0.0, 6.0, 7.5, 7.5, 4.5]
    curves = result.get("gxi")
    np.testing.assert_array_equal(result.steps, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(result.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curves.deletion[0], [_sigmoid(z) for z in deletion_logits], atol=1e-6)
    np.testing.assert_allclose(curves.insertion[0], [_sigmoid(z) for z in insertion_logits], atol=1e-6)
    np.testing.assert_array_equal(curves.rank[0], [[0, 3], [1, 2]])

    def trapezoid(values):
        p = [_sigmoid(z) for z in values]
        return sum(0.25 * (p[i] + p[i + 1]) / 2 for i in range(4))

    assert curves.deletion_auc[0] == pytest.approx(trapezoid(deletion_logits), abs=1e-6)
    assert curves.insertion_auc[0] == pytest.approx(trapezoid(insertion_logits), abs=1e-6)

    half = insertion_deletion(
        bundle, image, attribution, target=1, step_fraction=0.25, fraction=0.5, random_control=False
    ).get("gxi")
    # target 1: probability 1 - sigmoid(logit0); curve stops at half the pixels
    np.testing.assert_allclose(half.deletion[0], [1 - _sigmoid(z) for z in deletion_logits[:3]], atol=1e-6)
    expected = sum(
        0.25 * (1 - _sigmoid(a) + 1 - _sigmoid(b)) / 2 for a, b in zip(deletion_logits[:2], deletion_logits[1:3])
    )
    assert half.deletion_auc[0] == pytest.approx(expected, abs=1e-6)


def test_curve_steps_include_the_end_point():
    np.testing.assert_array_equal(curve_steps(16, step_fraction=0.2, fraction=1.0), [0, 3, 6, 9, 12, 15, 16])
    np.testing.assert_array_equal(curve_steps(16, step_fraction=0.25, fraction=0.5), [0, 4, 8])
    np.testing.assert_array_equal(curve_steps(4096, step_fraction=0.01, fraction=1.0)[-3:], [4018, 4059, 4096])
    np.testing.assert_array_equal(curve_steps(10, step_fraction=0.001, fraction=0.3), [0, 1, 2, 3])
    for bad in ({"step_fraction": 0.0, "fraction": 1.0}, {"step_fraction": 0.1, "fraction": 1.5}):
        with pytest.raises(ParameterError):
            curve_steps(16, **bad)


def test_trapezoid_auc_of_straight_lines():
    x = np.array([0.0, 0.1, 0.5, 1.0])
    assert trapezoid_auc(np.array([1.0, 1.0, 1.0, 1.0]), x) == pytest.approx(1.0)
    assert trapezoid_auc(x.copy(), x) == pytest.approx(0.5)


def test_ties_are_broken_by_raster_index():
    scores = torch.tensor([[0.0, 2.0, 1.0, 2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(pixel_ranks(scores).numpy(), [[4, 0, 2, 1, 5, 3]])
    zero = torch.zeros(1, 5)
    np.testing.assert_array_equal(pixel_ranks(zero).numpy(), [[0, 1, 2, 3, 4]])


@pytest.mark.parametrize("background", ["black", "mean", "blur"])
def test_batched_equals_the_one_step_loop(background):
    bundle = tiny_bundle(seed=3, size=16)
    gen = torch.Generator().manual_seed(11)
    images = torch.rand(2, 3, 16, 16, generator=gen)
    attributions = {
        "first": torch.randn(2, 3, 16, 16, generator=gen),
        "coarse": torch.randint(0, 3, (2, 3, 16, 16), generator=gen).float(),  # many ties
    }
    targets = [0, 2]
    result = insertion_deletion(
        bundle,
        images,
        attributions,
        target=targets,
        step_fraction=0.05,
        fraction=0.6,
        background=background,
        batch_size=7,
    )
    bg = make_background(background, images).numpy()
    for name, attr in attributions.items():
        for i in range(2):
            ins, dele = step_loop_curves(
                bundle,
                images[i],
                attr[i].numpy(),
                target=targets[i],
                step_fraction=0.05,
                fraction=0.6,
                background=torch.from_numpy(bg[i]),
            )
            curves = result.get(name)
            np.testing.assert_allclose(curves.insertion[i], ins, atol=1e-6)
            np.testing.assert_allclose(curves.deletion[i], dele, atol=1e-6)
    random = result.get(RANDOM)
    assert random.control and not result.get("first").control
    for i in range(2):
        masked = result.masked_image(RANDOM, step=3, kind="deletion", image=i)
        kept = random.rank[i] >= result.steps[3]
        np.testing.assert_array_equal(masked[kept], images[i].permute(1, 2, 0).numpy()[kept])
        np.testing.assert_array_equal(masked[~kept], bg[i].transpose(1, 2, 0)[~kept])
        assert (~kept).sum() == result.steps[3]


def test_batch_size_does_not_change_values_and_shared_model_is_untouched():
    bundle = tiny_bundle(seed=1, size=12)
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(3, 3, 12, 12, generator=gen)
    attr = {"a": torch.randn(3, 3, 12, 12, generator=gen)}
    small = insertion_deletion(bundle, images, attr, target=1, step_fraction=0.1, batch_size=1)
    large = insertion_deletion(bundle, images, attr, target=1, step_fraction=0.1, batch_size=1000)
    for name in ("a", RANDOM):
        np.testing.assert_allclose(small.get(name).insertion, large.get(name).insertion, atol=1e-6)
        np.testing.assert_allclose(small.get(name).deletion, large.get(name).deletion, atol=1e-6)
    assert fingerprint(bundle.model) == bundle.fingerprint == small.provenance.model_fingerprint


def test_random_control_is_deterministic_for_a_seed():
    bundle = tiny_bundle(seed=4, size=12)
    images = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    first = insertion_deletion(bundle, images, {}, target=0, step_fraction=0.1, seed=7).get(RANDOM)
    again = insertion_deletion(bundle, images, {}, target=0, step_fraction=0.1, seed=7).get(RANDOM)
    other = insertion_deletion(bundle, images, {}, target=0, step_fraction=0.1, seed=8).get(RANDOM)
    np.testing.assert_array_equal(first.rank, again.rank)
    np.testing.assert_array_equal(first.insertion, again.insertion)
    np.testing.assert_array_equal(first.deletion_auc, again.deletion_auc)
    assert not np.array_equal(first.rank, other.rank)
    assert sorted(first.rank.ravel().tolist()) == list(range(144))


def test_random_control_lies_between_the_best_and_the_reversed_ranking():
    # On a two-class linear model, p(target) = sigmoid(b + sum of the kept pixels' contributions
    # c_p). Deleting the k largest c_p gives the smallest logit of every k-subset, so the
    # deletion curve of the contribution ranking is pointwise lowest and that of the reversed
    # ranking pointwise highest; any order, the random one too, lies in between at every k.
    # Insertion is the mirror image. Hence the AUC order holds for every seed.
    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, 0.3, (8, 8))
    bundle = linear_bundle(weights, bias=0.2)
    images = torch.from_numpy(rng.random((4, 3, 8, 8))).float()
    contribution = images * torch.from_numpy(weights).float()  # gradient x input = exact contribution
    result = insertion_deletion(
        bundle, images, {"best": contribution, "reversed": -contribution}, target=0, step_fraction=0.05, seed=3
    )
    best, worst, random = result.get("best"), result.get("reversed"), result.get(RANDOM)
    assert np.all(best.deletion <= random.deletion + 1e-6) and np.all(random.deletion <= worst.deletion + 1e-6)
    assert np.all(best.insertion >= random.insertion - 1e-6) and np.all(random.insertion >= worst.insertion - 1e-6)
    assert np.all(best.deletion_auc < random.deletion_auc) and np.all(random.deletion_auc < worst.deletion_auc)
    assert np.all(best.insertion_auc > random.insertion_auc) and np.all(random.insertion_auc > worst.insertion_auc)


def test_no_signal_maps_are_flagged_and_bad_maps_refused():
    bundle = tiny_bundle(seed=0, size=8)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    zero_and_real = torch.zeros(2, 8, 8)
    zero_and_real[1, 2, 3] = 1.0
    result = insertion_deletion(bundle, images, {"m": zero_and_real}, target=0, step_fraction=0.25)
    np.testing.assert_array_equal(result.get("m").no_signal, [True, False])
    assert not result.get(RANDOM).no_signal.any()
    bad = torch.zeros(2, 3, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ParameterError, match="NaN"):
        insertion_deletion(bundle, images, {"m": bad}, target=0)
    with pytest.raises(ParameterError, match="shape"):
        insertion_deletion(bundle, images, {"m": torch.zeros(2, 3, 4, 4)}, target=0)
    with pytest.raises(ParameterError, match="between 0 and 2"):
        insertion_deletion(bundle, images, {"m": zero_and_real}, target=5)
    with pytest.raises(ParameterError, match="random control"):
        insertion_deletion(bundle, images, {RANDOM: zero_and_real}, target=0)
    with pytest.raises(ParameterError, match="background"):
        insertion_deletion(bundle, images, {"m": zero_and_real}, target=0, background="white")
    with pytest.raises(UnknownNameError):
        result.get("other")


def test_given_background_and_record(tmp_path):
    bundle = tiny_bundle(seed=0, size=8)
    images = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    grey = torch.full((3, 1, 1), 0.5)
    result = insertion_deletion(
        bundle, images, {"m": torch.randn(1, 3, 8, 8)}, target=2, step_fraction=0.5, background=grey
    )
    np.testing.assert_array_equal(result.backgrounds, np.full((1, 8, 8, 3), 0.5, dtype=np.float32))
    np.testing.assert_array_equal(result.masked_image("m", step=0, kind="insertion"), result.backgrounds[0])
    mean = make_background("mean", images)
    np.testing.assert_allclose(mean[0, :, 3, 5], images[0].mean(dim=(1, 2)), atol=1e-6)
    assert torch.equal(make_background("black", images), torch.zeros_like(images))
    path = result.save(tmp_path)
    record = json.loads(path.read_text())
    assert record["params"]["background"] == "given" and record["params"]["step_pixels"] == 32
    assert record["methods"]["m"]["deletion_auc"] == pytest.approx(result.get("m").deletion_auc.tolist())
    assert record["steps"] == [0, 32, 64] and "trapezoid" in record["definition"]
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint


def test_summary_compares_with_the_control_and_csv_holds_every_point():
    rng = np.random.default_rng(1)
    weights = rng.normal(0.0, 0.3, (6, 6))
    bundle = linear_bundle(weights)
    images = torch.from_numpy(rng.random((2, 3, 6, 6))).float()
    contribution = images * torch.from_numpy(weights).float()
    flat = torch.zeros(2, 6, 6)
    flat[1, 0, 0] = 1.0
    result = insertion_deletion(
        bundle, images, {"best": contribution, "reversed": -contribution, "flat": flat}, target=0, step_fraction=0.1
    )
    for n in range(2):
        verdicts = {row["method"]: row["vs_random"] for row in result.summary(image=n)}
        assert verdicts["best"] == "better on both" and verdicts["reversed"] == "worse on both"
        assert verdicts[RANDOM] == "control"
        assert verdicts["flat"] == ("no signal" if n == 0 else verdicts["flat"])
        row = result.summary(image=n)[0]
        assert row["difference"] == pytest.approx(row["insertion_auc"] - row["deletion_auc"])
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert len(rows) == 4 * 2 * 2 * len(result.steps)
    picked = [
        float(r["probability"])
        for r in rows
        if r["method"] == "best" and r["image"] == "1" and r["curve"] == "deletion"
    ]
    np.testing.assert_array_equal(picked, result.get("best").deletion[1])
    without = insertion_deletion(bundle, images, {"best": contribution}, target=0, random_control=False)
    assert [r["vs_random"] for r in without.summary()] == ["no control"]


def test_cli_writes_faithfulness_json(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from xaicore.cli.main import main

    bundle = tiny_bundle(seed=2, size=16)
    monkeypatch.setattr("xaicore.models.loading.load_model", lambda *_args, **_kwargs: bundle)
    pixels = np.random.default_rng(4).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    code = main(
        [
            "faithfulness",
            str(tmp_path / "in.png"),
            "--methods",
            "saliency,gradcam",
            "--target",
            "1",
            "--step",
            "0.1",
            "--fraction",
            "0.5",
            "--background",
            "mean",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "out" / "faithfulness.json").read_text())
    assert record["params"]["fraction"] == 0.5 and record["params"]["background"] == "mean"
    assert record["target"] == [1] and record["image"] == "in.png"
    assert sorted(record["methods"]) == sorted(["saliency", "gradcam", RANDOM])
    steps = curve_steps(256, step_fraction=0.1, fraction=0.5)
    assert record["steps"] == steps.tolist()
    for entry in record["methods"].values():
        assert entry["fractions"] == pytest.approx((steps / 256).tolist())
        assert len(entry["insertion"][0]) == len(entry["deletion"][0]) == len(steps)
        assert entry["insertion_auc"][0] == pytest.approx(trapezoid_auc(np.array(entry["insertion"][0]), steps / 256))
    assert record["explanations"]["gradcam"]["status"] == "ok"
    out = capsys.readouterr().out
    assert "random (control)" in out and "insertion AUC" in out


def test_benchmark_workload_agrees_with_its_step_loop(monkeypatch):
    from xaicore.bench.common import BenchContext
    from xaicore.bench.faithfulness import WORKLOAD

    monkeypatch.setattr("xaicore.bench.faithfulness.STEP_FRACTION", 0.1)  # 11 points: a quick run
    bundle = tiny_bundle(seed=6, size=16)
    figures = WORKLOAD.run(BenchContext(bundle=bundle, device=torch.device("cpu"), batch=16, repeats=1))
    assert figures["equal"] and figures["max_abs_difference"] <= 1e-5
    assert figures["curve_points"] == len(curve_steps(256, step_fraction=0.1, fraction=1.0)) == 11
    assert figures["masked_images"] == 2 * figures["curve_points"] * len(figures["methods"].split(", "))
    assert figures["speedup_vs_loop"] > 0 and figures["cost_in_floor_units"] > 0
    every = figures["every_method"]
    assert every["equal"] and every["max_abs_difference"] <= 1e-5
    names = every["methods"].split(", ")
    assert set(figures["methods"].split(", ")) <= set(names)
    assert list(figures["step_loop_s_per_method"]) == [*names, RANDOM]
    assert every["masked_images"] == 2 * figures["curve_points"] * (len(names) + 1)
    single = sum(figures["step_loop_s_per_method"][n] for n in figures["methods"].split(", "))
    assert figures["step_loop_all_methods_s"] == pytest.approx(single)
    assert every["step_loop_s (with the random control)"] == pytest.approx(
        sum(figures["step_loop_s_per_method"].values())
    )


def test_on_the_default_model_random_lies_between_object_first_and_object_last():
    """Rankings from ground truth on generated two-object scenes.

    Target: the object the trained model recognizes (probability >= 0.5; the model was trained
    on single objects, so in many scenes it recognizes neither). "Object first" ranks that
    object's pixels first (then the rest), "object last" ranks them last. Background: the
    image's mean colour, which keeps masked images close to the generator's flat backgrounds
    (on black, the removed pixels form dark shapes of their own and the model reacts to them).
    The model recognizes the class by the object's shape, so deleting the object first removes
    the evidence within the first |mask| / P of the curve, a random order removes it gradually
    over the whole curve, and "object last" keeps it intact until the end: deletion AUCs are
    ordered first < random < last, insertion AUCs the other way round.
    """
    from xaicore.data.shapes import generate_scenes
    from xaicore.models.default import load_default_bundle

    bundle = load_default_bundle(device="cpu")
    scenes = generate_scenes(24, seed=1, size=64)
    inputs = bundle.to_input(np.stack([s.image for s in scenes]))
    probs = torch.softmax(bundle.logits(inputs), dim=1).numpy()
    best = [max((probs[i, s.labels[k]], k) for k in (0, 1)) for i, s in enumerate(scenes)]
    keep = [i for i, (p, _) in enumerate(best) if p >= 0.5][:8]
    assert len(keep) == 8
    target = [scenes[i].labels[best[i][1]] for i in keep]
    first = torch.from_numpy(np.stack([scenes[i].masks[best[i][1]] for i in keep]).astype(np.float32))
    result = insertion_deletion(
        bundle,
        inputs[keep],
        {"object first": first, "object last": -first},
        target=target,
        step_fraction=0.05,
        background="mean",
        seed=1,
    )
    good, bad, random = result.get("object first"), result.get("object last"), result.get(RANDOM)
    assert good.deletion_auc.mean() + 0.1 < random.deletion_auc.mean() < bad.deletion_auc.mean() - 0.1
    assert good.insertion_auc.mean() - 0.1 > random.insertion_auc.mean() > bad.insertion_auc.mean() + 0.1
    for better, worse in ((good, random), (random, bad)):
        assert np.mean(better.deletion_auc < worse.deletion_auc) >= 0.75
        assert np.mean(better.insertion_auc > worse.insertion_auc) >= 0.75
