"""``xai improve softmask``: explanations that improve models, measured over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

LABELS = {
    "true_ig": "(a) IG of the true class",
    "predicted_ig": "(b) IG of the predicted class",
    "zero": "(c) A = 0",
    "onehot": "(d) one-hot label image",
    "baseline": "baseline C",
    "gain_predicted_minus_zero": "(b) - (c)",
}


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"seeds are integers separated by commas; got {text!r}") from exc
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"give one or more non-negative seeds; got {text!r}")
    return seeds


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("improve", help="explanations that improve models (IG soft-masking)")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    soft = actions.add_parser(
        "softmask",
        help="IG soft-masking with four test protocols, over seeds",
        description="Train a small classifier and IG soft-masking networks per seed; print and write the "
        "test accuracy of the four protocols and the baseline with 95% intervals over seeds.",
    )
    soft.add_argument("--data", default="hard", choices=["hard"], help="the named data set (default: hard)")
    soft.add_argument("--preset", default="cpu", choices=["cpu", "gpu"], help="how much training (default: cpu)")
    soft.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds (default: 0,1,2)")
    soft.add_argument("--out", type=Path, required=True, help="output folder for softmask_table.json")
    soft.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    soft.set_defaults(func=run_softmask)


def run_softmask(args: argparse.Namespace) -> int:
    import torch

    from xaicore.errors import ParameterError
    from xaicore.improve.experiment import run_seeds

    if args.threads < 1:
        raise ParameterError("--threads must be at least 1.")
    torch.set_num_threads(args.threads)
    table = run_seeds(name=args.data, preset=args.preset, seeds=args.seeds, progress=lambda s: print(s, flush=True))
    from xaicore.metrics.intervals import Interval

    for key, row in table.summary().items():
        print(f"{LABELS[key]:32s} {Interval(**row).text(3)}")
    print(f"ordering (d) >= (a) > (b) >= (c) >= baseline: {'holds' if table.ordering_holds() else 'does not hold'}")
    print(f"wrote {table.save(args.out)}")
    return 0
