"""The exact shortcuts of the batched insertion/deletion path and its inference copy.

Every shortcut must give the curves of the plain one-image-at-a-time loop: on the tiny test
net, on the default model, and on the default architecture with batch norm.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.maps import attribution_maps as _maps
from tests.helpers.sanity_fixtures import seeded_weights, tiny_bundle
from xaicore.bench.faithfulness import step_loop_curves
from xaicore.metrics.faithfulness import (
    RANDOM,
    insertion_deletion,
    make_background,
)
from xaicore.models import inference
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.default import INPUT_SIZE, ShapesNet, load_default_bundle
from xaicore.models.layers import forward_order

TOLERANCE = 1e-5


def _bundle(net: nn.Module, *, size: int, num_classes: int, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)) -> ModelBundle:
    model = PixelSpaceModel(net, mean=mean, std=std).eval()
    return ModelBundle(
        model=model,
        labels=tuple(f"c{i}" for i in range(num_classes)),
        input_size=(size, size),
        cam_layer="",
        layers=tuple(forward_order(model, torch.zeros(1, 3, size, size))),
        name="test net",
        fingerprint=fingerprint(model),
        source="test",
    )


def _batch_norm_bundle(seed: int = 0) -> ModelBundle:
    """The default architecture with batch norm, random weights and running statistics, in eval mode."""
    net = seeded_weights(ShapesNet(8, batch_norm=True), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            channels = bn.num_features
            bn.running_mean.copy_(torch.randn(channels, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    return _bundle(net.eval(), size=INPUT_SIZE[0], num_classes=8)


def _assert_equals_loop(bundle, images, maps, targets, result, background):
    bg = make_background(background, images)
    for name in (*maps, RANDOM):
        curves = result.get(name)
        for i in range(images.shape[0]):
            attr = maps[name][i].numpy() if name in maps else -curves.rank[i].astype(np.float64)
            ins, dele = step_loop_curves(
                bundle,
                images[i],
                attr,
                target=targets[i],
                step_fraction=result.params["step_fraction"],
                fraction=result.params["fraction"],
                background=bg[i],
            )
            np.testing.assert_allclose(curves.insertion[i], ins, atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(curves.deletion[i], dele, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "which,fraction,background",
    [("tiny", 1.0, "black"), ("tiny", 0.5, "blur"), ("default", 1.0, "black"), ("batch_norm", 0.7, "mean")],
)
@pytest.mark.parametrize("optimize", [True, False])
def test_batched_equals_the_loop_with_and_without_the_inference_copy(which, fraction, background, optimize):
    if which == "tiny":
        bundle, size = tiny_bundle(seed=4, size=16), 16
    elif which == "default":
        bundle, size = load_default_bundle(device="cpu"), 64
    else:
        bundle, size = _batch_norm_bundle(), 64
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, size, size, generator=gen)
    maps = _maps(2, size, seed=6)
    targets = [0, bundle.num_classes - 1]
    step = 0.05 if size == 16 else 0.1
    result = insertion_deletion(
        bundle,
        images,
        maps,
        target=targets,
        step_fraction=step,
        fraction=fraction,
        background=background,
        batch_size=5,
        optimize=optimize,
    )
    assert result.params["inference_copy"] is optimize
    _assert_equals_loop(bundle, images, maps, targets, result, background)


def test_curve_ends_are_shared_by_every_ranking():
    bundle = tiny_bundle(seed=2, size=12)
    images = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    result = insertion_deletion(bundle, images, _maps(1, 12, seed=3), target=1, step_fraction=0.1)
    first = result.curves[0]
    for curves in result.curves:
        # k = 0: insertion shows the background, deletion the image; k = P the other way round
        assert curves.insertion[0, 0] == first.insertion[0, 0] == curves.deletion[0, -1]
        assert curves.deletion[0, 0] == first.deletion[0, 0] == curves.insertion[0, -1]
    with torch.no_grad():
        p = torch.softmax(bundle.model(torch.cat([images, torch.zeros_like(images)])), dim=1)[:, 1]
    np.testing.assert_allclose([first.deletion[0, 0], first.insertion[0, 0]], p.numpy(), atol=1e-6)


class _Branchy(nn.Module):
    """Data-dependent control flow (an input check): neither fx nor a trace may stand in for it."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(torch.isnan(x).any()):
            raise ValueError("NaN in the input")
        return self.head(x.flatten(1))


def test_models_the_copy_cannot_stand_in_for_run_plainly():
    bundle = _bundle(seeded_weights(_Branchy(), 0).eval(), size=8, num_classes=2, mean=(0, 0, 0), std=(1, 1, 1))
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    maps = _maps(2, 8, seed=4)
    result = insertion_deletion(bundle, images, maps, target=0, step_fraction=0.1, background=-torch.ones(3, 1, 1))
    assert result.params["inference_copy"] is False
    _assert_equals_loop(bundle, images, maps, [0, 0], result, -torch.ones(3, 1, 1))


def test_the_shared_bundle_model_is_untouched_and_results_do_not_depend_on_the_copy():
    bundle = load_default_bundle(device="cpu")
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    maps = _maps(1, 64, seed=9)
    fast = insertion_deletion(bundle, images, maps, target=3, step_fraction=0.05, batch_size=16)
    plain = insertion_deletion(bundle, images, maps, target=3, step_fraction=0.05, optimize=False)
    assert fast.params["inference_copy"] and not plain.params["inference_copy"]
    assert fast.params["head_apart"]  # the 1024-wide head runs on many rows at a time
    for name in (*maps, RANDOM):
        np.testing.assert_allclose(fast.get(name).insertion, plain.get(name).insertion, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(fast.get(name).deletion, plain.get(name).deletion, atol=TOLERANCE, rtol=0)
    assert fingerprint(bundle.model) == bundle.fingerprint
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in bundle.model.modules())


def test_a_copy_that_fails_on_some_batch_is_dropped(monkeypatch):
    bundle = tiny_bundle(seed=5, size=16)
    net = bundle.model.net

    def fragile(inner, example, check, expected):
        def run(batch):
            if batch.shape[0] != check.shape[0]:
                raise RuntimeError("shape baked into the copy")
            return inner(batch)

        return inference.InferenceCopy(run, scripted=False)

    monkeypatch.setattr(inference, "inference_copy", fragile)
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    maps = _maps(1, 16, seed=4)
    result = insertion_deletion(bundle, images, maps, target=2, step_fraction=0.1, batch_size=4)
    assert not result.params["inference_copy"]
    assert inference._INFERENCE_COPIES[net][1] is None
    _assert_equals_loop(bundle, images, maps, [2], result, "black")
    inference.clear_inference_copies()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("n", [1, 3])
def test_masked_images_by_bit_selection_equal_torch_where_bit_for_bit(dtype, n):
    from xaicore.metrics.faithfulness import _masker

    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 3, 5, 6, generator=gen).to(dtype)
    bg = torch.randn(n, 3, 5, 6, generator=gen).to(dtype)
    specials = torch.tensor([-0.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e-40], dtype=torch.float64)
    x.view(-1)[: len(specials)] = specials.to(dtype)
    bg.view(-1)[-len(specials) :] = specials.to(dtype)
    shown = torch.rand(7, 30, generator=gen) > 0.5
    image = torch.randint(0, n, (7,), generator=gen) if n > 1 else torch.zeros(7, dtype=torch.long)
    got = _masker(x, bg)(shown, image)
    expected = torch.where(shown.view(7, 1, 5, 6), x[image], bg[image])
    assert got.dtype == dtype and got.shape == expected.shape
    assert torch.equal(got.view(-1).view(torch.uint8), expected.contiguous().view(-1).view(torch.uint8))
