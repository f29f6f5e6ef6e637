"""``xai gax IMAGE``: optimize a GAX heatmap that raises the model's confidence in a class.

Writes ``DIR/gax.json`` (CO score per step, the step reached, whether the target was reached,
final logits, parameters, provenance) and ``DIR/gax_history.npz`` (the heatmap of every stored
step, int8 with the scale in ``scale``; see :mod:`xaicore.confidence.gax`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xaicore.cli.common import add_model_options, check_out_dir, load_model_arg


def register(sub: argparse._SubParsersAction) -> None:
    from xaicore.confidence.gax import MAX_STEPS

    p = sub.add_parser(
        "gax",
        help="optimize a heatmap h = tanh(w x + b) until the CO score reaches a target (GAX)",
        description="GAX (Tjoa et al.): Adam on -CO + l_s / similarity until the CO score reaches the target.",
    )
    p.add_argument("image", help="image file, or the name of a sample (see the dashboard)")
    add_model_options(p)
    p.add_argument("--target-class", default=None, help="class index or label (default: the predicted class)")
    p.add_argument("--target-co", type=float, default=48.0, help="CO score at which to stop (default 48)")
    p.add_argument("--max-steps", type=int, default=300, help=f"step cap, at most {MAX_STEPS} (default 300)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--l-s", type=float, default=100.0, help="weight of the similarity term (default 100)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.cli.common import read_image_arg
    from xaicore.confidence.gax import run_gax

    check_out_dir(args.out)
    image = read_image_arg(args.image)
    bundle = load_model_arg(args)

    def progress(step: int, total: int, co) -> None:
        print(f"\rstep {step} of at most {total}: CO {float(co[0]):.2f}", end="", file=sys.stderr, flush=True)

    result = run_gax(
        bundle,
        image.array,
        target=args.target_class,
        target_co=args.target_co,
        max_steps=args.max_steps,
        lr=args.lr,
        l_s=args.l_s,
        progress=progress,
    )
    print(file=sys.stderr)
    one = result[0]
    json_path, npz_path = result.save(args.out)
    for notice in result.notices:
        print(f"note: {notice}")
    outcome = (
        f"reached CO {args.target_co:g} at step {one.steps}"
        if one.reached
        else (f"did not reach CO {args.target_co:g} within {one.steps} steps")
    )
    print(
        f"{image.name}: class {one.target} ({one.target_label}) {outcome}; final CO {one.final_co:.2f} "
        f"in {result.runtime_s:.2f} s"
    )
    print(f"wrote {json_path} and {npz_path}")
    return 0
