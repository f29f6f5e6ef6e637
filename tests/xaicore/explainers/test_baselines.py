"""Baselines: exact values, scipy's Gaussian filter as the blur reference, seeded noise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xaicore.errors import ParameterError
from xaicore.explainers.baselines import (
    BASELINE_KINDS,
    BLUR_SIGMA_FRACTION,
    gaussian_blur,
    jittered_references,
    make_baseline,
)


def _images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_kinds() -> None:
    assert BASELINE_KINDS == ("black", "blur", "mean", "noise")


def test_black_and_mean() -> None:
    x = _images()
    assert not make_baseline("black", x, generator=_gen()).any()
    mean = make_baseline("mean", x, generator=_gen())
    for i in range(2):
        for c in range(3):
            assert torch.allclose(mean[i, c], x[i, c].mean().expand(64, 64))


def test_blur_equals_scipy_mirror_gaussian_with_documented_sigma() -> None:
    x = _images(seed=1).double()
    blurred = make_baseline("blur", x, generator=_gen())
    sigma = BLUR_SIGMA_FRACTION * 64
    assert sigma == 8.0
    expected = ndi.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(blurred.numpy(), expected, atol=1e-12)
    # strong: the fine structure is gone
    assert blurred.std() < 0.2 * x.std()


def test_noise_is_uniform_seeded_and_independent_of_the_image() -> None:
    x = _images(n=4)
    a = make_baseline("noise", x, generator=_gen(5))
    b = make_baseline("noise", x * 0, generator=_gen(5))
    c = make_baseline("noise", x, generator=_gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert abs(float(a.mean()) - 0.5) < 0.01 and abs(float(a.var()) - 1 / 12) < 0.005


def test_unknown_kind_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ParameterError, match="white"):
        make_baseline("white", _images(), generator=_gen())
    with pytest.raises(ParameterError, match=r"\(N, 3, H, W\)"):
        make_baseline("black", torch.zeros(3, 8, 8), generator=_gen())
    with pytest.raises(ParameterError):
        gaussian_blur(_images(), sigma=0.0)


def test_jittered_references() -> None:
    base = _images(n=2, size=8)
    same = jittered_references(base, count=3, noise=0.0, generator=_gen())
    assert same.shape == (3, 2, 3, 8, 8) and torch.equal(same[2], base)
    jittered = jittered_references(base, count=3, noise=0.1, generator=_gen())
    assert jittered.min() >= 0 and jittered.max() <= 1
    assert not torch.equal(jittered[0], jittered[1])
    inside = (base > 0.3) & (base < 0.7)  # away from the clamp, the jitter has the asked spread
    assert abs(float((jittered - base)[:, inside].std()) - 0.1) < 0.01
    with pytest.raises(ParameterError):
        jittered_references(base, count=0, noise=0.1, generator=_gen())


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(min_value=1, max_value=20),
    w=st.integers(min_value=1, max_value=20),
    sigma=st.floats(min_value=0.3, max_value=12.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_blur_is_a_normalized_average(h: int, w: int, sigma: float, seed: int) -> None:
    x = torch.rand(1, 2, h, w, generator=_gen(seed), dtype=torch.float64)
    out = gaussian_blur(x, sigma=sigma)
    assert out.shape == x.shape
    # every output is a convex combination of the inputs
    assert out.min() >= x.min() - 1e-12 and out.max() <= x.max() + 1e-12
    const = torch.full_like(x, 0.37)
    torch.testing.assert_close(gaussian_blur(const, sigma=sigma), const)
