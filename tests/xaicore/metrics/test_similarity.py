"""SSIM, Spearman and map normalizations against independent references.

Reference provenance: SSIM values are those of ``skimage.metrics.structural_similarity`` of the
installed scikit-image (>= 0.24; its version is printed in the assertion messages), called on
float64 maps with the same settings, so that scikit-image computes in float64 too; one value,
:data:`FROZEN_SSIM`, is frozen (computed once with scikit-image 0.26.0) so that a change in
scikit-image cannot move both sides at once. Spearman values are those of ``scipy.stats.spearmanr``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy
import scipy.stats
import skimage
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.metrics import structural_similarity

from xaicore.errors import ParameterError
from xaicore.metrics.similarity import (
    NORMALIZATIONS,
    compare_maps,
    get_normalization,
    prepare_maps,
    rank_maps,
    spearman,
    spearman_batch,
    ssim,
    ssim_batch,
)

REFERENCE = f"scikit-image {skimage.__version__} structural_similarity"
SETTINGS = [
    {"win_size": None, "gaussian_weights": False, "use_sample_covariance": True},
    {"win_size": 7, "gaussian_weights": False, "use_sample_covariance": False},
    {"win_size": 5, "gaussian_weights": False, "use_sample_covariance": True},
    {"win_size": None, "gaussian_weights": True, "use_sample_covariance": False},  # Wang et al. 2004
    {"win_size": None, "gaussian_weights": True, "use_sample_covariance": True, "sigma": 1.0},
    {"win_size": 7, "gaussian_weights": True, "use_sample_covariance": True},  # filter wider than the crop
]


def _attribution_like_maps(seed: int) -> np.ndarray:
    """Four (3, 32, 32) attributions of the kinds explainers give, from a seeded tiny CNN.

    Input gradients (noisy, signed), gradient x input, a Grad-CAM-like map (coarse 8x8 ReLU map
    upsampled: many exact zeros and flat plateaus), and a sparse map with large ties.
    """
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3, padding=1)
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    x = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0].sum().backward()
    grad = x.grad[0]
    coarse = torch.relu(torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64))
    cam = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)[0]
    sparse = torch.zeros(3, 32, 32, dtype=torch.float64)
    sparse[:, 10:14, 5:20] = 1.0
    sparse[0, 20:30, 20:30] = -2.0
    return torch.stack([grad, grad * x.detach()[0], cam.expand(3, -1, -1), sparse]).numpy()


@pytest.mark.parametrize("params", SETTINGS)
def test_ssim_equals_skimage_on_random_maps(params):
    rng = np.random.default_rng(3)
    for shape in [(16, 16), (21, 34), (64, 64)]:
        a = rng.random(shape)
        b = np.clip(a + rng.normal(0, 0.2, shape), 0, 1)
        reference = structural_similarity(a, b, data_range=1.0, **params)
        mine = ssim(a, b, data_range=1.0, **params)
        batched = ssim_batch(torch.from_numpy(a[None]), torch.from_numpy(b[None]), data_range=1.0, **params)
        assert abs(mine - reference) < 1e-6, (REFERENCE, shape, params, mine, reference)
        assert abs(float(batched[0]) - reference) < 1e-6, (REFERENCE, shape, params, float(batched[0]), reference)


def _frozen_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two fixed 12x12 float64 maps in [0, 1], from integer arithmetic only (no random generator)."""
    i = np.arange(12)
    a = (np.add.outer(i, 2 * i) % 7) / 6.0
    b = np.clip(a + (np.multiply.outer(i, i + 1) % 3 - 1) / 8.0, 0.0, 1.0)
    return a, b


# Computed once with scikit-image 0.26.0:
#   skimage.metrics.structural_similarity(a, b, data_range=1.0)   (default settings: uniform 7x7 window,
#   sample covariance) on the float64 maps of _frozen_pair(). It does not follow the installed scikit-image.
FROZEN_SSIM = 0.9557925147772676


def test_ssim_equals_the_frozen_skimage_value():
    a, b = _frozen_pair()
    assert abs(ssim(a, b, data_range=1.0) - FROZEN_SSIM) < 1e-6
    batched = ssim_batch(torch.from_numpy(a[None]), torch.from_numpy(b[None]), data_range=1.0)
    assert abs(float(batched[0]) - FROZEN_SSIM) < 1e-6


@pytest.mark.parametrize("norm", list(NORMALIZATIONS))
@pytest.mark.parametrize("params", SETTINGS[:4])
def test_ssim_equals_skimage_on_attribution_like_maps(norm, params):
    first, second = _attribution_like_maps(0), _attribution_like_maps(1)
    maps_a = prepare_maps(first, normalization=norm)
    maps_b = prepare_maps(second, normalization=norm)
    data_range = get_normalization(norm).data_range
    batched = ssim_batch(torch.from_numpy(maps_a), torch.from_numpy(maps_b), data_range=data_range, **params).numpy()
    for i in range(len(maps_a)):
        for a, b, got in [(maps_a[i], maps_b[i], batched[i]), (maps_a[i], maps_a[(i + 1) % 4], None)]:
            reference = structural_similarity(a, b, data_range=data_range, **params)
            assert abs(ssim(a, b, data_range=data_range, **params) - reference) < 1e-6, (REFERENCE, norm, i)
            if got is not None:
                assert abs(got - reference) < 1e-6, (REFERENCE, norm, i, got, reference)


def test_ssim_batch_float32_maps_and_float32_compute():
    rng = np.random.default_rng(5)
    a = rng.random((3, 40, 40)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1).astype(np.float32)
    exact = ssim_batch(torch.from_numpy(a), torch.from_numpy(b), data_range=1.0)
    fast = ssim_batch(torch.from_numpy(a), torch.from_numpy(b), data_range=1.0, dtype=torch.float32)
    assert exact.dtype == torch.float64 and fast.dtype == torch.float32
    for i in range(3):
        reference = structural_similarity(a[i].astype(np.float64), b[i].astype(np.float64), data_range=1.0)
        assert abs(float(exact[i]) - reference) < 1e-6, REFERENCE
        assert abs(float(fast[i]) - reference) < 1e-4


def test_ssim_batch_chunks_give_the_same_values():
    rng = np.random.default_rng(9)
    a, b = torch.from_numpy(rng.random((7, 12, 12))), torch.from_numpy(rng.random((7, 12, 12)))
    assert torch.equal(ssim_batch(a, b, data_range=1.0, chunk=2), ssim_batch(a, b, data_range=1.0, chunk=100))


def test_ssim_data_range_is_required_and_checked():
    a = np.zeros((8, 8))
    with pytest.raises(TypeError):
        ssim(a, a)  # type: ignore[call-arg]
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ParameterError, match="data_range"):
            ssim(a, a, data_range=bad)
    with pytest.raises(ParameterError, match="win_size"):
        ssim(a, a, data_range=1.0, win_size=4)
    with pytest.raises(ParameterError, match="smaller than"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)), data_range=1.0)


def test_ssim_of_zero_maps_is_one_not_nan():
    zero = np.zeros((10, 10))
    assert ssim(zero, zero, data_range=1.0) == 1.0
    assert float(ssim_batch(torch.zeros(1, 10, 10), torch.zeros(1, 10, 10), data_range=1.0)[0]) == 1.0


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (2, 9, 11), elements=st.floats(-1, 1, allow_nan=False)),
)
def test_ssim_properties(pair):
    a, b = pair
    s_ab = ssim(a, b, data_range=2.0)
    assert abs(s_ab - ssim(b, a, data_range=2.0)) < 1e-12
    assert s_ab <= 1.0 + 1e-12
    assert abs(ssim(a, a, data_range=2.0) - 1.0) < 1e-12
    reference = structural_similarity(a, b, data_range=2.0)
    assert abs(s_ab - reference) < 1e-6, REFERENCE


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=(6, 200)).astype(np.float64)  # many ties
    b = a + rng.integers(0, 3, size=a.shape)
    c = rng.normal(size=(6, 200))
    got_ties = spearman_batch(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    got_cont = spearman_batch(torch.from_numpy(a), torch.from_numpy(c)).numpy()
    for i in range(6):
        ref = scipy.stats.spearmanr(a[i], b[i]).statistic
        assert abs(got_ties[i] - ref) < 1e-12, f"scipy {scipy.__version__}"
        assert abs(got_cont[i] - scipy.stats.spearmanr(a[i], c[i]).statistic) < 1e-12
        assert abs(spearman(a[i], b[i]) - ref) < 1e-12


def test_spearman_on_attribution_like_maps_equals_scipy():
    first, second = _attribution_like_maps(2), _attribution_like_maps(3)
    for norm in NORMALIZATIONS:
        ma, mb = prepare_maps(first, normalization=norm), prepare_maps(second, normalization=norm)
        got = spearman_batch(torch.from_numpy(ma), torch.from_numpy(mb)).numpy()
        for i in range(len(ma)):
            ref = scipy.stats.spearmanr(ma[i].ravel(), mb[i].ravel()).statistic
            assert abs(got[i] - ref) < 1e-12, (norm, i)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (2, 30), elements=st.integers(-3, 3).map(float)))
def test_spearman_properties(pair):
    a, b = pair
    rho = spearman(a, b)
    assert -1.0 <= rho <= 1.0 and np.isfinite(rho)
    assert abs(rho - spearman(b, a)) < 1e-12
    assert abs(spearman(a, np.exp(b)) - rho) < 1e-12  # ranks only: invariant to increasing maps
    constant_a, constant_b = np.ptp(a) == 0, np.ptp(b) == 0
    if constant_a and constant_b:
        assert rho == 1.0
    elif constant_a or constant_b:
        assert rho == 0.0
    else:
        assert abs(rho - scipy.stats.spearmanr(a, b).statistic) < 1e-12


def test_spearman_of_non_finite_maps_is_nan():
    a = torch.tensor([[1.0, 2.0, float("nan")], [1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, float("inf")]])
    out = spearman_batch(a, b)
    assert torch.isnan(out).all()
    good = spearman_batch(a[:1].nan_to_num(0.5), b[:1])
    assert float(good[0]) == pytest.approx(scipy.stats.spearmanr([1, 2, 0.5], [1, 2, 3]).statistic)


def test_prepare_maps_normalizations():
    attr = np.zeros((3, 3, 2, 2))
    attr[0, :, 0, 0] = [1.0, -3.0, 0.5]  # channel sum -1.5, largest |channel| 3
    attr[0, :, 1, 1] = [0.5, 0.5, 2.0]  # channel sum 3
    attr[1] = np.nan
    attr[1, :, 0, 0] = 1.0  # partly NaN: the whole map becomes NaN
    # attr[2] stays all zero
    absolute = prepare_maps(attr, normalization="abs")
    np.testing.assert_allclose(absolute[0], [[0.5, 0.0], [0.0, 1.0]])
    signed = prepare_maps(attr, normalization="signed")
    np.testing.assert_allclose(signed[0], [[-0.5, 0.0], [0.0, 1.0]])
    channel_max = prepare_maps(attr, normalization="abs_channel_max")
    np.testing.assert_allclose(channel_max[0], [[1.0, 0.0], [0.0, 2.0 / 3.0]])
    for maps in (absolute, signed, channel_max):
        assert np.isnan(maps[1]).all()
        assert np.array_equal(maps[2], np.zeros((2, 2)))
    tensor_out = prepare_maps(torch.from_numpy(attr), normalization="signed")
    assert isinstance(tensor_out, torch.Tensor)
    np.testing.assert_allclose(tensor_out.numpy()[0], signed[0])
    assert {n: s.data_range for n, s in NORMALIZATIONS.items()} == {"abs": 1.0, "signed": 2.0, "abs_channel_max": 1.0}
    with pytest.raises(ParameterError, match="abs"):
        prepare_maps(attr, normalization="minmax")


def test_compare_maps_uses_the_normalization_data_range():
    first, second = _attribution_like_maps(4), _attribution_like_maps(5)
    result = compare_maps(torch.from_numpy(first), torch.from_numpy(second), normalization="signed")
    assert result.data_range == 2.0 and result.normalization == "signed"
    ma, mb = prepare_maps(first, normalization="signed"), prepare_maps(second, normalization="signed")
    for i in range(4):
        assert abs(result.ssim[i] - structural_similarity(ma[i], mb[i], data_range=2.0)) < 1e-6, REFERENCE
        assert abs(result.spearman[i] - scipy.stats.spearmanr(ma[i].ravel(), mb[i].ravel()).statistic) < 1e-12


def test_spearman_with_precomputed_ranks_equals_plain_call():
    rng = np.random.default_rng(5)
    reference = torch.from_numpy(np.round(rng.random((2, 9, 9)), 1))  # ties
    reference[1] = 0.5  # constant reference
    others = torch.from_numpy(np.round(rng.random((3, 2, 9, 9)), 1))
    others[0, 0, 0, 0] = float("nan")
    a = others.flatten(0, 1)
    b = reference.unsqueeze(0).expand_as(others).flatten(0, 1)
    ranks = rank_maps(reference).unsqueeze(0).expand(3, -1, -1).flatten(0, 1)
    plain = spearman_batch(a, b).numpy()
    assert np.array_equal(spearman_batch(a, b, ranks_b=ranks).numpy(), plain, equal_nan=True)
    assert np.isnan(plain[0]) and np.all(plain[1::2] == 0.0)
    with pytest.raises(ParameterError):
        spearman_batch(a, b, ranks_b=ranks[:, :10])
