"""IG soft-masking on tiny sizes: the mask, the frozen classifier, the protocols' inputs,
seeding and early stopping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.improve import classifier, data, softmask
from xaicore.improve.data import ImageSplit

TINY = softmask.SoftMaskParams(width=2, epochs=2, patience=0, batch_size=8, ig_steps=2, ig_batch=8)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_split(n: int, seed: int) -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.rand(n, 3, 8, 8, generator=g), torch.arange(n) % 8)


def _tiny_bundle(seed: int = 0):
    torch.manual_seed(seed)
    return classifier.freeze(classifier.small_cnn(size=8), name="tiny", side=8)


def test_mask_is_in_unit_range_and_shared_by_the_channels():
    torch.manual_seed(0)
    net = softmask.SoftMask(width=2).eval()
    x, a = torch.rand(4, 3, 8, 8), torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        mask = net(x, a)
    assert mask.shape == (4, 1, 8, 8)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    seen = []
    softmask.masked_logits(lambda t: seen.append(t) or t.sum((1, 2, 3)), net, x, a)
    ratio = seen[0] / x  # the classifier's input divided by the image: M in every channel
    torch.testing.assert_close(ratio, mask.expand(-1, 3, -1, -1))


def test_onehot_label_image_by_hand():
    maps = softmask.onehot_maps(torch.tensor([0, 3]), classes=4, side=8)
    assert maps.shape == (2, 1, 8, 8)
    expected = torch.zeros(2, 1, 8, 8)
    expected[0, 0, 0:2] = 1.0  # band 0: rows 0-1
    expected[1, 0, 6:8] = 1.0  # band 3: rows 6-7
    torch.testing.assert_close(maps, expected)
    with pytest.raises(ParameterError):
        softmask.onehot_maps(torch.tensor([0]), classes=9, side=8)


def test_ig_maps_are_scaled_per_image_and_follow_the_target():
    bundle = _tiny_bundle()
    split = _tiny_split(4, 1)
    maps = softmask.ig_maps(bundle, split.images, split.labels, steps=4, batch=3)
    assert maps.shape == (4, 1, 8, 8)
    torch.testing.assert_close(maps.abs().amax(dim=(1, 2, 3)), torch.ones(4))
    other = softmask.ig_maps(bundle, split.images, (split.labels + 1) % 8, steps=4, batch=3)
    assert not torch.allclose(maps, other)


def test_run_keeps_the_classifier_frozen_and_feeds_each_protocol_its_map(monkeypatch):
    bundle = _tiny_bundle()
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    train, test = _tiny_split(24, 2), _tiny_split(8, 3)
    seen: list[torch.Tensor] = []
    original = softmask.masked_accuracy

    def spy(classifier_, mask_net, x, a, y, **kw):
        if x is test.images:
            seen.append(a.clone())
        return original(classifier_, mask_net, x, a, y, **kw)

    monkeypatch.setattr(softmask, "masked_accuracy", spy)
    result = softmask.run_softmask(bundle, train=train, test=test, seed=0, params=TINY)
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert set(result.accuracies) == set(softmask.PROTOCOLS)
    true_ig, predicted_ig, zero, onehot = seen  # PROTOCOLS order
    predicted = classifier.predict(bundle, test.images)
    torch.testing.assert_close(true_ig, softmask.ig_maps(bundle, test.images, test.labels, steps=2, batch=8))
    torch.testing.assert_close(predicted_ig, softmask.ig_maps(bundle, test.images, predicted, steps=2, batch=8))
    assert torch.count_nonzero(zero) == 0 and zero.shape == (8, 1, 8, 8)
    torch.testing.assert_close(onehot, softmask.onehot_maps(test.labels, classes=8, side=8))
    base = float((predicted == test.labels).float().mean())
    assert result.baseline == pytest.approx(base)


def test_same_seed_same_record_other_seed_other_masks():
    bundle = _tiny_bundle()
    train, test = _tiny_split(24, 2), _tiny_split(8, 3)
    first = softmask.run_softmask(bundle, train=train, test=test, seed=5, params=TINY).to_json()
    second = softmask.run_softmask(bundle, train=train, test=test, seed=5, params=TINY).to_json()
    assert first == second
    x, a, y = train.images, torch.zeros(24, 1, 8, 8), train.labels
    one = softmask.fit_mask(bundle.model, x, a, y, params=TINY, seed=1).mask_net.state_dict()
    two = softmask.fit_mask(bundle.model, x, a, y, params=TINY, seed=2).mask_net.state_dict()
    assert not torch.equal(one["mixer.3.weight"], two["mixer.3.weight"])


def test_best_epoch_is_the_first_highest():
    assert softmask.best_epoch([0.1, 0.5, 0.5, 0.3]) == 1
    assert softmask.best_epoch([0.7]) == 0
    with pytest.raises(ParameterError):
        softmask.best_epoch([])


def test_early_stopping_returns_the_best_validation_epochs_weights():
    bundle = _tiny_bundle()
    train = _tiny_split(40, 4)
    a = torch.zeros(40, 1, 8, 8)
    params = softmask.SoftMaskParams(width=2, epochs=4, patience=4, batch_size=8, lr=0.05)
    fit = softmask.fit_mask(bundle.model, train.images, a, train.labels, params=params, seed=3)
    assert len(fit.validation) == 4
    assert fit.best_epoch == softmask.best_epoch(fit.validation)
    val = torch.randperm(40, generator=torch.Generator().manual_seed(3))[:12]  # 30% held out, same draw
    got = softmask.masked_accuracy(bundle.model, fit.mask_net, train.images[val], a[val], train.labels[val])
    assert got == pytest.approx(fit.validation[fit.best_epoch])


def test_params_are_checked():
    with pytest.raises(ParameterError):
        softmask.SoftMaskParams(validation_share=1.0)
    with pytest.raises(ParameterError):
        softmask.SoftMaskParams(epochs=0)


def test_hard_data_set_is_fixed_and_named():
    first, again = data.load("hard", "test", n=16), data.load("hard", "test", n=16)
    assert first.images.shape == (16, 3, 32, 32) and first.images.dtype == torch.float32
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert torch.bincount(first.labels, minlength=8).tolist() == [2] * 8
    train = data.load("hard", "train", n=16)
    assert not torch.equal(train.images, first.images)
    with pytest.raises(UnknownNameError):
        data.load("easy", "test")
    with pytest.raises(ParameterError):
        data.load("hard", "validation")


def test_classifier_is_reproducible_by_seed_and_frozen():
    split = _tiny_split(16, 6)
    one = classifier.train_classifier(split, seed=0, epochs=1, batch_size=8)
    two = classifier.train_classifier(split, seed=0, epochs=1, batch_size=8)
    three = classifier.train_classifier(split, seed=1, epochs=1, batch_size=8)
    assert one.fingerprint == two.fingerprint != three.fingerprint
    assert not any(p.requires_grad for p in one.model.parameters())
    assert not one.model.training
    assert isinstance(one.model.net, nn.Sequential)


def test_mask_sees_a_far_beyond_its_convolutions_reach():
    torch.manual_seed(0)
    net = softmask.SoftMask(width=8).eval()
    x, a = torch.rand(1, 3, 32, 32), torch.randn(1, 1, 32, 32)
    moved = a.clone()
    moved[0, 0, :4] += 3.0  # the rows of one-hot band 0
    with torch.no_grad():
        far = (net(x, moved) - net(x, a))[0, 0, 24:]  # rows more than 7 pixels away
    assert float(far.abs().max()) > 1e-4
