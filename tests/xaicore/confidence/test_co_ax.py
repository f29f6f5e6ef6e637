"""CO score, similarity term and AX (:mod:`xaicore.confidence.co_ax`): hand-computed values on a tiny
linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.co_models import BIAS, WEIGHT, grey, third_pixel
from tests.helpers.gax_models import linear_bundle, one_thread  # noqa: F401 (autouse)
from xaicore.confidence.co_ax import ax_co_scores, ax_heatmap, co_score, kappa, similarity_term
from xaicore.errors import ParameterError


@pytest.fixture(scope="module")
def bundle():
    return linear_bundle(WEIGHT, BIAS, size=2)


def test_kappa_rows():
    k = kappa(torch.tensor([0, 2]), num_classes=3)
    assert torch.equal(k, torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]]))
    assert torch.equal(kappa(1, num_classes=3, batch=2), torch.tensor([[-0.5, 1.0, -0.5]] * 2))


def test_co_score_hand_values():
    clean = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    perturbed = torch.tensor([[2.0, 2.0, 5.0], [1.0, -1.0, 4.0]])
    # differences [1, 0, 2] and [1, -1, 4]
    assert co_score(perturbed, clean, torch.tensor([0, 2]), num_classes=3).tolist() == [0.0, 4.0]
    assert co_score(perturbed, clean, 1, num_classes=3).tolist() == [-1.5, -3.5]


def test_co_score_refuses_bad_input():
    logits = torch.zeros(2, 3)
    with pytest.raises(ParameterError):
        co_score(logits, logits, 3, num_classes=3)
    with pytest.raises(ParameterError):
        co_score(logits, logits, 0, num_classes=4)
    with pytest.raises(ParameterError):
        co_score(torch.zeros(2, 1), torch.zeros(2, 1), 0, num_classes=1)
    with pytest.raises(ParameterError):
        co_score(logits, logits, [0, 1, 2], num_classes=3)


@settings(max_examples=40, deadline=None)
@given(
    shift=st.floats(-1e3, 1e3, allow_nan=False),
    classes=st.integers(2, 12),
    seed=st.integers(0, 2**16),
)
def test_co_score_ignores_a_common_shift_and_is_linear(shift, classes, seed):
    rng = np.random.default_rng(seed)
    clean = torch.tensor(rng.normal(size=(3, classes)))
    diff = torch.tensor(rng.normal(size=(3, classes)))
    target = torch.tensor(rng.integers(0, classes, size=3))
    base = co_score(clean + diff, clean, target, num_classes=classes)
    shifted = co_score(clean + diff + shift, clean, target, num_classes=classes)
    torch.testing.assert_close(shifted, base, atol=1e-9 * (1 + abs(shift)), rtol=1e-9)
    doubled = co_score(clean + 2 * diff, clean, target, num_classes=classes)
    torch.testing.assert_close(doubled, 2 * base)
    # the slow obvious formula: target's change minus the mean change of the other classes
    for i in range(3):
        c = int(target[i])
        others = [float(diff[i, k]) for k in range(classes) if k != c]
        assert float(base[i]) == pytest.approx(float(diff[i, c]) - sum(others) / len(others), abs=1e-12)


def test_co_score_on_linear_model(bundle):
    x = bundle.to_input(grey(0.25))
    h = torch.full_like(x, 0.5)
    with torch.no_grad():
        perturbed, clean = bundle.model(x + h), bundle.model(x)
    # W h = 0.5 * row sums = [3, 0.75, 3]; the bias cancels
    co = co_score(perturbed, clean, torch.tensor([0]), num_classes=3)
    assert float(co) == pytest.approx(3.0 - (0.75 + 3.0) / 2, abs=1e-6)
    co = co_score(perturbed, clean, 1, num_classes=3)
    assert float(co) == pytest.approx(0.75 - (3.0 + 3.0) / 2, abs=1e-6)


def test_similarity_term_hand_values():
    image = torch.tensor([0.75, 0.25]).view(1, 1, 1, 2)
    heatmap = torch.tensor([0.5, 1.0]).view(1, 1, 1, 2)
    # eps 0.25: ((0.5 - 0.75 + 0.25)^2 / 1.0 + (1.0 - 0.25 + 0.25)^2 / 0.5) / 2 = (0 + 2) / 2
    assert similarity_term(heatmap, image, eps=0.25).tolist() == [1.0]
    image2 = torch.tensor([0.5, 0.0]).view(1, 1, 1, 2).double()
    heatmap2 = torch.tensor([0.5, -0.5]).view(1, 1, 1, 2).double()
    eps = 1e-4
    expected = ((eps**2) / (0.5 + eps) + (-0.5 + eps) ** 2 / eps) / 2
    assert float(similarity_term(heatmap2, image2, eps=eps)) == pytest.approx(expected, rel=1e-12)
    both = similarity_term(torch.cat([heatmap, heatmap]), torch.cat([image, image]), eps=0.25)
    assert both.tolist() == [1.0, 1.0]
    with pytest.raises(ParameterError):
        similarity_term(heatmap, image, eps=0.0)


def test_ax_heatmap_scales_each_image_by_its_absolute_maximum():
    rows = [[1.0, -4.0, 2.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], [0.5, 0.25, 0.0]]
    attr = torch.tensor(rows).view(4, 3, 1, 1)
    h = ax_heatmap(attr).view(4, 3)
    assert h[0].tolist() == [0.25, -1.0, 0.5]
    assert h[1].tolist() == [0.0, 0.0, 0.0]
    assert torch.isnan(h[2]).all()
    assert h[3].tolist() == [1.0, 0.5, 0.0]


def test_ax_co_scores_saliency_hand_values(bundle):
    x = bundle.to_input(np.stack([grey(0.5), grey(0.5), third_pixel()]))
    # predicted: 0, 0 and 2. Saliency = |W_pred|; h = |W_0| / 3 = [1/3, 2/3, 0, 1] per channel,
    # W h = [6, 3.5, 1]; for class 2: h = [0.5, 0.5, 1, 0], W h = [-1.5, -2.25, 6].
    scores = ax_co_scores(bundle, x, method="saliency", true_labels=[None, 2, None])
    assert scores.predicted.tolist() == [0, 0, 2]
    assert scores.co_target.tolist() == [0, 2, 2]
    np.testing.assert_allclose(scores.co["x+h"], [6 - 4.5 / 2, 1 - 9.5 / 2, 6 + 3.75 / 2], atol=1e-5)
    # x * h: W (x h - x) = 0.5 W h - 0.5 W 1 = [0, 1, -2.5] for the grey images
    np.testing.assert_allclose(scores.co["x*h"][:2], [0 - (1 - 2.5) / 2, -2.5 - 1 / 2], atol=1e-5)
    # third image: x h keeps pixel 2 at 1 (h = 1 there), so x h = x and nothing changes
    assert scores.co["x*h"][2] == pytest.approx(0.0, abs=1e-6)
    assert scores.status.tolist() == ["ok", "ok", "ok"]


def test_ax_co_scores_input_x_gradient_against_direct_computation(bundle):
    rng = np.random.default_rng(3)
    images = rng.random((4, 2, 2, 3)).astype(np.float32)
    x = bundle.to_input(images)
    scores = ax_co_scores(bundle, x, method="input_x_gradient", variants=("x+h",))
    for i in range(4):
        pred = int(scores.predicted[i])
        attr = x[i] * WEIGHT[pred].view(3, 2, 2)
        h = attr / attr.abs().max()
        w_h = WEIGHT @ h.flatten()
        expected = float(w_h[pred] - (w_h.sum() - w_h[pred]) / 2)
        assert scores.co["x+h"][i] == pytest.approx(expected, abs=1e-5)
