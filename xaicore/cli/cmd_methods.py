"""``xai methods``: list the explanation methods with descriptions, flags and parameters."""

from __future__ import annotations

import argparse
import json
import textwrap

FLAGS = ("single_pass", "needs_layer", "hook_based", "stochastic", "needs_baseline")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the explanation methods with descriptions, flags and parameters")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def describe() -> list[dict]:
    """One JSON-ready entry per registered method."""
    from xaicore.explainers.registry import get_method, list_methods

    entries = []
    for name in list_methods():
        spec = get_method(name)
        entries.append(
            {
                "name": spec.name,
                "title": spec.title,
                "description": spec.description,
                "flags": [flag for flag in FLAGS if getattr(spec, flag)],
                "params": [
                    {"name": p.name, "default": p.default, "help": p.help, "minimum": p.minimum, "maximum": p.maximum}
                    for p in spec.params
                ],
            }
        )
    return entries


def run(args: argparse.Namespace) -> int:
    entries = describe()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for e in entries:
        flags = ", ".join(f.replace("_", " ") for f in e["flags"]) or "-"
        print(f"{e['name']}  ({e['title']})   [{flags}]")
        print(textwrap.fill(e["description"], width=96, initial_indent="    ", subsequent_indent="    "))
        for p in e["params"]:
            print(f"    --param {e['name']}.{p['name']}={p['default']!r}: {p['help']}")
        print()
    return 0
