"""``xai models``: list the loadable models and whether their weights are on this machine."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models (name, description, offline availability)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument(
        "--show",
        metavar="NAME",
        default=None,
        help="load one model and show its classes, layers (the CAM layers among them) and the methods "
        "unavailable for it",
    )
    p.add_argument(
        "--random",
        "--random-weights",
        dest="random",
        action="store_true",
        help="with --show: random weights (torchvision models)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.models.loading import list_models

    if args.show:
        return _show(args.show, random=args.random)
    infos = list_models()
    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return 0
    width = max(len(info.name) for info in infos)
    print(f"{'name':<{width}}  {'kind':<11}  {'weights here':<12}  description")
    for info in infos:
        here = "yes" if info.weights_available else "no"
        print(f"{info.name:<{width}}  {info.kind:<11}  {here:<12}  {info.description}")
    missing = [info for info in infos if not info.weights_available and info.kind == "torchvision"]
    if missing:
        print(
            "\nTorchvision weights marked 'no' are downloaded on first use when online (not with XAI_OFFLINE=1),"
            "\nor can be copied to the listed location; weights=None (--random) always works."
        )
    return 0


def _show(name: str, *, random: bool) -> int:
    from xaicore.models.loading import describe_unavailable, load_model

    bundle = load_model(name, weights=None if random else "default")
    print(f"{bundle.name}  [{bundle.source}]")
    print(f"fingerprint: {bundle.fingerprint}")
    print(
        f"input: {bundle.input_size[0]}x{bundle.input_size[1]}  classes: {bundle.num_classes} "
        f"({', '.join(bundle.labels[:5])}{', ...' if bundle.num_classes > 5 else ''})"
    )
    print(f"CAM layer: {bundle.cam_layer}  randomizable layers: {len(bundle.layers)}")
    print("layers the CAM methods can use (--layer), in forward order: channels x height x width of the output")
    for layer in bundle.cam_layers():
        channels, height, width = bundle.cam_layer_shape(layer)  # type: ignore[misc]
        mark = "  (default)" if layer == bundle.cam_layer else ""
        print(f"  {layer}  {channels}x{height}x{width}{mark}")
    print("unavailable methods:")
    for line in describe_unavailable(bundle).splitlines():
        print(f"  {line}")
    return 0
