"""Sample images: generated shapes and scenes, and scikit-image's bundled photographs (offline)."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest

from xaicore.data import shapes
from xaicore.data.samples import PHOTOS, list_samples, load_sample, photo_path, skimage_data_dir
from xaicore.errors import UnknownNameError


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a sample tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def names_of(kind: str) -> list[str]:
    return [n for n in list_samples() if n.startswith(f"{kind}: ")]


def test_catalogue_order_and_kinds():
    names = list_samples()
    assert len(names) == len(set(names))
    kinds = [n.split(": ")[0] for n in names]
    assert kinds == sorted(kinds, key=["shape", "scene", "photo", "xray"].index)
    assert names_of("shape") == [f"shape: {c}" for c in shapes.CLASSES]
    assert len(names_of("scene")) >= 3
    assert {f"photo: {k}" for k in ("astronaut", "coffee", "chelsea", "rocket", "camera")} <= set(names_of("photo"))


@pytest.mark.parametrize("index", range(len(shapes.CLASSES)))
def test_one_generated_shape_per_class(index):
    name = f"shape: {shapes.CLASSES[index]}"
    sample = load_sample(name)
    assert sample.name == name
    assert sample.label == index
    assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.float32
    assert np.all(np.isfinite(sample.image)) and sample.image.min() >= 0 and sample.image.max() <= 1
    assert sample.masks is None and sample.mask_labels == ()
    assert shapes.CLASSES[index] in sample.description
    np.testing.assert_array_equal(load_sample(name).image, sample.image)  # deterministic


def test_shape_samples_are_distinct_pictures():
    images = [load_sample(n).image for n in names_of("shape")]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 0.01


@pytest.mark.parametrize("name", [n for n in list_samples() if n.startswith("scene: ")])
def test_scenes_have_two_disjoint_masks_named_by_their_classes(name):
    sample = load_sample(name)
    assert sample.label is None
    assert sample.masks.dtype == bool and sample.masks.shape == (2, 64, 64)
    assert sample.masks[0].any() and sample.masks[1].any()
    assert not np.any(sample.masks[0] & sample.masks[1])
    first, second = name.removeprefix("scene: ").split(" + ")
    assert sample.mask_labels == (shapes.CLASSES.index(first), shapes.CLASSES.index(second))
    # The painted object differs from the background around it.
    for mask in sample.masks:
        background = ~sample.masks.any(axis=0)
        inside = sample.image[mask].mean(axis=0)
        outside = sample.image[background].mean(axis=0)
        assert np.linalg.norm(inside - outside) > 0.05


def test_photos_are_files_inside_the_installed_package():
    data_dir = skimage_data_dir()
    assert data_dir.name == "data" and data_dir.parent.name == "skimage"
    for key in PHOTOS:
        path = photo_path(key)
        assert path.is_file() and path.parent == data_dir


def test_photos_are_the_genuine_distribution_files():
    from skimage.data._registry import registry

    for key, (filename, _) in PHOTOS.items():
        digest = hashlib.sha256(photo_path(key).read_bytes()).hexdigest()
        assert registry[f"data/{filename}"] == digest, key


@pytest.mark.parametrize("key", ["astronaut", "chelsea", "camera", "rocket"])
def test_photos_load_offline_and_match_scikit_image(no_network, key):
    import skimage.data

    sample = load_sample(f"photo: {key}")
    reference = np.asarray(getattr(skimage.data, key)(), dtype=np.float64) / 255
    if reference.ndim == 2:
        reference = np.repeat(reference[:, :, None], 3, axis=2)
    assert sample.image.shape == reference.shape
    np.testing.assert_allclose(sample.image, reference, atol=1e-6)
    assert sample.label is None and sample.masks is None
    assert sample.description


def test_every_photo_loads_offline(no_network):
    for name in names_of("photo"):
        sample = load_sample(name)
        assert sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert sample.image.dtype == np.float32


def test_samples_are_fresh_copies():
    for name in ("shape: circle", names_of("scene")[0], "photo: coffee"):
        first = load_sample(name)
        first.image[...] = 0.0
        if first.masks is not None:
            first.masks[...] = False
        second = load_sample(name)
        assert second.image.max() > 0.0
        assert second.masks is None or second.masks.any()


def test_unknown_sample_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="No sample image named 'photo: lena'.*photo: astronaut"):
        load_sample("photo: lena")
