"""``xai explain IMAGE``: explain one image with several methods and save the results.

Writes ``DIR/attributions.npz`` (one raw (3, H, W) float32 array per method that produced
one, keyed by method name), ``DIR/explain.json`` (predictions, per-method status, reason,
runtime, parameters, CAM layer, convergence delta, baseline, seed, versions, model fingerprint; see
:meth:`ExplainResult.record`) and ``DIR/grid.png`` (every map side by side), then prints a
short table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xaicore.cli.common import add_layer_option, add_model_options, check_out_dir, model_options, read_image_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain one image with several methods; write attributions.npz, explain.json, grid.png",
        description="Explain one image with several explanation methods (see `xai methods`).",
    )
    p.add_argument("image", help="image file, or the name of a sample, e.g. 'shape: star'")
    add_model_options(p)
    p.add_argument("--methods", default="all", help="comma-separated method names or titles, or 'all' (default)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--target", default=None, help="class index or label (default: the predicted class)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic methods (default 0)")
    p.add_argument("--baseline", default="black", help="black, blur, mean or noise (default black)")
    add_layer_option(p)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="override a method parameter, e.g. integrated_gradients.steps=32 (repeatable)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: XAI_DEVICE, else cuda when present)")
    p.set_defaults(func=run)


def parse_value(text: str) -> Any:
    """A command-line value as bool, int, float or string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["m.name=value", ...]`` -> ``{m: {name: value}}``."""
    from xaicore.errors import ParameterError

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not method or not name:
            raise ParameterError(f"--param {item!r} must look like METHOD.NAME=VALUE, e.g. smoothgrad.samples=32.")
        params.setdefault(method, {})[name] = parse_value(value)
    return params


def load_bundle(name: str, device: str | None, **options: Any):
    """The model named ``name`` with the ``load_model`` keyword ``options`` (see :func:`model_options`)."""
    from xaicore.models.loading import load_model

    return load_model(name, device=device, **options)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from xaicore.explainers.api import explain, resolve_methods
    from xaicore.render.heatmaps import grid_image

    check_out_dir(args.out)
    params = parse_params(args.param)
    methods = [spec.name for spec in resolve_methods(args.methods)]
    image = read_image_arg(args.image).array
    bundle = load_bundle(args.model, args.device, **model_options(args))

    def progress(done: int, total: int, title: str) -> None:
        if title:
            print(f"  [{done + 1}/{total}] {title} ...", flush=True)

    result = explain(
        bundle,
        image,
        methods=methods,
        target=args.target,
        seed=args.seed,
        params=params,
        baseline=args.baseline,
        progress=progress,
        layer=args.layer,
    )
    npz, js = result.save(args.out)
    png = Path(args.out) / "grid.png"
    Image.fromarray(grid_image(result)).save(png)
    print(format_table(result.record()))
    print(f"wrote {npz}, {js} and {png}")
    return 0


def format_table(record: dict[str, Any]) -> str:
    """The short summary printed after ``xai explain``."""
    top = record["predictions"][0]
    lines = [
        f"target: {record['target']} ({record['target_label']})   "
        f"top prediction: {top['label']} ({top['probability']:.1%})   baseline: {record['baseline']}",
        f"{'method':<22}{'status':<17}{'ms':>8}  {'complete':>9}  note",
    ]
    for m in record["methods"]:
        note = m["reason"] or (f"shared with {', '.join(m['shared_with'])}" if m["shared_with"] else "")
        lines.append(f"{m['title']:<22}{m['status']:<17}{m['runtime_s'] * 1e3:>8.1f}  {_completeness(m):>9}  {note}")
    if any(m["completeness"] for m in record["methods"]):
        lines.append("complete: |sum of the attributions - reference| / |reference|; the references:")
        complete = [m for m in record["methods"] if m["completeness"]]
        lines.extend(f"  {m['title']}: {m['completeness']['reference']}" for m in complete)
    lines.append(f"total: {record['total_runtime_s']:.2f} s")
    return "\n".join(lines)


def _completeness(method: dict[str, Any]) -> str:
    figures = method["completeness"]
    if not figures:
        return ""
    if figures["relative_error"] is None:
        return f"{figures['error']:.2g} abs"
    return f"{figures['relative_error']:.2%}" + ("!" if figures["above_tolerance"] else "")
