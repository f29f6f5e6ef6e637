"""``xai faithfulness IMAGE``: insertion and deletion curves of explanation methods for one image.

Writes ``DIR/faithfulness.json``: the definition of the curves and AUCs, the parameters, and per
method (plus the random-ranking control) the fractions, the insertion and deletion curves and
both AUCs; methods that produced no usable map are listed with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from xaicore.cli.common import add_layer_option, add_model_options, check_out_dir, load_model_arg, with_layer_arg

DEFAULT_METHODS = "saliency,input_x_gradient,guided_backprop,gradcam,integrated_gradients,deeplift"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "faithfulness",
        help="insertion and deletion curves: how fast the class probability rises or falls with the top pixels",
        description="Faithfulness of heatmaps by insertion and deletion (Petsiuk et al. 2018).",
    )
    p.add_argument("image", help="image file, or the name of a sample (see the dashboard)")
    add_model_options(p)
    add_layer_option(p)
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated method names, or 'all' (default: {DEFAULT_METHODS})",
    )
    p.add_argument("--target", default=None, help="class index or label (default: the predicted class)")
    p.add_argument("--step", type=float, default=0.01, help="curve step as a fraction of the pixels (default 0.01)")
    p.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="end of the curves as a fraction of the pixels (default 1; 0.5 as in ID-ExpO)",
    )
    p.add_argument(
        "--background",
        default="blur",
        choices=("black", "blur", "mean"),
        help="what replaces removed pixels (default blur: black holes read as shapes to the default model)",
    )
    p.add_argument(
        "--baseline", default="black", help="baseline of the explanation methods that need one (default black)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the stochastic methods and of the random control (default 0)"
    )
    p.add_argument(
        "--batch", type=int, default=None, help="masked images per forward pass (default 64 on CPU, 256 on GPU)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.cli.common import methods_for, read_image_arg
    from xaicore.errors import ParameterError
    from xaicore.explainers.api import explain
    from xaicore.explainers.results import Status
    from xaicore.metrics.faithfulness import RANDOM, insertion_deletion

    check_out_dir(args.out)
    image = read_image_arg(args.image)
    bundle = with_layer_arg(load_model_arg(args), args)
    methods = methods_for(args.methods, bundle)
    explained = explain(
        bundle, image.array, methods=methods, target=args.target, seed=args.seed, baseline=args.baseline
    )
    usable = {
        m.method: m.attribution[None] for m in explained.methods if m.status is Status.OK and m.attribution is not None
    }
    skipped = {m.method: m.reason or m.status.value for m in explained.methods if m.status is not Status.OK}
    if not usable:
        raise ParameterError("No method produced a usable map for this image, so there is nothing to measure.")
    result = insertion_deletion(
        bundle,
        bundle.to_input(explained.image),
        usable,
        target=explained.target,
        step_fraction=args.step,
        fraction=args.fraction,
        background=args.background,
        batch_size=args.batch,
        seed=args.seed,
    )
    result = dataclasses.replace(
        result,
        extra={
            "image": image.name,
            "image_hash": explained.image_hash,
            "target_label": explained.target_label,
            "skipped": skipped,
            "explanations": {m.method: m.record() for m in explained.methods},
        },
    )
    path = result.save(args.out)
    print(f"{bundle.name}, {image.name}: class {explained.target_label!r}, {len(result.steps)} points per curve")
    print(f"{'method':<24} {'insertion AUC':>14} {'deletion AUC':>13}")
    for curves in result.curves:
        name = "random (control)" if curves.method == RANDOM else curves.method
        flag = "  (no signal)" if curves.no_signal[0] else ""
        print(f"{name:<24} {curves.insertion_auc[0]:>14.4f} {curves.deletion_auc[0]:>13.4f}{flag}")
    for name, reason in skipped.items():
        print(f"{name:<24} skipped: {reason}")
    print(f"{result.runtime_s:.2f} s; wrote {path}")
    return 0
