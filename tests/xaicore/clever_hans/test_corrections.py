"""P-ClArC, A-ClArC and RRR: targets on the shipped model (fast settings), private copies,
the projection's algebra and RRR's penalty on hand-weighted models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaicore.clever_hans import measures, pclarc, rrr, verify
from xaicore.clever_hans.finetune import FineTune
from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models.bundle import fingerprint


def _outputs(bundle, tests):
    x = torch.from_numpy(tests.stamped.images[:16]).permute(0, 3, 1, 2)
    with torch.no_grad():
        return bundle.model(x)


def test_projection_sets_the_direction_to_the_reference_and_keeps_the_rest():
    v = torch.tensor([0.6, 0.8, 0.0])
    hook = pclarc.Projection(layer="x", direction=v, reference=2.0)
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    out = hook(nn.Identity(), (f,), f)
    assert torch.allclose(out @ v, torch.tensor([2.0, 2.0]))
    # The part orthogonal to v is unchanged: (1, 2, 3) has 2.2 along v.
    assert torch.allclose(out[0], torch.tensor([1.0, 2.0, 3.0]) + (2.0 - 2.2) * v)
    with hook.disabled():
        assert hook(nn.Identity(), (f,), f) is None
    assert hook.enabled


def test_direction_is_the_unit_mean_feature_difference():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64 * 3, 2, bias=False))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0, 0] = 1.0  # reads pixel (0, 0, R): never stamped
        net[1].weight[1, 55 * 64 + 55] = 1.0  # reads pixel (55, 55, R): the stamp's dark centre
    images = np.full((4, 64, 64, 3), 0.5, dtype=np.float32)
    v, z = pclarc.artifact_direction(net, layer="1", images=images)
    assert torch.allclose(v, torch.tensor([0.0, -1.0]))  # the centre goes from 0.5 to 0
    assert z == pytest.approx(-0.5)
    with pytest.raises(UnknownNameError):
        pclarc.artifact_direction(net, layer="nope", images=images)


def test_pclarc_meets_the_targets_on_a_private_copy(hans_bundle, hans_tests, hans_findings):
    before = (hans_bundle.fingerprint, fingerprint(hans_bundle.model), _outputs(hans_bundle, hans_tests))
    correction = verify.correct(hans_bundle, method="p-clarc", direction_images=64)
    found = measures.find(correction.bundle, hans_tests, relevance_images=8)
    assert found.false_class_rate <= 0.15 and found.flip_rate <= 0.30
    assert found.accuracy_clean >= hans_findings.accuracy_clean
    assert verify.is_fixed(found, hans_findings)
    # The shared model is untouched; the copy gives the original back with its hook off.
    assert (hans_bundle.fingerprint, fingerprint(hans_bundle.model)) == before[:2]
    assert torch.equal(_outputs(hans_bundle, hans_tests), before[2])
    assert not hans_bundle.model.get_submodule(pclarc.DEFAULT_LAYER)._forward_hooks
    assert correction.projection is not None
    with correction.projection.disabled():
        assert torch.allclose(_outputs(correction.bundle, hans_tests), before[2], atol=1e-5)
    assert correction.bundle.fingerprint != hans_bundle.fingerprint


def test_aclarc_fast_setting_removes_most_of_the_shortcut(hans_bundle, hans_tests, hans_findings):
    before = fingerprint(hans_bundle.model)
    fast = FineTune(epochs=1, images_per_epoch=512, lr=5e-4)
    correction = verify.correct(hans_bundle, method="a-clarc", settings=fast)
    found = measures.find(correction.bundle, hans_tests, relevance_images=4)
    assert found.false_class_rate <= 0.15
    assert found.flip_rate <= 0.75 * hans_findings.flip_rate  # measured: 38% against 64%
    assert fingerprint(hans_bundle.model) == before
    assert correction.log["epochs_run"] == 1


def test_rrr_penalty_is_the_squared_masked_input_gradient_of_a_linear_model():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    x = torch.tensor([0.5, 0.1, 0.2, 0.0]).view(1, 4, 1, 1)  # four channels, one pixel
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 4, 1, 1)
    model = nn.Sequential(nn.Flatten(), lin)
    logits, penalty = rrr.gradient_penalty(model, x, mask)
    p = F.softmax(logits, dim=1)[0].detach()
    grad = w.sum(0) - 2 * (p @ w)  # d/dx sum_k log p_k = sum_k w_k - C * sum_j p_j w_j
    assert penalty.detach().item() == pytest.approx(float((grad[2:] ** 2).sum()), rel=1e-5)
    penalty.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_rrr_scales_lambda_to_the_cross_entropy_and_keeps_the_best_epoch(hans_bundle):
    before = fingerprint(hans_bundle.model)
    tiny = FineTune(epochs=2, images_per_epoch=64, batch_size=32, lr=1e-4)
    correction = verify.correct(hans_bundle, method="rrr", settings=tiny, validation_images=64)
    log = correction.log
    assert log["lambda"] > 0 and log["epochs_run"] in (1, 2)
    assert log["best_epoch"] == int(np.argmax(log["validation_accuracy"])) + 1
    assert fingerprint(hans_bundle.model) == before
    assert correction.bundle.fingerprint != before


def test_unknown_method_and_bad_settings_are_refused():
    with pytest.raises(ParameterError, match="p-clarc, a-clarc, rrr"):
        verify.correct(None, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="epochs"):
        FineTune(epochs=0)
