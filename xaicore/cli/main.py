"""The ``xai`` command. Each sub-command lives in its own ``cmd_*.py`` module in this package,
which defines ``register(subparsers)``; modules are discovered, so adding a command never
touches this file."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import xaicore.cli as _package
from xaicore.errors import XaiError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xai", description="Explain image classifiers from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{_package.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a place the command was told to read or write is not usable
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
