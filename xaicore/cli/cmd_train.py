"""``xai train-default``: train the embedded default model and write its weights and card."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from xaicore.models.default import ASSETS_DIR
    from xaicore.models.training import TrainConfig

    p = sub.add_parser(
        "train-default",
        help="train the default shapes CNN on freshly generated images "
        "(about 2 minutes on a 2-core CPU, 22 s on a GPU)",
        description="Train the default shapes CNN reproducibly and write default_model.pt, "
        "default_model.json and MODEL_CARD.md.",
    )
    p.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"output folder (default: {ASSETS_DIR})")
    for f in dataclasses.fields(TrainConfig):
        p.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"default: {f.default}"
        )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda (default: cpu). Deterministic kernels on both: the same device type "
        "and versions give the same weights (the committed ones: cuda, see the card)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from xaicore.errors import ParameterError
    from xaicore.models.training import TrainConfig, save_trained, train_default_model

    if args.threads is not None:
        if args.threads < 1:
            raise ParameterError("--threads must be at least 1.")
        torch.set_num_threads(args.threads)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    print(f"training with: {config.command()}", flush=True)
    result = train_default_model(config, device=args.device, progress=lambda line: print(line, flush=True))
    paths = save_trained(result, args.out)
    ev = result.evaluation
    print(
        f"test accuracy {ev.accuracy:.2%} on {ev.test_images} fresh images; "
        f"scene top-2 hit rate {ev.scene_top2_hit_rate:.1%} on {ev.test_scenes} scenes"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0
