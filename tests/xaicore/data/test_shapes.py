"""The procedural shape generator: determinism, ranges, classes, geometry and scene masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from xaicore.data import shapes
from xaicore.errors import ParameterError


def test_same_seed_same_bytes_and_different_seed_different_images():
    a_images, a_labels = shapes.generate(40, seed=7)
    b_images, b_labels = shapes.generate(40, seed=7)
    c_images, _ = shapes.generate(40, seed=8)
    assert a_images.tobytes() == b_images.tobytes()
    assert np.array_equal(a_labels, b_labels)
    # Every image of another seed differs (not just one of them).
    assert np.all(np.abs(a_images - c_images).reshape(40, -1).max(axis=1) > 0.1)


def test_scenes_are_deterministic_by_seed():
    first = shapes.generate_scene_arrays(12, seed=3)
    second = shapes.generate_scene_arrays(12, seed=3)
    other = shapes.generate_scene_arrays(12, seed=4)
    for x, y in zip(first, second):
        assert x.tobytes() == y.tobytes()
    assert not np.array_equal(first[0], other[0])


def test_dtype_shape_range_and_balanced_classes():
    images, labels = shapes.generate(200, seed=0, size=48)
    assert images.dtype == np.float32 and images.shape == (200, 48, 48, 3)
    assert labels.dtype == np.int64 and labels.shape == (200,)
    assert images.min() >= 0.0 and images.max() <= 1.0
    counts = np.bincount(labels, minlength=len(shapes.CLASSES))
    assert len(shapes.CLASSES) >= 6 and len(set(shapes.CLASSES)) == len(shapes.CLASSES)
    assert counts.min() == 200 // len(shapes.CLASSES) and counts.max() <= counts.min() + 1


def test_images_vary_in_colour_and_background():
    images, _ = shapes.generate(64, seed=1)
    corner_colours = images[:, 0, 0, :]
    assert np.unique(np.round(corner_colours, 2), axis=0).shape[0] > 50
    inside_spread = images.reshape(64, -1, 3).std(axis=1).mean(axis=1)
    assert inside_spread.min() > 0.02  # every image shows an object, none is a flat colour


def _lens_area(r1: float, r2: float, d: float) -> float:
    """Area of the intersection of two discs of radii r1, r2 whose centres are d apart."""
    a = r1 * r1 * math.acos((d * d + r1 * r1 - r2 * r2) / (2 * d * r1))
    b = r2 * r2 * math.acos((d * d + r2 * r2 - r1 * r1) / (2 * d * r2))
    c = 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))
    return a + b - c


# Closed-form areas of the shapes in the unit frame (radius 1), from elementary geometry.
EXPECTED_AREAS = {
    "circle": math.pi,
    "square": 1.5**2,
    "triangle": math.sqrt(3) / 4 * (2 * math.sqrt(3) * 0.55) ** 2,  # equilateral, inradius 0.55
    "star": 5 * 1.0 * 0.45 * math.sin(math.pi / 5),  # n * R * r * sin(pi / n)
    "cross": 2 * (1.9 * 0.56) - 0.56**2,
    "ring": math.pi * (1 - 0.55**2),
    "crescent": math.pi - _lens_area(1.0, 0.8, 0.5),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_AREAS))
def test_shape_area_matches_geometry(name):
    step = 0.004
    coords = np.arange(-1.2, 1.2, step, dtype=np.float32) + step / 2
    u, v = np.meshgrid(coords, coords)
    area = shapes._SHAPES[name](u, v).sum() * step * step
    assert area == pytest.approx(EXPECTED_AREAS[name], rel=0.01)


@pytest.mark.parametrize("name", shapes.CLASSES)
def test_every_shape_fits_its_reach_and_is_substantial(name):
    step = 0.01
    coords = np.arange(-1.5, 1.5, step, dtype=np.float32) + step / 2
    u, v = np.meshgrid(coords, coords)
    inside = shapes._SHAPES[name](u, v)
    assert np.sqrt(u[inside] ** 2 + v[inside] ** 2).max() <= shapes._REACH
    assert inside.sum() * step * step > 1.0  # at least a third of the unit disc


def _scene_batch(n=60, seed=11, size=64):
    return shapes.generate_scene_arrays(n, seed=seed, size=size)


def test_scenes_have_two_distinct_classes_and_disjoint_separated_masks():
    images, labels, masks = _scene_batch()
    assert images.shape == (60, 64, 64, 3) and masks.shape == (60, 2, 64, 64) and masks.dtype == bool
    assert np.all(labels[:, 0] != labels[:, 1])
    assert np.all(masks.sum(axis=(2, 3)) > 20)
    for first, second in masks:
        assert not np.any(ndimage.binary_dilation(first) & second)  # not even touching


def test_masks_match_the_drawn_objects():
    """Across every mask edge the colour jumps: the mask is where the object was drawn."""
    images, _, masks = _scene_batch()
    for image, pair in zip(images, masks):
        for mask in pair:
            outside_ring = ndimage.binary_dilation(mask) & ~mask
            inside_ring = mask & ~ndimage.binary_erosion(mask)
            inside = image[inside_ring].mean(axis=0)
            outside = image[outside_ring].mean(axis=0)
            assert np.linalg.norm(inside - outside) > 0.25
            # Pixels of the object differ from the background around it, one by one too.
            background = np.median(image[~pair.any(axis=0)], axis=0)
            far = np.linalg.norm(image[mask] - background, axis=1)
            assert np.mean(far > 0.15) > 0.9


def test_single_images_contrast_with_their_background():
    images, _ = shapes.generate(40, seed=5)
    corners = np.stack([images[:, 0, 0], images[:, 0, -1], images[:, -1, 0], images[:, -1, -1]], axis=1)
    for image, corner in zip(images, corners):
        distance = np.linalg.norm(image.reshape(-1, 1, 3) - corner[None], axis=2).min(axis=1)
        assert np.mean(distance > 0.3) > 0.01  # some pixels are far from every corner colour


def test_generate_scene_honours_classes_by_name_and_index():
    scene = shapes.generate_scene(seed=2, classes=("star", 5))
    assert scene.labels == (shapes.CLASSES.index("star"), 5)
    assert scene.image.shape == (64, 64, 3) and scene.masks.shape == (2, 64, 64)
    listed = shapes.generate_scenes(3, seed=9)
    batched = shapes.generate_scene_arrays(3, seed=9)
    assert [s.labels for s in listed] == [tuple(p) for p in batched[1].tolist()]
    assert np.array_equal(np.stack([s.image for s in listed]), batched[0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: shapes.generate(-1, seed=0),
        lambda: shapes.generate(4, seed=-3),
        lambda: shapes.generate(4, seed=0, size=16),
        lambda: shapes.generate(4, seed=1.5),
        lambda: shapes.generate_scene(seed=0, classes=("star", "star")),
        lambda: shapes.generate_scene(seed=0, classes=("star", "blob")),
        lambda: shapes.generate_scene(seed=0, classes=(0, 99)),
        lambda: shapes.generate_scene_arrays(2, seed=0, pairs=[(0, 1)]),
    ],
)
def test_bad_arguments_raise_parameter_error(call):
    with pytest.raises(ParameterError):
        call()


def test_zero_images_is_an_empty_batch():
    images, labels = shapes.generate(0, seed=0)
    assert images.shape == (0, 64, 64, 3) and labels.shape == (0,)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(32, 80), n=st.integers(1, 5))
def test_property_scenes_valid_for_any_seed_and_size(seed, size, n):
    images, labels, masks = shapes.generate_scene_arrays(n, seed=seed, size=size)
    assert images.shape == (n, size, size, 3)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert np.all(labels[:, 0] != labels[:, 1])
    assert not np.any(masks[:, 0] & masks[:, 1])
    assert np.all(masks.sum(axis=(2, 3)) > 0)
