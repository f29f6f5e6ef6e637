"""The ``xai-dashboard`` command: start the Streamlit app with the repository's server settings.

``xai-dashboard [--dry-run] [STREAMLIT OPTIONS ...]`` runs
``python -m dashboard.serve run <abs path of dashboard/app.py> --section.option=value ...``
(Streamlit's own command line, see :mod:`dashboard.serve`) from the repository root. Every option of
``.streamlit/config.toml`` is passed as a flag, so the security settings (XSRF and CORS protection,
hidden error details, upload cap) hold whatever directory the command is started from and cannot
be weakened by a user-level config file.
Extra arguments are passed through to ``streamlit run``; an option given there replaces the
same option from the config file (``xai-dashboard --server.port 8600``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xaicore.review.config import CASES_ROOT_ENV, DB_ENV

PACKAGE_DIR = Path(__file__).resolve().parent
APP_PATH = PACKAGE_DIR / "app.py"
REPO_ROOT = PACKAGE_DIR.parent
CONFIG_PATH = REPO_ROOT / ".streamlit" / "config.toml"
SERVE_MODULE = "dashboard.serve"  # `streamlit` with the pages folder never read the old way

# Used only when the repository's config file is not there (an install without the source
# tree): the settings that must never be missing.
SECURE_DEFAULTS: dict[str, Any] = {
    "server.address": "127.0.0.1",
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.maxUploadSize": 600,  # checkpoints; images keep their own cap (dashboard.uploads)
    "server.headless": True,
    "client.showErrorDetails": "none",
    "browser.gatherUsageStats": False,
}


@dataclass(frozen=True)
class LaunchPlan:
    """The command line to run and the directory to run it in."""

    argv: tuple[str, ...]
    cwd: Path

    def shell(self) -> str:
        return shlex.join(self.argv)


def config_options(path: Path = CONFIG_PATH) -> dict[str, Any]:
    """Options of a Streamlit ``config.toml`` as ``{"section.option": value}``.

    Falls back to :data:`SECURE_DEFAULTS` when ``path`` does not exist.
    """
    if not path.is_file():
        return dict(SECURE_DEFAULTS)
    with path.open("rb") as handle:
        parsed = tomllib.load(handle)
    options: dict[str, Any] = {}
    for section, values in parsed.items():
        if not isinstance(values, Mapping):
            continue
        for name, value in values.items():
            options[f"{section}.{name}"] = value
    return options


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _options_given(extra: Sequence[str]) -> set[str]:
    """Names of the ``--section.option`` flags in ``extra`` (``--a.b=v`` or ``--a.b v``)."""
    given = set()
    for arg in extra:
        if arg == "--":
            break
        if arg.startswith("--") and "." in arg:
            given.add(arg[2:].split("=", 1)[0])
    return given


def build_command(
    extra: Sequence[str] = (),
    *,
    config: Path = CONFIG_PATH,
    python: str = sys.executable,
) -> LaunchPlan:
    """The ``streamlit run`` command for the dashboard, without running it.

    Parameters
    ----------
    extra:
        Arguments for ``streamlit run``; their options replace the same options of the config.
    config:
        The Streamlit config file whose options become flags.
    python:
        Interpreter that runs ``-m streamlit``.
    """
    overridden = _options_given(extra)
    flags = [
        f"--{name}={_flag_value(value)}" for name, value in config_options(config).items() if name not in overridden
    ]
    argv = (python, "-m", SERVE_MODULE, "run", str(APP_PATH), *flags, *extra)
    return LaunchPlan(argv=argv, cwd=REPO_ROOT)


def review_environment(review_db: str | None, cases_root: str | None) -> None:
    """Hand the Review page's options to the server (and its children) through the environment:
    absolute paths, so that they hold whatever folder the server runs in."""
    if review_db:
        os.environ[DB_ENV] = str(Path(review_db).expanduser().resolve())
    if cases_root:
        root = Path(cases_root).expanduser().resolve()
        if not root.is_dir():
            raise SystemExit(f"xai-dashboard: --cases-root {cases_root!r} is not a folder.")
        os.environ[CASES_ROOT_ENV] = str(root)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai-dashboard",
        description=(
            "Start the explanation dashboard in a local Streamlit server (the embedded default "
            "model works offline). Options not listed here go to `streamlit run`, "
            "for example --server.port 8600. The server listens on 127.0.0.1 only; to share it with "
            "a lab, use --share (HTTPS with a password, see the README)."
        ),
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.add_argument(
        "--review-db",
        metavar="PATH",
        help=f"the Review page's verdict database (default: ${DB_ENV}, else ~/.local/share/xaicore/reviews.sqlite3)",
    )
    parser.add_argument(
        "--cases-root",
        metavar="DIR",
        help=f"the folder whose sub-folders the Review page may open as case lists (default: ${CASES_ROOT_ENV})",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="serve on the network behind nginx with TLS and a password "
        "(--share-port, --user, --password-file, --cert, --key; see dashboard/share.py)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xai-dashboard``; returns the server's exit code."""
    args, extra = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    review_environment(args.review_db, args.cases_root)
    if args.share:
        from dashboard import share

        return share.run(extra)
    plan = build_command(extra)
    if args.dry_run:
        print(f"cd {shlex.quote(str(plan.cwd))} && {plan.shell()}")
        return 0
    try:
        return subprocess.run(plan.argv, cwd=plan.cwd, check=False).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
