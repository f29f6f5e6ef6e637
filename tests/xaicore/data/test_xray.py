"""The procedural chest-X-ray-like generator: deterministic, anatomical bounds, findings with masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xaicore.data import xray
from xaicore.errors import ParameterError


def test_sets_are_deterministic_and_leave_the_global_rng_alone():
    state = np.random.get_state()[1].copy()
    a = xray.generate(6, seed=3)
    b = xray.generate(6, seed=3)
    assert np.array_equal(np.random.get_state()[1], state)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    images, labels, masks = a
    assert images.shape == (6, 64, 64) and images.dtype == np.float32
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert not masks[labels == 0].any() and all(m.any() for m in masks[labels == 1])
    later, _, _ = xray.generate(2, seed=3, start=4)
    np.testing.assert_array_equal(later, images[4:])
    assert not np.array_equal(xray.generate(1, seed=4)[0], images[:1])


def test_the_thorax_is_bright_on_dark_air_with_darker_lungs():
    case = xray.make_case(11, finding=False)
    img = case.image
    corners = np.concatenate([img[:4, :4].ravel(), img[:4, -4:].ravel(), img[-4:, :4].ravel(), img[-4:, -4:].ravel()])
    lung_left, lung_right = img[20:34, 12:22].mean(), img[20:34, 42:52].mean()
    spine = img[20:40, 30:34].mean()
    assert corners.mean() < 0.2 < min(lung_left, lung_right) + 0.1
    assert spine > max(lung_left, lung_right) + 0.1  # the spine is denser than the lungs


def test_findings_are_denser_than_their_surroundings_and_vary():
    cases = [xray.make_case(xray.case_seed(5, i), finding=True) for i in range(40)]
    stands_out = []
    for case in cases:
        m = case.mask
        ring = ndimage.binary_dilation(m, iterations=3) & ~ndimage.binary_dilation(m, iterations=1)
        stands_out.append(case.image[m].mean() > case.image[ring].mean())
    assert np.mean(stands_out) >= 0.8  # denser than the lung around it (a rib or the heart may be denser)
    kinds = {c.finding["kind"] for c in cases}
    assert kinds == {"nodule", "opacity"}
    areas = np.array([c.mask.sum() for c in cases])
    contrasts = np.array([c.finding["contrast"] for c in cases])
    assert areas.min() >= 5 and areas.max() > 4 * areas.min()
    assert contrasts.max() - contrasts.min() > 0.1
    rows = np.array([c.finding["center"][0] for c in cases])
    cols = np.array([c.finding["center"][1] for c in cases])
    assert rows.std() > 4 and cols.std() > 8  # placed all over both lungs
    assert (cols < 32).any() and (cols > 32).any()


def test_forced_kinds_sizes_and_bad_parameters():
    assert xray.make_case(1, finding=True, kind="opacity").finding["kind"] == "opacity"
    big = xray.make_case(1, size=128, finding=True)
    assert big.image.shape == (128, 128) and big.mask.shape == (128, 128)
    assert big.rgb().shape == (128, 128, 3)
    with pytest.raises(ParameterError, match="finding kind"):
        xray.make_case(1, finding=True, kind="fracture")
    with pytest.raises(ParameterError, match="between 32 and 1024"):
        xray.make_case(1, size=8)
    with pytest.raises(ParameterError, match="zero or more"):
        xray.generate(-1, seed=0)
