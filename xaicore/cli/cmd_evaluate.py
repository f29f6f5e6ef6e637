"""``xai evaluate DATA``: explanation methods scored over a set of images, resumably.

Writes into ``--out DIR``: ``settings.json``, ``rows.jsonl`` (one row per image and method,
appended as each batch of images finishes), and at the end ``summary.json`` / ``summary.csv``
(per method: mean and 95% interval of every metric, and the difference from the random
control), ``rows.csv``, and the report card ``report.json`` / ``report.md``. Rerun on the same
DIR with the same settings to continue an interrupted run; other settings are refused (see
:mod:`xaicore.evaluation.store`). ``--sanity``, ``--classes`` and ``--co`` add the results of
``xai sanity``, ``xai classes`` and ``xai co-scores`` to the report card.

``--engine ray`` computes the same rows on a pool of Ray actors (:mod:`xaicore.evaluation.ray_engine`):
a private local Ray by default, or the cluster named by ``--address`` (``auto`` or ``HOST:PORT``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from xaicore.cli.common import add_model_options, check_out_dir, load_model_arg

DEFAULT_METRICS = "insertion,deletion,pointing,mass,rank,runtime"
BAR_WIDTH = 30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score explanation methods over a set of images (faithfulness, localization, runtime)",
        description="Data-set evaluation with resumable output and a report card.",
    )
    p.add_argument(
        "data",
        help="a folder or zip of images (labels from sub-folders, <stem>.mask.png masks), "
        "generated:N[:SEED], generated-hard:N[:SEED] (harder shapes), scenes:N[:SEED] "
        "(with object masks) or samples",
    )
    add_model_options(p)
    p.add_argument(
        "--methods", default=None, help="comma-separated method names, or 'all' (default: the single-pass methods)"
    )
    p.add_argument("--metrics", default=DEFAULT_METRICS, help=f"comma-separated subset of {DEFAULT_METRICS}")
    p.add_argument(
        "--target",
        default="label",
        choices=("label", "predicted"),
        help="explain the true class when known (label, default) or always the predicted class",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic methods and the random control (default 0)")
    p.add_argument("--baseline", default="black", help="baseline of the methods that need one (default black)")
    p.add_argument(
        "--step", type=float, default=0.01, help="insertion/deletion step as a fraction of the pixels (default 0.01)"
    )
    p.add_argument(
        "--fraction", type=float, default=1.0, help="end of the curves as a fraction of the pixels (default 1)"
    )
    p.add_argument(
        "--background", default="black", choices=("black", "blur", "mean"), help="what replaces removed pixels"
    )
    p.add_argument("--batch", type=int, default=8, help="images per batch; rows are written batch by batch (default 8)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--sanity", type=Path, default=None, help="sanity.json of `xai sanity`, added to the report card")
    p.add_argument("--classes", type=Path, default=None, help="classes.json of `xai classes`, added to the report card")
    p.add_argument("--co", type=Path, default=None, help="CSV rows of `xai co-scores`, added to the report card")
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun on it to resume)")
    ray = p.add_argument_group("engine", "where the rows are computed (the same rows either way)")
    ray.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: in this process (default); ray: a pool of Ray actors that each load the model once",
    )
    ray.add_argument(
        "--address",
        default=None,
        help="with --engine ray: 'auto' (the cluster this machine is part of) or HOST:PORT of a cluster's head; "
        "default: start a local Ray for this run",
    )
    ray.add_argument(
        "--actors",
        type=int,
        default=None,
        help="with --engine ray: actors in the pool (default: one per GPU of the cluster, else one per CPU)",
    )
    p.set_defaults(func=run)


def default_methods() -> list[str]:
    """The single-pass methods of the registry: their maps come out of one shared gradient pass."""
    from xaicore.explainers.registry import single_pass_methods

    return single_pass_methods()


class ProgressBar:
    """A one-line text bar on ``stream``, redrawn in place: ``[#####.....] 3/6 images  message``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.drawn = False

    def __call__(self, done: int, total: int, message: str) -> None:
        filled = int(BAR_WIDTH * done / total) if total else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} images  {message[:50]:<50}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def read_json(path: Path, what: str) -> dict[str, Any]:
    from xaicore.errors import ParameterError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"The {what} file {str(path)!r} cannot be read as JSON.") from exc


def read_co_rows(path: Path) -> list[dict[str, str]]:
    from xaicore.errors import ParameterError

    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ParameterError(f"The CO-score file {str(path)!r} cannot be read as CSV.") from exc
    if rows and not {"method", "variant", "co", "correct"} <= set(rows[0]):
        raise ParameterError(f"{str(path)!r} lacks the columns method, variant, co and correct of `xai co-scores`.")
    return rows


def run(args: argparse.Namespace) -> int:
    from xaicore.cli.common import parse_methods
    from xaicore.data.evalsets import parse_data
    from xaicore.evaluation.report import build_report
    from xaicore.evaluation.rows import make_settings
    from xaicore.evaluation.store import evaluate_in_folder

    check_out_dir(args.out)
    engine = _engine(args)
    bundle = load_model_arg(args)
    image_set = parse_data(args.data, class_names=bundle.labels, preprocess=bundle.preprocess, limit=args.limit)
    for notice in image_set.notices:
        print(f"note: {notice}", file=sys.stderr)
    methods = default_methods() if args.methods is None else parse_methods(args.methods)
    settings = make_settings(
        bundle,
        image_set,
        methods=methods,
        metrics=args.metrics,
        data=str(args.data),
        target=args.target,
        seed=args.seed,
        baseline=args.baseline,
        step_fraction=args.step,
        fraction=args.fraction,
        background=args.background,
        batch_size=args.batch,
    )
    for method, reason in settings.skipped.items():
        print(f"note: {method} is left out: {reason}", file=sys.stderr)
    bar = ProgressBar()
    try:
        evaluation = evaluate_in_folder(bundle, image_set, settings, args.out, progress=bar, engine=engine)
    finally:
        bar.close()
    card = build_report(
        evaluation.summary,
        sanity=None if args.sanity is None else read_json(args.sanity, "sanity"),
        classes=None if args.classes is None else read_json(args.classes, "classes"),
        co=None if args.co is None else read_co_rows(args.co),
    )
    (args.out / "report.json").write_text(json.dumps(card.record(), indent=2, allow_nan=False))
    (args.out / "report.md").write_text(card.markdown())
    _print_table(evaluation.summary)
    print()
    for line in card.summary:
        print(line)
    print(
        f"\n{evaluation.runtime_s:.1f} s; wrote {args.out}/summary.json, summary.csv, rows.jsonl, rows.csv, "
        "report.json, report.md"
    )
    return 0


def _engine(args: argparse.Namespace):
    """The engine ``--engine`` names, checked before any work."""
    from xaicore.errors import ParameterError
    from xaicore.evaluation.rows import evaluate

    if args.engine == "local":
        if args.address is not None or args.actors is not None:
            raise ParameterError("--address and --actors go with --engine ray.")
        return evaluate
    from xaicore.evaluation.ray_engine import RayEngine, ray_module

    ray_module()  # says how to install Ray when it is missing
    return RayEngine(address=args.address, actors=args.actors)


def _print_table(summary) -> None:
    metrics = [m for m in summary.settings.metrics]
    print(f"{'method':<22}" + "".join(f"{m:>24}" for m in metrics))
    for entry in summary.methods:
        cells = "".join(f"{entry.metrics[m].text(3) if m in entry.metrics else '-':>24}" for m in metrics)
        print(f"{entry.title:<22}{cells}")
