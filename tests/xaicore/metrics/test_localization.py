"""Localization scores against hand-made masks and slow obvious references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xaicore.errors import ParameterError
from xaicore.metrics.localization import (
    default_tolerance,
    localization_scores,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)


def _square_mask(size: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_pointing_game_tolerance_in_pixels():
    relevance = np.zeros((10, 10))
    relevance[5, 5] = 1.0
    mask = _square_mask(10, slice(2, 4), slice(2, 4))  # nearest object pixel (3, 3): distance sqrt(8)
    assert not pointing_game(relevance, mask, tolerance=0)
    assert not pointing_game(relevance, mask, tolerance=2)
    assert pointing_game(relevance, mask, tolerance=3)
    assert pointing_game(relevance, _square_mask(10, slice(5, 6), slice(5, 6)), tolerance=0)


def test_pointing_game_needs_every_maximum_on_the_object():
    relevance = np.zeros((10, 10))
    relevance[2, 2] = relevance[8, 8] = 3.0
    mask = _square_mask(10, slice(1, 4), slice(1, 4))
    assert not pointing_game(relevance, mask, tolerance=1)
    relevance[8, 8] = 2.9
    assert pointing_game(relevance, mask, tolerance=1)
    # a constant map points everywhere: a miss unless the dilated object covers the image
    assert not pointing_game(np.zeros((10, 10)), mask, tolerance=1)
    assert pointing_game(np.zeros((10, 10)), mask, tolerance=20)


def test_default_tolerance_scales_zhang_15_px_at_224():
    assert default_tolerance((224, 224)) == 15
    assert default_tolerance((64, 64)) == 4
    assert default_tolerance((3, 32, 48)) == 2


def test_relevance_mass_by_hand():
    relevance = np.array([[2.0, 3.0, -5.0], [1.0, 4.0, -1.0]])
    mask = np.array([[True, True, True], [False, False, False]])
    assert relevance_mass_accuracy(relevance, mask) == pytest.approx(5.0 / 10.0)
    assert relevance_mass_accuracy(-np.abs(relevance), mask) == 0.0
    # attributions are summed over channels first
    attribution = np.stack([relevance, relevance, -relevance])
    assert relevance_mass_accuracy(attribution, mask) == pytest.approx(0.5)
    assert relevance_mass_accuracy(torch.from_numpy(relevance), torch.from_numpy(mask)) == pytest.approx(0.5)


def test_relevance_rank_by_hand():
    relevance = np.array([[9.0, 8.0, 1.0], [7.0, 0.0, 2.0]])
    mask = np.array([[True, False, True], [True, False, False]])  # top 3: 9 (in), 8 (out), 7 (in)
    assert relevance_rank_accuracy(relevance, mask) == pytest.approx(2.0 / 3.0)
    ties = np.array([[5.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    two = np.array([[True, True, False], [False, False, False]])
    # 5 is in; one place left shared by three tied pixels, one of them inside: 1 + 1/3 of 2 places
    assert relevance_rank_accuracy(ties, two) == pytest.approx((1 + 1 / 3) / 2)
    assert relevance_rank_accuracy(np.zeros((2, 3)), two) == pytest.approx(2 / 6)  # chance level


def _rank_accuracy_by_enumeration(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Average over every tie-break order of the plain top-K share (exact expectation)."""
    flat, inside = relevance.ravel(), mask.ravel()
    k = int(inside.sum())
    scores = []
    for tie_break in itertools.permutations(range(flat.size)):
        order = sorted(range(flat.size), key=lambda p: (-flat[p], tie_break[p]))
        scores.append(inside[order[:k]].mean())
    return float(np.mean(scores))


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.float64, (2, 3), elements=st.integers(-2, 2).map(float)),
    arrays(bool, (2, 3)).filter(lambda m: m.any()),
)
def test_relevance_rank_equals_the_expected_score_over_tie_breaks(relevance, mask):
    assert relevance_rank_accuracy(relevance, mask) == pytest.approx(_rank_accuracy_by_enumeration(relevance, mask))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (7, 6), elements=st.integers(0, 4).map(float)),
    arrays(bool, (7, 6)).filter(lambda m: m.any()),
    st.integers(0, 4),
)
def test_pointing_game_equals_a_distance_loop(relevance, mask, tolerance):
    object_pixels = np.argwhere(mask)
    maxima = np.argwhere(relevance == relevance.max())
    expected = all(min(math.dist(p, q) for q in object_pixels) <= tolerance for p in maxima)
    assert pointing_game(relevance, mask, tolerance=tolerance) == expected
    positive = np.clip(relevance, 0, None)
    mass = positive[mask].sum() / positive.sum() if positive.sum() else 0.0
    assert relevance_mass_accuracy(relevance, mask) == pytest.approx(mass)


def test_localization_scores_bundle_the_three():
    relevance = np.zeros((64, 64))
    relevance[10:20, 10:20] = 1.0
    relevance[15, 15] = 2.0
    mask = _square_mask(64, slice(10, 20), slice(10, 20))
    scores = localization_scores(relevance, mask)
    assert scores.pointing_hit and scores.tolerance == 4
    assert scores.relevance_mass == pytest.approx(1.0) and scores.relevance_rank == pytest.approx(1.0)
    # rows 15-19 of the square stay on the object: 49 ones and the peak 2, of 101 in all
    shifted = localization_scores(relevance, _square_mask(64, slice(15, 25), slice(10, 20)))
    assert shifted.relevance_mass == pytest.approx(51 / 101) and shifted.relevance_rank == pytest.approx(0.5)
    assert shifted.record()["pointing_hit"] is True


def test_bad_inputs_are_refused():
    relevance = np.ones((4, 4))
    with pytest.raises(ParameterError, match="empty"):
        relevance_mass_accuracy(relevance, np.zeros((4, 4), dtype=bool))
    with pytest.raises(ParameterError, match="resize"):
        pointing_game(relevance, np.ones((5, 5), dtype=bool))
    with pytest.raises(ParameterError, match="boolean"):
        relevance_rank_accuracy(relevance, np.full((4, 4), 0.5))
    bad = relevance.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        localization_scores(bad, np.ones((4, 4), dtype=bool))
    with pytest.raises(ParameterError, match="tolerance"):
        pointing_game(relevance, np.ones((4, 4), dtype=bool), tolerance=-1)


def test_gradcam_puts_more_relevance_on_the_asked_object_of_generated_scenes():
    """Grad-CAM is class-discriminative: asked for the class of an object the trained default
    model recognizes in a two-object scene (probability >= 0.5), its positive relevance falls on
    that object several times more than on the other object. (Absolute shares stay small: the
    CAM layer is 8x8 and objects cover 5-10 % of the pixels, so the upsampled map spills over.)
    """
    from xaicore.data.shapes import generate_scenes
    from xaicore.explainers.api import attribute
    from xaicore.models.default import load_default_bundle

    bundle = load_default_bundle(device="cpu")
    scenes = generate_scenes(24, seed=1, size=64)
    inputs = bundle.to_input(np.stack([scene.image for scene in scenes]))
    probs = torch.softmax(bundle.logits(inputs), dim=1).numpy()
    asked = [(i, k) for i, scene in enumerate(scenes) for k in (0, 1) if probs[i, scene.labels[k]] >= 0.5]
    assert len(asked) >= 8
    index = torch.tensor([i for i, _ in asked])
    targets = torch.tensor([scenes[i].labels[k] for i, k in asked])
    maps = attribute(bundle, inputs[index], method="gradcam", target=targets).values.detach().cpu().numpy()
    own = np.array([relevance_mass_accuracy(m, scenes[i].masks[k]) for m, (i, k) in zip(maps, asked)])
    other = np.array([relevance_mass_accuracy(m, scenes[i].masks[1 - k]) for m, (i, k) in zip(maps, asked)])
    assert own.mean() > 2 * other.mean(), (own.round(3), other.round(3))
    assert (own > other).sum() > (other > own).sum(), (own.round(3), other.round(3))
