"""The embedded default model: architecture contract, committed weights and card, training."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from torch import nn

from xaicore.data import shapes
from xaicore.errors import ModelNotAvailable, ParameterError
from xaicore.models import default
from xaicore.models.bundle import fingerprint
from xaicore.models.layers import forward_order
from xaicore.models.training import (
    TrainConfig,
    card_markdown,
    derived_seed,
    evaluate,
    init_network,
    predict_logits,
    save_trained,
    train_default_model,
)

# A seed used by no training run and by no card: images the model has never seen.
FRESH_SEED = 20_251_122


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return default_bundle  # shared, read only (tests/conftest.py)


@pytest.fixture(scope="module")
def card():
    return json.loads(default.CARD_PATH.read_text())


# ---------------------------------------------------------------------------- architecture


def test_relu_modules_are_not_inplace_and_each_runs_exactly_once():
    net = default.ShapesNet(len(shapes.CLASSES))
    relus = {name: m for name, m in net.named_modules() if isinstance(m, nn.ReLU)}
    assert len(relus) == 6
    assert not any(m.inplace for m in relus.values())
    assert len({id(m) for m in relus.values()}) == len(relus)
    calls = {name: 0 for name in relus}
    handles = [
        m.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1)) for name, m in relus.items()
    ]
    try:
        net(torch.rand(2, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    assert calls == {name: 1 for name in relus}


def test_forward_is_the_registered_modules_applied_in_order():
    net = init_network(len(shapes.CLASSES), seed=3).eval()
    x = torch.rand(3, 3, 64, 64)
    leaves = [m for m in net.modules() if not list(m.children())]
    y = x
    for module in leaves:
        y = module(y)
    torch.testing.assert_close(y, net(x), rtol=0, atol=0)
    registered = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert forward_order(net, x) == registered
    assert sum(isinstance(m, nn.Linear) for m in leaves) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in leaves) == 4


def test_folding_refuses_a_network_without_what_it_folds():
    net = init_network(len(shapes.CLASSES), seed=4, batch_norm=True).eval()
    net.features.conv2.bias = None
    with pytest.raises(ParameterError, match="conv2 cannot be folded"):
        default.fold_batch_norm(net)


@pytest.mark.parametrize("blocks", [default.BLOCKS, ((8, 8), (16,), (16, 16, 16), (32,))])
def test_folding_batch_norm_keeps_the_function_and_drops_the_layers(blocks, monkeypatch):
    monkeypatch.setattr(default, "BLOCKS", blocks)
    net = init_network(len(shapes.CLASSES), seed=4, batch_norm=True).train()
    convs = [n for n, m in net.features.named_children() if isinstance(m, nn.Conv2d)]
    assert convs == [f"conv{i}" for i in range(1, default.conv_count() + 1)]
    assert [n for n in net.features._modules if n.startswith("pool")] == [f"pool{i}" for i in range(1, len(blocks) + 1)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # move the running statistics away from their defaults
        net(torch.randn(16, 3, 64, 64, generator=generator) * 2 + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator))
    net.eval()
    plain = default.fold_batch_norm(net).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    x = torch.rand(5, 3, 64, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            plain.features.conv1(x), net.features.bn1(net.features.conv1(x)), rtol=1e-4, atol=1e-5
        )


def test_init_network_is_seeded_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a = init_network(8, seed=1)
    b = init_network(8, seed=1)
    c = init_network(8, seed=2)
    assert torch.equal(before, torch.get_rng_state())
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


# ---------------------------------------------------------------------------- committed assets


def test_weights_file_is_small_and_loads_with_weights_only():
    assert default.WEIGHTS_PATH.stat().st_size <= 20 * 1024 * 1024
    state = torch.load(default.WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert set(state) == set(default.ShapesNet(len(shapes.CLASSES)).state_dict())


def test_markdown_card_is_the_machine_readable_card_rendered(card):
    assert (default.ASSETS_DIR / "MODEL_CARD.md").read_text(encoding="utf-8") == card_markdown(card)


def test_bundle_matches_card_and_contract(bundle, card):
    assert bundle.labels == shapes.CLASSES == tuple(card["classes"])
    assert bundle.fingerprint == card["fingerprint"] == fingerprint(bundle.model)
    assert bundle.name == "Default shapes CNN" and bundle.source == "default"
    assert bundle.input_size == (64, 64) and dict(bundle.unavailable) == {}
    assert bundle.cam_layer == "net.features.conv4"
    assert bundle.layers == (
        "net.features.conv1",
        "net.features.conv2",
        "net.features.conv3",
        "net.features.conv4",
        "net.classifier.fc1",
        "net.classifier.fc2",
        "net.classifier.fc3",
    )
    assert not bundle.model.training
    assert torch.allclose(bundle.model.mean.flatten(), torch.tensor(card["mean"]))
    assert card["parameters"] == sum(p.numel() for p in bundle.model.parameters())


def test_accuracy_on_fresh_images_is_at_least_95_percent(bundle, card):
    images, labels = shapes.generate(2000, seed=FRESH_SEED)
    with bundle.lock:
        predicted = predict_logits(bundle.model, images).argmax(dim=1).numpy()
    accuracy = float((predicted == labels).mean())
    assert accuracy >= 0.95
    assert card["evaluation"]["test_accuracy"] >= 0.95
    assert FRESH_SEED not in (card["data"]["test_seed"], card["data"]["scene_test_seed"])


def test_two_most_probable_classes_of_a_scene_are_often_its_objects(bundle):
    # The card records 46.5% on 1,000 scenes; a random pair of the 8 classes would be right
    # 1 time in 28 (3.6%), so 35% shows the model responds to both objects of a scene.
    images, pairs, _ = shapes.generate_scene_arrays(300, seed=FRESH_SEED)
    with bundle.lock:
        top2 = predict_logits(bundle.model, images).topk(2, dim=1).indices.numpy()
    hits = np.all(np.sort(top2, axis=1) == np.sort(pairs, axis=1), axis=1)
    assert hits.mean() >= 0.35


def test_loading_leaves_no_hooks_and_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    b = default.load_default_bundle(device="cpu")
    assert torch.equal(state, torch.get_rng_state())
    for m in b.model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks


# ---------------------------------------------------------------------------- damaged assets


def _use_assets(monkeypatch, folder):
    monkeypatch.setattr(default, "WEIGHTS_PATH", folder / "default_model.pt")
    monkeypatch.setattr(default, "CARD_PATH", folder / "default_model.json")


def _copy_assets(tmp_path):
    (tmp_path / "default_model.pt").write_bytes(default.WEIGHTS_PATH.read_bytes())
    (tmp_path / "default_model.json").write_text(default.CARD_PATH.read_text())


@pytest.mark.parametrize(
    "damage", ["missing weights", "garbage weights", "missing card", "bad card", "wrong fingerprint", "wrong shapes"]
)
def test_damaged_assets_raise_model_not_available_naming_the_fix(tmp_path, monkeypatch, damage):
    _copy_assets(tmp_path)
    weights, card_path = tmp_path / "default_model.pt", tmp_path / "default_model.json"
    if damage == "missing weights":
        weights.unlink()
    elif damage == "garbage weights":
        weights.write_bytes(b"not a checkpoint at all")
    elif damage == "missing card":
        card_path.unlink()
    elif damage == "bad card":
        card_path.write_text("{ not json")
    elif damage == "wrong fingerprint":
        card = json.loads(card_path.read_text())
        card["fingerprint"] = "0" * 64
        card_path.write_text(json.dumps(card))
    else:
        torch.save({"features.conv1.weight": torch.zeros(1)}, weights)
    _use_assets(monkeypatch, tmp_path)
    with pytest.raises(ModelNotAvailable, match="xai train-default"):
        default.load_default_bundle(device="cpu")


# ---------------------------------------------------------------------------- training


TINY = TrainConfig(seed=5, epochs=1, images_per_epoch=192, batch_size=64, test_images=80, test_scenes=40)


@pytest.fixture(scope="module")
def tiny_run():
    return train_default_model(TINY)


def test_training_is_reproducible_and_leaves_global_rngs_alone(tiny_run):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    again = train_default_model(TINY)
    assert torch.equal(torch_state, torch.get_rng_state())
    after = np.random.get_state()
    assert np.array_equal(numpy_state[1], after[1]) and numpy_state[2] == after[2]
    assert again.card["fingerprint"] == tiny_run.card["fingerprint"] == fingerprint(tiny_run.model)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tiny_run.model.modules())


def test_saved_run_loads_as_the_default_bundle(tiny_run, tmp_path, monkeypatch):
    weights, card_path, markdown = save_trained(tiny_run, tmp_path)
    _use_assets(monkeypatch, tmp_path)
    loaded = default.load_default_bundle(device="cpu")
    assert loaded.fingerprint == tiny_run.card["fingerprint"]
    x = torch.rand(4, 3, 64, 64)
    torch.testing.assert_close(loaded.logits(x), tiny_run.model(x).detach())
    text = markdown.read_text()
    assert tiny_run.card["fingerprint"] in text and TINY.command() in text
    assert json.loads(card_path.read_text())["training"]["config"] == TINY.__dict__


def test_training_command_round_trips_through_the_cli():
    from xaicore.cli.main import build_parser

    args = build_parser().parse_args(shlex.split(TINY.command())[1:])
    fields = TINY.__dataclass_fields__
    assert TrainConfig(**{name: getattr(args, name) for name in fields}) == TINY


class _Ranked(nn.Module):
    """Logits that rank the classes in a fixed order whatever the image."""

    def __init__(self, order):
        super().__init__()
        self.scores = nn.Parameter(torch.tensor([float(-order.index(c)) for c in range(len(order))]))

    def forward(self, x):
        return self.scores.expand(len(x), -1)


def test_evaluate_against_a_constant_predictor():
    order = [3, 5, 0, 1, 2, 4, 6, 7]  # always predicts star, then ring
    result = evaluate(_Ranked(order), test_seed=1, scene_test_seed=2, test_images=400, test_scenes=200)
    labels = shapes.generate(400, seed=1)[1]
    pairs = shapes.generate_scene_arrays(200, seed=2)[1]
    assert result.accuracy == pytest.approx(np.mean(labels == 3))
    assert result.per_class_accuracy == {name: float(i == 3) for i, name in enumerate(shapes.CLASSES)}
    expected = np.mean([set(p) == {3, 5} for p in pairs.tolist()])
    assert result.scene_top2_hit_rate == pytest.approx(expected)
    assert result.scene_top1_in_scene == pytest.approx(np.mean((pairs == 3).any(axis=1)))


def test_derived_seeds_are_distinct_per_purpose():
    seeds = {derived_seed(0, k) for k in range(5)} | {
        derived_seed(0, 1, e, b, i) for e in range(3) for b in range(3) for i in range(3)
    }
    assert len(seeds) == 5 + 27


@pytest.mark.parametrize(
    "bad", [{"epochs": 0}, {"seed": -1}, {"scene_fraction": 1.0}, {"lr": 0.0}, {"batch_size": 2.5}]
)
def test_bad_training_config_raises_parameter_error(bad):
    with pytest.raises(ParameterError):
        TrainConfig(**bad)
