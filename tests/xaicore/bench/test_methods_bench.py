"""The explain benchmark: discovered by ``xai bench``, and every fast path equals its plain reference."""

from __future__ import annotations

import torch

from tests.helpers.explain_models import tiny_bundle
from xaicore.bench.common import BenchContext, workloads
from xaicore.explainers.registry import list_methods, single_pass_methods


def test_explain_workload_runs_and_every_method_equals_its_reference() -> None:
    workload = workloads()["explain"]
    bundle = tiny_bundle(seed=5, unavailable={"deconvolution": "not on this model"})
    figures = workload.run(BenchContext(bundle=bundle, device=torch.device("cpu"), batch=2, repeats=1))
    methods = figures["methods"]
    assert list(methods) == [m for m in list_methods() if m != "deconvolution"]
    for name, entry in methods.items():
        assert entry["equal"] is True, name
        assert entry["s"] > 0 and entry["passes"] == entry["s"] / figures["pass_s"]
    assert figures["all_methods_s"] > 0 and figures["speedup_all"] > 0
    copy = figures["occlusion_inference_copy"]  # Occlusion with and without the inference copy
    assert copy["copy_used"] is True and copy["speedup"] == copy["plain_s"] / copy["copy_s"]
    assert copy["first_call_s"] > 0 and copy["threads"] == torch.get_num_threads()
    batched = figures["single_pass_floor_units_batch_2"]
    shared = {m for m in single_pass_methods() if m != "deconvolution"}
    assert len(shared) == 8 and set(batched) == shared
    assert set(figures["targets"]) == {
        "all_methods_within_3s",
        "single_pass_tiles_within_2s",
        "single_pass_within_1.5_passes",
    }
    tiles = figures["time_to_tiles"]
    available = [m for m in list_methods() if m != "deconvolution"]
    assert sorted(tiles["order"]) == sorted(available)  # every tile arrives once
    assert set(tiles["order"][: len(shared)]) == shared  # the shared pass first
    assert 0 < tiles["estimate_s"] <= tiles["first_tile_s"] <= tiles["single_pass_tiles_s"] <= tiles["all_tiles_s"]
    assert tiles["automatic_tiles_s"] <= tiles["all_tiles_s"] and set(tiles["automatic_methods"]) <= set(available)
