"""The inference copy of :mod:`xaicore.models.inference`: cached per model and weights, refused where
it would not give the plain model's outputs, and its CPU worker threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tests.helpers.maps import attribution_maps as _maps
from tests.helpers.sanity_fixtures import seeded_weights, tiny_bundle
from xaicore.metrics.faithfulness import RANDOM, insertion_deletion
from xaicore.models import inference
from xaicore.models.default import load_default_bundle
from xaicore.models.inference import clear_inference_copies, inference_copy

TOLERANCE = 1e-5


def test_inference_copy_is_cached_per_model_and_remade_when_weights_change():
    clear_inference_copies()
    bundle = tiny_bundle(seed=7, size=16)
    net = bundle.model.net
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.softmax(net(x), dim=1)
    copy = inference_copy(net, x[:1], x, expected)
    assert copy is not None
    assert inference_copy(net, x[:1], x, expected) is copy
    with torch.no_grad():
        net.conv1.weight.mul_(2.0)  # in place: the copy must not serve the old weights
        changed = torch.softmax(net(x), dim=1)
    remade = inference_copy(net, x[:1], x, changed)
    assert remade is not None and remade is not copy
    with torch.no_grad():
        assert (torch.softmax(remade(x), dim=1) - changed).abs().max() <= TOLERANCE
    net.train()
    assert inference_copy(net, x[:1], x, changed) is None  # training mode: batch statistics
    net.eval()
    # a copy that disagrees with the plain model's output is refused
    assert inference_copy(seeded_weights(type(net)(3), 9).eval(), x[:1], x, changed) is None


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_worker_threads_give_the_same_curves_and_leave_the_thread_count(monkeypatch, workers):
    bundle = load_default_bundle(device="cpu")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(12))
    maps = _maps(2, 64, seed=13)
    plain = insertion_deletion(bundle, images, maps, target=[1, 2], step_fraction=0.1, optimize=False)
    threads = torch.get_num_threads()
    monkeypatch.setattr(inference, "CPU_WORKERS", workers)
    result = insertion_deletion(bundle, images, maps, target=[1, 2], step_fraction=0.1, batch_size=12)
    assert torch.get_num_threads() == threads
    seen: list[int] = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [threads]  # threads started afterwards get the process's count, not the workers'
    used = result.params["cpu_workers"]
    assert used == min(workers, threads)
    if used > 1:  # each worker keeps its share of the threads (set once, not overwritten lazily)
        pool = inference.worker_pool(used, threads // used)
        counts = [f.result() for f in [pool.submit(torch.get_num_threads) for _ in range(2 * used)]]
        assert counts == [threads // used] * (2 * used)
    for name in (*maps, RANDOM):
        np.testing.assert_allclose(result.get(name).insertion, plain.get(name).insertion, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(result.get(name).deletion, plain.get(name).deletion, atol=TOLERANCE, rtol=0)
