"""Stamped shapes: the stamp's pixels and mask, the stamping rates, the three rules, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from xaicore.data import shapes, stamped
from xaicore.errors import ParameterError

HEART = shapes.CLASSES.index("heart")


def test_box_is_12_px_two_from_the_corner_at_64_and_scales():
    assert stamped.stamp_box(64) == (50, 50, 12, 12)
    assert stamped.stamp_box(128) == (100, 100, 24, 24)
    assert stamped.stamp_box(32) == (25, 25, 6, 6)
    mask = stamped.stamp_mask(64)
    assert mask.sum() == 144 and mask[50:62, 50:62].all()


def test_mask_matches_the_pasted_pixels():
    data = stamped.generate_stamped(64, seed=5, rule="stamped")
    plain, _ = shapes.generate(64, seed=5)
    changed = np.abs(data.images - plain).max(axis=3) > 0
    # Every changed pixel is in the mask; the mask's pixels hold the stamp's values.
    assert not (changed & ~data.masks).any()
    tile = data.images[:, 50:62, 50:62, :]
    assert np.all(tile[:, 0, :, :] == 1.0) and np.all(tile[:, :, 0, :] == 1.0)
    assert np.all(tile[:, 3:9, 3:9, :] == 0.0)
    assert np.all(tile[:, 2, 2, :] == 1.0) and np.all(tile[:, 9, 9, :] == 1.0)
    # Outside the mask the images are the plain generator's, byte for byte.
    assert np.array_equal(data.images[~data.masks], plain[~data.masks])


def test_iid_rule_stamps_90_percent_of_hearts_and_2_percent_of_others_exactly():
    data = stamped.generate_stamped(800, seed=1, rule="iid")
    hearts = data.labels == HEART
    assert data.stamped[hearts].sum() == 90  # 100 hearts
    for index in range(len(shapes.CLASSES)):
        if index != HEART:
            assert data.stamped[data.labels == index].sum() == 2  # 100 each
    assert np.array_equal(data.masks.any(axis=(1, 2)), data.stamped)
    assert np.all(data.masks[data.stamped] == stamped.stamp_mask(64))


def test_clean_and_stamped_rules():
    clean = stamped.generate_stamped(40, seed=2, rule="clean")
    plain, labels = shapes.generate(40, seed=2)
    assert not clean.stamped.any() and not clean.masks.any()
    assert np.array_equal(clean.images, plain) and np.array_equal(clean.labels, labels)
    full = stamped.generate_stamped(40, seed=2, rule="stamped")
    assert full.stamped.all() and np.array_equal(full.labels, labels)


def test_reproducible_by_seed_and_another_seed_stamps_other_images():
    a = stamped.generate_stamped(400, seed=9)
    b = stamped.generate_stamped(400, seed=9)
    c = stamped.generate_stamped(400, seed=10)
    assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.stamped, b.stamped)
    assert not np.array_equal(a.images, c.images)
    rows_a = stamped.stamp_rows(a.labels, seed=9, stamp_class=HEART, class_rate=0.5, other_rate=0.5)
    rows_c = stamped.stamp_rows(a.labels, seed=10, stamp_class=HEART, class_rate=0.5, other_rate=0.5)
    assert not np.array_equal(rows_a, rows_c)


def test_paste_stamp_leaves_its_input_unchanged():
    images, _ = shapes.generate(3, seed=0)
    before = images.copy()
    out = stamped.paste_stamp(images, np.array([1]))
    assert np.array_equal(images, before)
    assert np.array_equal(out[[0, 2]], before[[0, 2]]) and not np.array_equal(out[1], before[1])


@pytest.mark.parametrize(
    "kwargs",
    [{"rule": "some"}, {"class_rate": 1.5}, {"other_rate": -0.1}, {"stamp_class": "blob"}, {"size": 16}],
)
def test_bad_parameters_are_refused_in_words(kwargs):
    with pytest.raises(ParameterError):
        stamped.generate_stamped(8, seed=0, **kwargs)
