"""Max-pooling written as ReLU networks (:class:`ReluMaxPool2d`, :func:`relu_max_pool_copy`):
equal to torch's pooling for any window, stride, padding, dilation and ceil mode; one ReLU
module per tree level, each run once; the copy leaves the model alone, shares its weights and
hooks, is kept per network and weights, and is refused when it disagrees with the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.helpers.explain_models import TinyConvNet, make_bundle
from xaicore.errors import MethodUnavailable, RewriteMismatch
from xaicore.models.bundle import fingerprint
from xaicore.models.rewrite import ReluMaxPool2d, relu_max_pool_copy, with_relu_max_pools


def _values(shape: tuple[int, ...], seed: int, *, ties: bool, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many equal maxima in a window
        return torch.randint(-2, 3, shape, generator=g).to(dtype)
    scale = 10.0 ** torch.randint(-3, 4, (1,), generator=g)  # values from 1e-3 to 1e3
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) * scale


@settings(max_examples=100, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad_share=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    ceil_mode=st.booleans(),
    size=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_relu_max_pool_equals_max_pool2d(kernel, stride, dilation, pad_share, ceil_mode, size, seed, ties, dtype):
    padding = tuple(int(share * (k // 2)) for share, k in zip(pad_share, kernel))  # torch allows up to k // 2
    x = _values((2, 3, *size), seed, ties=ties, dtype=dtype)
    try:
        expected = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    except RuntimeError:
        assume(False)  # a window torch refuses (larger than the padded input)
    if not torch.isfinite(expected).all():
        assume(False)  # a window entirely in the padding: torch gives -inf, there is no maximum
    got = ReluMaxPool2d(kernel, stride, padding, dilation, ceil_mode)(x)
    assert got.shape == expected.shape and got.dtype == dtype
    assert torch.isfinite(got).all()
    scale = float(expected.abs().max()) or 1.0
    eps = torch.finfo(dtype).eps
    assert float((got - expected).abs().max()) <= 4 * eps * scale


@settings(max_examples=40, deadline=None)
@given(
    out=st.tuples(st.one_of(st.none(), st.integers(1, 7)), st.one_of(st.none(), st.integers(1, 7))),
    size=st.tuples(st.integers(1, 13), st.integers(1, 13)),
    seed=st.integers(0, 2**16),
)
def test_relu_max_pool_equals_adaptive_max_pool2d(out, size, seed):
    x = _values((2, 3, *size), seed, ties=False, dtype=torch.float64)
    expected = nn.AdaptiveMaxPool2d(out)(x)
    got = ReluMaxPool2d.replacing(nn.AdaptiveMaxPool2d(out))(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14 * float(expected.abs().max()))


def test_every_relu_of_the_tree_runs_once_and_no_padding_value_enters():
    pool = ReluMaxPool2d(3, 2, 1)  # ResNet's and DenseNet's stem: 3 values per axis, 2 levels each
    assert len(pool.rows) == 2 and len(pool.columns) == 2
    assert len({id(m) for m in pool.modules() if isinstance(m, nn.ReLU)}) == 4
    calls: list[int] = []
    for relu in [*pool.rows, *pool.columns]:
        relu.register_forward_hook(lambda m, i, o: calls.append(id(m)))
    x = -1.0 - torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(2))  # all below any zero padding
    got = pool(x)
    assert sorted(calls) == sorted({*calls}) and len(calls) == 4
    assert torch.isfinite(got).all() and float(got.max()) < -1.0  # no padding value won a window
    torch.testing.assert_close(got, F.max_pool2d(x, 3, 2, 1), rtol=0, atol=1e-6)


def test_the_copy_shares_weights_and_hooks_and_leaves_the_model_alone():
    bundle = make_bundle(TinyConvNet(seed=3), input_size=(16, 16), cam_layer="net.features.3")
    model = bundle.model
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    exact = relu_max_pool_copy(model, x[:1])
    assert exact is not model and relu_max_pool_copy(model, x[:1]) is exact  # kept
    assert [type(m) for m in model.net.features] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d] * 2
    assert [type(m) for m in exact.net.features] == [nn.Conv2d, nn.ReLU, ReluMaxPool2d] * 2
    assert fingerprint(model) == bundle.fingerprint
    assert {p.data_ptr() for p in exact.parameters()} == {p.data_ptr() for p in model.parameters()}
    with torch.no_grad():
        torch.testing.assert_close(exact(x), model(x), rtol=0, atol=1e-6)
    seen: list[str] = []
    handle = model.net.features[4].register_forward_hook(lambda *_: seen.append("relu"))
    pool_handle = model.net.features[2].register_forward_hook(lambda *_: seen.append("pool"))
    with torch.no_grad():
        exact(x)
    handle.remove()
    pool_handle.remove()
    with torch.no_grad():
        exact(x)
    assert seen == ["pool", "relu"]  # the model's hooks ran in the copy, and stopped with them


def test_the_copy_follows_new_weights():
    model = make_bundle(TinyConvNet(seed=5), input_size=(16, 16), cam_layer="net.features.3").model
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    first = relu_max_pool_copy(model, x[:1])
    with torch.no_grad():
        model.net.features[0].weight.mul_(-1.0)
    second = relu_max_pool_copy(model, x[:1])
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x), model(x), rtol=0, atol=1e-6)


def test_models_without_max_pooling_or_with_indices_are_not_rewritten():
    plain = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten())
    x = torch.rand(1, 3, 8, 8)
    assert with_relu_max_pools(plain) is None and relu_max_pool_copy(plain, x) is plain
    indices = nn.Sequential(nn.MaxPool2d(2, return_indices=True))
    assert with_relu_max_pools(indices) is None


def test_a_rewrite_that_disagrees_is_refused(monkeypatch):
    model = make_bundle(TinyConvNet(seed=7), input_size=(16, 16), cam_layer="net.features.3").model
    monkeypatch.setattr(ReluMaxPool2d, "forward", lambda self, x: F.max_pool2d(x, 2) + 1e-3)
    with pytest.raises(RewriteMismatch, match="differ from the model's") as info:
        relu_max_pool_copy(model, torch.rand(1, 3, 16, 16))
    assert isinstance(info.value, MethodUnavailable)


def test_a_model_in_bf16_autocast_keeps_its_outputs():
    model = make_bundle(TinyConvNet(seed=9), input_size=(16, 16), cam_layer="net.features.3").model
    model.autocast_dtype = torch.bfloat16
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    exact = relu_max_pool_copy(model, x[:1])  # within 1e-5, or it would raise
    with torch.no_grad():
        torch.testing.assert_close(exact(x), model(x), rtol=0, atol=1e-5 * float(model(x).abs().max()))
    pool = ReluMaxPool2d(2)
    h = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(11)).bfloat16()
    assert torch.equal(pool(h), F.max_pool2d(h, 2))
