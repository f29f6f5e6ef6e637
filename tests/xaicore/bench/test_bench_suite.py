"""The benchmark suite's shared pieces, the bf16 mode's guard rails and the CLI options."""

from __future__ import annotations

import json

import pytest
import torch

from xaicore.bench.common import BenchContext, saturating_floor, workloads
from xaicore.cli.main import main
from xaicore.errors import ParameterError
from xaicore.models.default import load_default_bundle


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return default_bundle  # shared, read only (tests/conftest.py)


def test_every_workload_is_registered() -> None:
    assert {"explain", "sanity", "gax", "faithfulness", "precision", "evaluate"} <= set(workloads())


def test_saturating_floor_is_per_image_and_no_slower_than_batch_one(bundle) -> None:
    floor = saturating_floor(bundle, repeats=1)
    assert floor["batch"] in (1, 4, 16, 64)
    assert floor["forward_s_per_image"] > 0 and floor["forward_backward_s_per_image"] > 0


def test_precision_workload_is_skipped_off_cuda(bundle) -> None:
    ctx = BenchContext(bundle=bundle, device=torch.device("cpu"), batch=2, repeats=1)
    assert workloads()["precision"].run(ctx) == {"skipped": "the bf16 mode needs a CUDA GPU"}


def test_bf16_needs_cuda_and_float32_is_the_same_bundle(bundle) -> None:
    assert bundle.precision == "float32"
    assert bundle.with_precision("float32") is bundle
    with pytest.raises(ParameterError, match="CUDA"):
        bundle.with_precision("bf16")
    with pytest.raises(ParameterError, match="float32"):
        bundle.with_precision("fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_shares_weights_and_returns_float32_logits() -> None:
    full = load_default_bundle(device="cuda")
    half = full.with_precision("bf16")
    assert half.model.net is full.model.net and half.lock is full.lock and half.name.endswith("[bf16]")
    x = torch.rand(2, 3, 64, 64, device="cuda")
    logits = half.logits(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, full.logits(x), rtol=0.05, atol=0.05)
    assert half.with_precision("float32").precision == "float32"


def test_cli_refuses_bf16_on_the_cpu_in_plain_words(capsys) -> None:
    code = main(["bench", "precision", "--device", "cpu", "--precision", "bf16"])
    assert code != 0
    err = capsys.readouterr().err
    assert "bf16 mode needs a CUDA GPU" in err and "Traceback" not in err


def test_cli_writes_the_precision_record_with_device_and_floor(tmp_path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "precision", "--device", "cpu", "--repeats", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["precision"] == "float32" and record["device"].startswith("CPU")
    assert record["floor"]["saturating"]["forward_backward_s_per_image"] > 0
    assert record["workloads"]["precision"] == {"skipped": "the bf16 mode needs a CUDA GPU"}


def test_cli_refuses_zero_reference_seeds(capsys) -> None:
    assert main(["bench", "sanity", "--device", "cpu", "--reference-seeds", "0"]) != 0
    assert "--reference-seeds must be at least 1" in capsys.readouterr().err
