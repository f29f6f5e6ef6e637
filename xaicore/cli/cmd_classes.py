"""``xai classes IMAGE``: explain several classes of one image and compare the maps.

Writes ``DIR/classes.json`` with the pairwise SSIM (and Spearman) between each method's class
maps and, when the image has ground-truth object masks (generated scenes), the share of
positive relevance on the asked-for object and on the other object.

``xai classes --scenes N [--scene-seed S]``: the same comparison over ``N`` generated two-object
scenes (:func:`xaicore.checks.discriminative_scenes.discriminativeness_over_scenes`); prints each
method's mean class-map SSIM with its 95% t interval and writes ``DIR/classes_scenes.json``.
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
    p.add_argument(
        "image", nargs="?", default=None, help="image file, or the name of a sample, e.g. 'scene: circle + square'"
    )
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
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        metavar="N",
        help="instead of one image: N generated two-object scenes, summarized by mean SSIM and 95%% interval",
    )
    p.add_argument("--scene-seed", type=int, default=0, help="seed of the generated scenes (with --scenes)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.checks.discriminative import compare_classes
    from xaicore.errors import ParameterError

    if (args.image is None) == (args.scenes is None):
        raise ParameterError("Give either one image (or sample name) or --scenes N, not both and not neither.")
    check_out_dir(args.out)
    if args.scenes is not None:
        return _run_scenes(args)
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


def _run_scenes(args: argparse.Namespace) -> int:
    from xaicore.checks.discriminative_scenes import discriminativeness_over_scenes
    from xaicore.data.shapes import generate_scenes
    from xaicore.errors import ParameterError

    if args.classes:
        raise ParameterError("--classes does not apply to --scenes: each scene's two objects are explained.")
    if args.scenes < 2:
        raise ParameterError("--scenes needs at least 2 scenes for an interval; 200 is a good number.")
    bundle = load_model_arg(args)
    scenes = generate_scenes(args.scenes, seed=args.scene_seed, size=64)  # resized to the model input, as uploads
    result = discriminativeness_over_scenes(
        bundle,
        scenes,
        methods=methods_for(args.methods, bundle),
        seed=args.seed,
        normalization=args.normalization,
        scene_seed=args.scene_seed,
    )
    path = result.save(args.out)
    print(f"{bundle.name}: {result.n_scenes} generated scenes (seed {args.scene_seed}), {result.runtime_s:.1f} s")
    print(f"{'method':<22} {'mean SSIM':>9}  {'95% interval (t)':<18} {'lowest on':>9}")
    for row in result.table():
        ssim = row["ssim"]
        interval = f"[{ssim['low']:.3f}, {ssim['high']:.3f}]"
        print(f"{row['title']:<22} {ssim['mean']:>9.3f}  {interval:<18} {row['lowest_share']:>8.0%}")
    print("lower SSIM between the two class maps: more class-discriminative")
    print(f"wrote {path}")
    return 0
