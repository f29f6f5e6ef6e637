"""``xai sanity IMAGE``: layer-randomization sanity check of explanation methods.

Writes ``DIR/sanity.json`` (per method: ordered layers, per-seed SSIM and Spearman on absolute
and signed maps, mean, std, verdict) and, with ``--save-maps``, ``DIR/sanity_maps.npz`` with
every compared map after the stated normalization.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xaicore.cli.common import (
    add_layer_option,
    add_model_options,
    check_out_dir,
    load_model_arg,
    methods_for,
    read_image_arg,
    with_layer_arg,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sanity",
        help="randomize the model layer by layer and measure how much each explanation changes",
        description="Sanity check by model-parameter randomization (Adebayo et al. 2018).",
    )
    p.add_argument("image", help="image file, or the name of a sample (see the dashboard), e.g. 'shape: star'")
    add_model_options(p)
    add_layer_option(p)
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated method names, or 'all' (default: the single-pass methods, see `xai methods`)",
    )
    p.add_argument("--mode", default="cascading", choices=("cascading", "independent", "both"))
    p.add_argument(
        "--seeds", type=int, default=5, help="number of randomization seeds (0 .. K-1; default 5, at most 100)"
    )
    p.add_argument("--target", default=None, help="class index or label (default: the predicted class)")
    p.add_argument("--target-policy", default="original", choices=("original", "randomized_prediction"))
    p.add_argument("--normalization", default="abs", help="normalization of the absolute maps: abs or abs_channel_max")
    p.add_argument("--threshold", type=float, default=0.9, help="SSIM at or above which a method fails (default 0.9)")
    p.add_argument("--save-maps", action="store_true", help="also write sanity_maps.npz with every compared map")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.checks.sanity import MAX_SEEDS, run_sanity
    from xaicore.errors import ParameterError

    if args.seeds < 1:
        raise ParameterError("--seeds must be at least 1.")
    if args.seeds > MAX_SEEDS:
        raise ParameterError(
            f"--seeds {args.seeds:,} is over the cap of {MAX_SEEDS} seeds; 5 to 10 already show the spread."
        )
    check_out_dir(args.out)
    image = read_image_arg(args.image)
    bundle = with_layer_arg(load_model_arg(args), args)
    methods = methods_for(args.methods, bundle)

    def progress(done: int, total: int, message: str) -> None:
        print(f"\r[{done}/{total}] {message[:70]:<70}", end="", file=sys.stderr, flush=True)

    result = run_sanity(
        bundle,
        image.array,
        methods=methods,
        mode=args.mode,
        seeds=tuple(range(args.seeds)),
        target=args.target,
        target_policy=args.target_policy,
        normalization=args.normalization,
        threshold=args.threshold,
        keep_maps="all" if args.save_maps else "none",
        progress=progress,
    )
    print(file=sys.stderr)
    paths = result.save(args.out, save_maps=args.save_maps)
    label = result.labels[int(result.targets[0])]
    print(
        f"{bundle.name}, {image.name}: explaining class {label!r}; {len(result.layers)} layers, "
        f"seeds 0..{args.seeds - 1}"
    )
    print(f"{'method':<26} {'SSIM after output layer':>24}  verdict")
    for title, verdict in zip(result.titles, result.verdicts, strict=True):
        print(f"{title:<26} {verdict.value:>24.3f}  {verdict.status}")
    print(f"{result.runtime_s:.1f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0
