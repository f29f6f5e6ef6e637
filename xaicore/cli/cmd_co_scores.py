"""``xai co-scores DATA``: CO scores of explainers' AX heatmaps over an image set.

DATA is a folder or a zip of images (labels from sub-folder names matched to the model's
classes), ``generated:N`` for N generated shape images (the default model's classes), or
``generated-hard:N`` for harder ones on which the default model gets some wrong (so that the
gap between correct and wrong predictions can be measured). Generated labels are kept for any
model whose classes have the same names (ignoring case, spaces, ``-`` and ``_``).
Writes ``DIR/co_scores.csv`` (image, method, variant, CO, predicted, true, correct, status) and
``DIR/co_scores.json`` (per method and variant the gap between correctly and wrongly predicted
images, parameters, provenance).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xaicore.cli.common import add_model_options, check_out_dir, load_model_arg

DEFAULT_METHODS = "saliency,input_x_gradient,gradcam,guided_backprop"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "co-scores",
        help="CO scores of explainers' heatmaps added to the images (AX), correct vs wrong predictions",
        description="AX process (Tjoa et al.): add each method's normalized heatmap to the image and score it.",
    )
    p.add_argument("data", help="folder, zip file, generated:N or generated-hard:N")
    add_model_options(p)
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated method names, or 'all' (default: {DEFAULT_METHODS})",
    )
    p.add_argument("--variants", default="x+h,x*h", help="AX variants, x+h and/or x*h (default both)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images of a folder or zip")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the generated set and of stochastic methods (default 0)"
    )
    p.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def read_image_set(data: str, bundle, *, seed: int, limit: int | None):
    """The image set named by DATA (see the module docstring)."""
    from xaicore.data.imagesets import HARD_DIFFICULTY, generated_test_set, load_image_set, relabel
    from xaicore.errors import ParameterError

    kind, _, count = data.partition(":")
    if kind in ("generated", "generated-hard") and _:
        if not count.isdigit() or int(count) < 1:
            raise ParameterError(f"Write {kind}:N with N a positive whole number, e.g. {kind}:64.")
        difficulty = HARD_DIFFICULTY if kind == "generated-hard" else 0.0
        image_set = relabel(generated_test_set(int(count), seed=seed, difficulty=difficulty), bundle.labels)
        if all(item.label is None for item in image_set.items):
            raise ParameterError(
                "The generated set is labelled with the default model's shape classes, and this model has none of "
                "them; use it with --model default (or a model with classes named like the shapes), or give a "
                "folder or zip of your own images."
            )
        return image_set
    return load_image_set(data, class_names=bundle.labels, limit=limit, preprocess=bundle.preprocess)


def run(args: argparse.Namespace) -> int:
    from xaicore.cli.common import methods_for
    from xaicore.confidence.co_sets import co_scores

    check_out_dir(args.out)
    bundle = load_model_arg(args)
    image_set = read_image_set(args.data, bundle, seed=args.seed, limit=args.limit)
    for notice in getattr(image_set, "notices", ()):
        print(f"note: {notice}")
    methods = methods_for(args.methods, bundle)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())

    def progress(done: int, total: int, method: str) -> None:
        print(f"\r{done} of {total} image-methods ({method})", end="", file=sys.stderr, flush=True)

    result = co_scores(
        bundle, image_set, methods=methods, variants=variants, seed=args.seed, batch_size=args.batch, progress=progress
    )
    print(file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = args.out / "co_scores.csv", args.out / "co_scores.json"
    result.write_csv(csv_path)
    json_path.write_text(json.dumps(result.record(), indent=2))
    for method, reason in result.skipped.items():
        print(f"skipped {method}: {reason}")
    print(f"{'method':<22}{'variant':<8}{'correct':>8}{'wrong':>7}{'mean gap':>11}{'median gap':>12}")
    for gap in result.gaps:
        if gap.method in result.skipped:
            continue
        mean = "n/a" if gap.mean_gap is None else f"{gap.mean_gap:.3f}"
        median = "n/a" if gap.median_gap is None else f"{gap.median_gap:.3f}"
        print(f"{gap.method:<22}{gap.variant:<8}{gap.n_correct:>8}{gap.n_wrong:>7}{mean:>11}{median:>12}")
    print(f"wrote {csv_path} and {json_path}")
    return 0
