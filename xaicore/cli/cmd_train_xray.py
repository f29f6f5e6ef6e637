"""``xai train-xray``: train the grayscale X-ray teaching model and write its weights and cards."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from xaicore.models.xray import ASSETS_DIR
    from xaicore.models.xray_training import XrayTrainConfig

    p = sub.add_parser(
        "train-xray",
        help="train the grayscale X-ray teaching CNN on generated chest-like images (about 3 minutes on a 2-core CPU)",
        description="Train the one-channel X-ray teaching CNN reproducibly and write xray_model.pt, "
        "xray_model.json and XRAY_MODEL_CARD.md.",
    )
    p.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"output folder (default: {ASSETS_DIR})")
    for f in dataclasses.fields(XrayTrainConfig):
        p.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"default: {f.default}"
        )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from xaicore.errors import ParameterError
    from xaicore.models.xray_training import XrayTrainConfig, save_trained, train_xray_model

    if args.threads is not None:
        if args.threads < 1:
            raise ParameterError("--threads must be at least 1.")
        torch.set_num_threads(args.threads)
    config = XrayTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(XrayTrainConfig)})
    print(f"training with: {config.command()}", flush=True)
    result = train_xray_model(config, device=args.device, progress=lambda line: print(line, flush=True))
    for path in save_trained(result, args.out):
        print(f"wrote {path}")
    ev = result.evaluation
    print(f"test accuracy {ev.accuracy:.2%} on {ev.test_images} fresh images")
    return 0
