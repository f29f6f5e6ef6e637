"""forward_logits: forward-only work through the checked inference copy gives the plain model's numbers
(Occlusion, CO scores over sets) and leaves the shared model as it was."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from tests.helpers.explain_models import images, make_bundle, tiny_bundle
from xaicore.confidence.co_sets import co_scores
from xaicore.errors import ParameterError
from xaicore.explainers.api import attribute
from xaicore.models.inference import cached_inference_copy, forward_logits, plain_forwards


def _state(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, int]]:
    return {name: (t.detach().clone(), t._version) for name, t in (*model.named_parameters(), *model.named_buffers())}


def _assert_unchanged(model: torch.nn.Module, before: dict[str, tuple[torch.Tensor, int]]) -> None:
    after = _state(model)
    assert after.keys() == before.keys()
    for name, (value, version) in before.items():
        assert torch.equal(after[name][0], value), name
        assert after[name][1] == version, name  # not even written in place with the same values
    assert not any(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def _resnet_bundle(size: int = 32):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    return make_bundle(net, input_size=(size, size), cam_layer="net.layer4")


@pytest.mark.parametrize("which", ["tiny", "resnet18"])
def test_occlusion_through_the_copy_equals_the_plain_path_and_leaves_the_model_alone(which: str) -> None:
    bundle = tiny_bundle(seed=3) if which == "tiny" else _resnet_bundle()
    x = images(2, bundle.input_size, seed=4)
    target = torch.tensor([1, 2])
    params = {"window": 4, "stride": 2} if which == "tiny" else {"window": 8, "stride": 4}
    before = _state(bundle.model)
    with plain_forwards():
        plain = attribute(bundle, x, method="occlusion", target=target, params=params, baseline="blur").values
    assert cached_inference_copy(bundle.model) is None  # nothing was made for the plain path
    fast = attribute(bundle, x, method="occlusion", target=target, params=params, baseline="blur").values
    assert cached_inference_copy(bundle.model) is not None, "the copy should have run"
    scale = float(plain.abs().max())
    assert scale > 0
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5 * scale)
    _assert_unchanged(bundle.model, before)


def test_co_scores_over_a_set_are_unchanged_by_the_copy() -> None:
    bundle = tiny_bundle(seed=8)
    pictures = images(6, bundle.input_size, seed=9).permute(0, 2, 3, 1).numpy()

    @dataclasses.dataclass(frozen=True)
    class Item:
        name: str
        array: np.ndarray
        label: int | None

    items = [Item(f"i{k}", pictures[k], k % 4 if k != 5 else None) for k in range(6)]
    kwargs = dict(methods=["saliency", "input_x_gradient"], batch_size=4)
    before = _state(bundle.model)
    with plain_forwards():
        plain = co_scores(bundle, items, **kwargs)
    assert cached_inference_copy(bundle.model) is None
    fast = co_scores(bundle, items, **kwargs)
    assert cached_inference_copy(bundle.model) is not None, "the copy should have run"
    assert len(fast.rows) == len(plain.rows) == 6 * 2 * 2
    for mine, theirs in zip(fast.rows, plain.rows, strict=True):
        assert (mine.image, mine.method, mine.variant, mine.predicted, mine.correct, mine.status) == (
            theirs.image,
            theirs.method,
            theirs.variant,
            theirs.predicted,
            theirs.correct,
            theirs.status,
        )
        assert mine.co == pytest.approx(theirs.co, rel=1e-4, abs=1e-5)
    _assert_unchanged(bundle.model, before)


def test_forward_logits_takes_a_batch_or_a_maker_and_says_how_it_ran() -> None:
    bundle = tiny_bundle(seed=5)
    x = images(7, bundle.input_size, seed=6)
    with torch.no_grad():
        expected = bundle.model(x)
    whole = forward_logits(bundle.model, x, batch_size=3)
    made = forward_logits(bundle.model, lambda a, b: x[a:b], total=7, batch_size=3)
    assert whole.inference_copy and made.inference_copy
    assert whole.how() == {"inference_copy": True, "head_apart": whole.head_apart, "cpu_workers": whole.cpu_workers}
    torch.testing.assert_close(whole.values, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(made.values, whole.values, rtol=0, atol=0)
    # reduce hears which inputs it has, whatever the chunks: here it adds each input's index
    reduced = forward_logits(
        bundle.model, x, batch_size=3, reduce=lambda logits, a, b: logits[:, 0] + torch.arange(a, b)
    )
    torch.testing.assert_close(reduced.values, whole.values[:, 0] + torch.arange(7))
    plain = forward_logits(bundle.model, x, batch_size=3, optimize=False)
    assert not plain.inference_copy and torch.equal(
        plain.values, torch.cat([bundle.model(x[i : i + 3]) for i in (0, 3, 6)])
    )
    assert not forward_logits(bundle.model, x[:1], batch_size=3).inference_copy  # one input: nothing to gain
    with pytest.raises(ParameterError, match="total"):
        forward_logits(bundle.model, lambda a, b: x[a:b], batch_size=3)
    with pytest.raises(ParameterError, match="total"):
        forward_logits(bundle.model, x, total=7, batch_size=3)
    with pytest.raises(ParameterError, match="batch_size"):
        forward_logits(bundle.model, x, batch_size=0)


def test_a_model_in_training_mode_runs_plainly_and_stays_in_training_mode() -> None:
    bundle = tiny_bundle(seed=2)
    x = images(4, bundle.input_size, seed=1)
    bundle.model.train()
    run = forward_logits(bundle.model, x, batch_size=4)
    assert not run.inference_copy and bundle.model.training
    assert cached_inference_copy(bundle.model) is None
