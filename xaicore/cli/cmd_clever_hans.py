"""``xai clever-hans train|fix`` (and ``xai train-clever-hans``): the Clever-Hans lab's commands.

``train`` trains the cheating model on stamped shapes and writes its weights and card;
``fix`` corrects a Clever-Hans model with P-ClArC, A-ClArC or RRR on a private copy and writes
the verify table (JSON) and the corrected state dicts.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from xaicore.clever_hans.training import CleverHansConfig
    from xaicore.models.default import ASSETS_DIR

    p.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"output folder (default: {ASSETS_DIR})")
    for f in dataclasses.fields(CleverHansConfig):
        p.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"default: {f.default}"
        )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run_train)


def register(sub: argparse._SubParsersAction) -> None:
    help_train = "train the Clever-Hans model (the default CNN on stamped shapes; a few minutes on a CPU)"
    _train_arguments(sub.add_parser("train-clever-hans", help=help_train, description=help_train))
    group = sub.add_parser("clever-hans", help="the Clever-Hans lab: train the cheating model, or correct it")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    _train_arguments(actions.add_parser("train", help=help_train, description=help_train))
    fix = actions.add_parser(
        "fix",
        help="correct a Clever-Hans model and write the verify table and the corrected state dicts",
        description="Correct the Clever-Hans model on a private copy and measure the original and the "
        "corrected model on the three stamped test sets.",
    )
    fix.add_argument(
        "--method",
        required=True,
        choices=["p-clarc", "a-clarc", "rrr"],
        action="append",
        help="the correction (repeat for several)",
    )
    fix.add_argument("--out", type=Path, required=True, help="output folder")
    fix.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="folder written by `xai clever-hans train` (default: the shipped model)",
    )
    fix.add_argument("--seed", type=int, default=0, help="seed of the corrections' data (default: 0)")
    fix.add_argument("--test-seed", type=int, default=2024, help="seed of the test sets (default: 2024)")
    fix.add_argument("--test-images", type=int, default=800, help="images per test set (default: 800)")
    fix.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the method's)")
    fix.add_argument("--images-per-epoch", type=int, default=1024, help="fine-tuning images per epoch")
    fix.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (default: 5e-4)")
    fix.add_argument("--layer", default=None, help="P-ClArC's layer (default: net.features.pool3)")
    fix.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    fix.set_defaults(func=run_fix)


def _threads(value: int | None) -> None:
    import torch

    from xaicore.errors import ParameterError

    if value is not None:
        if value < 1:
            raise ParameterError("--threads must be at least 1.")
        torch.set_num_threads(value)


def run_train(args: argparse.Namespace) -> int:
    from xaicore.clever_hans.training import CleverHansConfig, save_trained, train_clever_hans

    _threads(args.threads)
    config = CleverHansConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CleverHansConfig)})
    print(f"training with: {config.command()}", flush=True)
    result = train_clever_hans(config, device=args.device, progress=lambda line: print(line, flush=True))
    f = result.findings
    print(
        f"accuracy i.i.d. {f.accuracy_iid:.1%}, clean {f.accuracy_clean:.1%}, stamped {f.accuracy_stamped:.1%}; "
        f"flip rate {f.flip_rate:.1%}; relevance in the stamp {f.relevance_mass:.1%} (box {f.box_share:.1%})"
    )
    for path in save_trained(result, args.out):
        print(f"wrote {path}")
    return 0


def run_fix(args: argparse.Namespace) -> int:
    from xaicore.clever_hans import measures, verify
    from xaicore.clever_hans.finetune import FineTune
    from xaicore.clever_hans.model import load_clever_hans_bundle
    from xaicore.clever_hans.pclarc import DEFAULT_LAYER

    _threads(args.threads)
    bundle = load_clever_hans_bundle(device="cpu", directory=args.model_dir)
    corrections = []
    for method in dict.fromkeys(args.method):
        epochs = args.epochs if args.epochs is not None else (3 if method == "rrr" else 2)
        settings = FineTune(epochs=epochs, images_per_epoch=args.images_per_epoch, lr=args.lr, seed=args.seed)
        print(f"{method}: correcting a private copy", flush=True)
        corrections.append(verify.correct(bundle, method=method, settings=settings, layer=args.layer or DEFAULT_LAYER))
    tests = measures.make_test_sets(seed=args.test_seed, n=args.test_images)
    table = verify.verify(bundle, corrections, tests)
    for row in table.rows:
        f = row.findings
        print(
            f"{row.method:9s} clean {f.accuracy_clean:.1%}  stamped {f.accuracy_stamped:.1%}  "
            f"false-class {f.false_class_rate:.1%}  flip {f.flip_rate:.1%}  relevance in box {f.relevance_mass:.1%}"
            + ("  FIXED" if row.fixed else "")
        )
        if row.warning:
            print(f"  {row.warning}")
    for path in verify.save(table, args.out):
        print(f"wrote {path}")
    return 0
