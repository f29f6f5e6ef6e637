"""Layer randomization: schedules, restoring, seeds, default initialization, shared model untouched."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.helpers.sanity_fixtures import tiny_bundle
from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models.bundle import fingerprint
from xaicore.models.randomization import LayerRandomizer, layer_seed, reinitialize

FORWARD = ("net.conv1", "net.conv2", "net.head")


def _params(model: nn.Module, layer: str) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.get_submodule(layer).named_parameters(recurse=False)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bundle_layers_are_in_forward_order_not_registration_order():
    bundle = tiny_bundle()
    registered = [n for n, m in bundle.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert bundle.layers == FORWARD
    assert tuple(registered) != FORWARD


def test_cascading_goes_from_the_output_layer_down_cumulatively():
    bundle = tiny_bundle()
    private, rand = LayerRandomizer.from_bundle(bundle)
    trained = {name: _params(private.model, name) for name in FORWARD}
    seen = []
    with rand.cascading(seed=3) as steps:
        for step in steps:
            seen.append((step.index, step.layer, step.randomized))
            for name in FORWARD:
                current = _params(private.model, name)
                assert _same(current, trained[name]) == (name not in step.randomized), (step, name)
    assert seen == [
        (0, "net.head", ("net.head",)),
        (1, "net.conv2", ("net.conv2", "net.head")),
        (2, "net.conv1", FORWARD),
    ]
    for name in FORWARD:
        assert _same(_params(private.model, name), trained[name])


def test_independent_changes_and_restores_only_its_layer():
    bundle = tiny_bundle()
    private, rand = LayerRandomizer.from_bundle(bundle)
    trained = {name: _params(private.model, name) for name in FORWARD}
    order = []
    with rand.independent(seed=1) as steps:
        for step in steps:
            order.append(step.layer)
            assert step.randomized == (step.layer,)
            for name in FORWARD:
                assert _same(_params(private.model, name), trained[name]) == (name != step.layer)
    assert order == list(reversed(FORWARD))
    assert fingerprint(private.model) == bundle.fingerprint


def test_restore_puts_back_exactly_the_trained_tensors_of_one_layer():
    bundle = tiny_bundle()
    private, rand = LayerRandomizer.from_bundle(bundle)
    before = {name: _params(private.model, name) for name in FORWARD}
    rand.randomize("net.conv2", seed=0)
    rand.randomize("net.head", seed=0)
    rand.restore("net.conv2")
    assert _same(_params(private.model, "net.conv2"), before["net.conv2"])
    assert not _same(_params(private.model, "net.head"), before["net.head"])
    assert rand.changed == ("net.head",)


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_leaving_early_or_on_error_restores_the_copy(mode):
    bundle = tiny_bundle()
    private, rand = LayerRandomizer.from_bundle(bundle)
    with getattr(rand, mode)(seed=0) as steps:
        next(steps)
        next(steps)
    assert fingerprint(private.model) == bundle.fingerprint
    with pytest.raises(RuntimeError, match="boom"), getattr(rand, mode)(seed=0) as steps:
        for _ in steps:
            raise RuntimeError("boom")
    assert fingerprint(private.model) == bundle.fingerprint
    assert rand.changed == ()


def test_shared_model_is_never_touched():
    bundle = tiny_bundle()
    shared_before = {name: _params(bundle.model, name) for name in FORWARD}
    private, rand = LayerRandomizer.from_bundle(bundle)
    assert private.model is not bundle.model
    for seed in range(3):
        with rand.cascading(seed=seed) as steps:
            for _ in steps:
                for name in FORWARD:
                    assert _same(_params(bundle.model, name), shared_before[name])
        with rand.independent(seed=seed) as steps:
            list(steps)
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_seeds_are_reproducible_and_shared_between_schedules():
    bundle = tiny_bundle()
    private, rand = LayerRandomizer.from_bundle(bundle)

    def weights_at_each_step(mode: str, seed: int) -> dict[str, dict[str, torch.Tensor]]:
        out = {}
        with getattr(rand, mode)(seed=seed) as steps:
            for step in steps:
                out[step.layer] = _params(private.model, step.layer)
        return out

    first = weights_at_each_step("cascading", 7)
    again = weights_at_each_step("cascading", 7)
    independent = weights_at_each_step("independent", 7)
    other = weights_at_each_step("cascading", 8)
    for name in FORWARD:
        assert _same(first[name], again[name])
        assert _same(first[name], independent[name])
        assert not _same(first[name], other[name])
    assert layer_seed(7, "net.head") != layer_seed(7, "net.conv1")
    assert layer_seed(7, "net.head") == layer_seed(7, "net.head")


def test_global_rng_is_not_used():
    bundle = tiny_bundle()
    _, rand = LayerRandomizer.from_bundle(bundle)
    state = torch.get_rng_state()
    with rand.cascading(seed=0) as steps:
        list(steps)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv2d(3, 5, 3),
        lambda: nn.Conv2d(4, 6, 3, groups=2, bias=False),
        lambda: nn.Linear(7, 2),
        lambda: nn.ConvTranspose2d(3, 4, 2),
        lambda: nn.Conv1d(2, 3, 5),
    ],
)
def test_reinitialize_equals_the_layers_own_reset_parameters(make):
    # The module's own default initialization, run on the global RNG (forked, so the test
    # leaves it as it was) with the same seed, must give exactly the same tensors.
    seed = 12345
    ours = make()
    reinitialize(ours, generator=torch.Generator().manual_seed(seed))
    theirs = make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        theirs.reset_parameters()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    fan_in = ours.weight[0].numel() if not isinstance(ours, nn.ConvTranspose2d) else ours.weight.shape[1] * 4
    bound = 1 / math.sqrt(fan_in)
    assert ours.weight.abs().max() <= bound
    assert ours.weight.abs().max() > 0.5 * bound


def test_other_layer_types_reset_under_a_forked_rng():
    a, b = nn.Embedding(5, 3), nn.Embedding(5, 3)
    state = torch.get_rng_state()
    reinitialize(a, generator=torch.Generator().manual_seed(4))
    reinitialize(b, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.weight, b.weight)
    assert torch.equal(torch.get_rng_state(), state)


def test_refuses_layers_it_cannot_reinitialize_or_does_not_know():
    class NoInit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

    with pytest.raises(ParameterError, match="no default initialization"):
        reinitialize(NoInit(), generator=torch.Generator())
    bundle = tiny_bundle()
    _, rand = LayerRandomizer.from_bundle(bundle)
    with pytest.raises(UnknownNameError, match="not one of the randomizable layers"):
        rand.randomize("net.relu1", seed=0)
    with pytest.raises(ParameterError, match="no randomizable layers"):
        LayerRandomizer(bundle.model, ())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**40), picks=st.lists(st.sampled_from(FORWARD), min_size=1, max_size=5))
def test_any_sequence_of_randomize_and_restore_comes_back_exactly(seed, picks):
    bundle = _SHARED
    private, rand = LayerRandomizer.from_bundle(bundle)
    for name in picks:
        rand.randomize(name, seed=seed)
        module = private.model.get_submodule(name)
        bound = 1 / math.sqrt(module.weight[0].numel())
        assert module.weight.abs().max() <= bound and module.bias.abs().max() <= bound
    assert set(rand.changed) == set(picks)
    rand.restore_all()
    assert fingerprint(private.model) == bundle.fingerprint


_SHARED = tiny_bundle(seed=9)
