"""``xai classes IMAGE``: explain several classes of one image and compare the maps.

Writes ``DIR/classes.json`` with the pairwise SSIM (and Spearman) between each method's class
maps and, when the image has ground-truth object masks (generated scenes), the share of
positive relevance on the asked-for object and on the other object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

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
        "classes",
        help="explain two or more classes of one image and measure how alike the maps are",
        description="Class-discriminativeness: a useful method highlights only the object of the class asked for.",
    )
    p.add_argument("image", help="image file, or the name of a sample, e.g. 'scene: circle + square'")
    add_model_options(p)
    add_layer_option(p)
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated class labels or indices (default: the scene's objects, else the two most probable)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated method names, or 'all' (default: the single-pass methods, see `xai methods`)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic methods")
    p.add_argument(
        "--normalization", default="abs", help="normalization of the maps before SSIM: abs or abs_channel_max"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.checks.discriminative import compare_classes

    check_out_dir(args.out)
    image = read_image_arg(args.image)
    bundle = with_layer_arg(load_model_arg(args), args)
    methods = methods_for(args.methods, bundle)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    result = compare_classes(
        bundle,
        image.array,
        methods=methods,
        classes=classes,
        masks=image.masks,
        mask_labels=image.mask_labels,
        seed=args.seed,
        normalization=args.normalization,
    )
    path = result.save(args.out)
    print(f"{bundle.name}, {image.name}: classes {', '.join(result.class_labels)}")
    header = f"{'method':<26} {'SSIM between maps':>18}"
    if result.on_object is not None:
        header += f" {'relevance on asked object':>26}"
    print(header)
    for k, method in enumerate(result.methods):
        line = f"{result.titles[k]:<26} {result.pair_ssim(method):>18.3f}"
        if result.on_object is not None:
            line += f" {float(np.nanmean(result.on_object[k])):>26.2f}"
        print(line)
    print(f"wrote {path}")
    return 0
