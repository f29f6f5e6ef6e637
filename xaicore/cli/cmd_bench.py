"""``xai bench [explain|sanity|gax|faithfulness|evaluate|all]``: print benchmark figures."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import torch

from xaicore.cli.common import add_model_options, check_out_file, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure workloads against the model's floor and a plain reference")
    p.add_argument(
        "workload", nargs="?", default="all", help="explain, sanity, gax, faithfulness, evaluate (local vs Ray) or all"
    )
    add_model_options(p)
    p.add_argument("--device", default=None, help="cpu or cuda (default: XAI_DEVICE, else cuda when present)")
    p.add_argument("--batch", type=int, default=16, help="batch size for the floor and batched workloads")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per figure (best is kept)")
    p.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bf16"),
        help="compute precision of every workload (bf16: CUDA only, see the precision workload)",
    )
    p.add_argument(
        "--reference-seeds",
        type=int,
        default=None,
        help="sanity: run the slow plain reference on the first K seeds only (the speed-up "
        "then compares the same K seeds)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write all figures to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.bench.common import BenchContext, device_name, pass_time, saturating_floor, workloads
    from xaicore.errors import ParameterError
    from xaicore.models import loading
    from xaicore.runtime.device import default_device
    from xaicore.runtime.provenance import library_versions

    device = torch.device(args.device) if args.device else default_device()
    found = workloads()
    names = list(found) if args.workload == "all" else [args.workload]
    for name in names:
        if name not in found:
            raise ParameterError(f"No benchmark named {name!r}; choose from {', '.join(found)} or all.")
    check_out_file(args.out)
    bundle = loading.load_model(args.model, device=device, **model_options(args)).with_precision(args.precision)
    if args.reference_seeds is not None and args.reference_seeds < 1:
        raise ParameterError("--reference-seeds must be at least 1.")
    floor = saturating_floor(bundle, repeats=args.repeats)
    ctx = BenchContext(
        bundle=bundle,
        device=device,
        batch=args.batch,
        repeats=args.repeats,
        reference_seeds=args.reference_seeds,
        floor=floor,
    )
    report: dict[str, Any] = {
        "device": device_name(device),
        "model": bundle.name,
        "precision": bundle.precision,
        "date": dt.date.today().isoformat(),
        "versions": library_versions(),
        "floor": {
            "saturating": floor,
            "batch_1": pass_time(bundle, batch=1),
            f"batch_{args.batch}": pass_time(bundle, batch=args.batch),
        },
        "workloads": {},
    }
    print(f"device: {report['device']}   model: {bundle.name}")
    print(
        f"floor (batch 1): forward+backward {report['floor']['batch_1']['forward_backward_s'] * 1e3:.2f} ms, "
        f"forward {report['floor']['batch_1']['forward_s'] * 1e3:.2f} ms"
    )
    print(
        f"floor (saturating, batch {floor['batch']}): forward+backward "
        f"{floor['forward_backward_s_per_image'] * 1e3:.3f} ms/image, "
        f"forward {floor['forward_s_per_image'] * 1e3:.3f} ms/image"
    )
    for name in names:
        print(f"\n== {name}: {found[name].description}")
        figures = found[name].run(ctx)
        report["workloads"][name] = figures
        _print_figures(figures)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.out}")
    return 0


def _print_figures(figures: dict, indent: str = "  ") -> None:
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_figures(value, indent + "  ")
        elif isinstance(value, float):
            print(f"{indent}{key}: {value:.4g}")
        else:
            print(f"{indent}{key}: {value}")
