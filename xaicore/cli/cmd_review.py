"""``xai review-report DB --out DIR``: the review report (HTML and PDF, one page per case) from a
review database alone; no model or image file is needed."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review-report",
        help="write the review report (HTML and PDF, one page per case) from a review database",
        description="Write review-report.html and review-report.pdf: per case the model input, the prediction, "
        "each judged map with its colour bar, every reviewer's latest verdict and note, the model fingerprint, "
        "parameters and versions. Everything comes from the database.",
    )
    p.add_argument("db", type=Path, help="the review database (the dashboard's Review page writes it)")
    p.add_argument("--out", type=Path, required=True, help="folder for the report files (made when missing)")
    p.add_argument(
        "--case", action="append", default=None, metavar="NAME", help="only the cases of this name (repeatable)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xaicore.errors import ParameterError
    from xaicore.review.report import build_review_report, write_report
    from xaicore.review.verdicts import ReviewStore

    store = ReviewStore(args.db, create=False)
    cases = store.cases()
    if args.case:
        wanted = set(args.case)
        cases = tuple(c for c in cases if c.name in wanted)
        missing = wanted - {c.name for c in cases}
        if missing:
            raise ParameterError(f"The database holds no case named {', '.join(sorted(missing))}.")
    report = build_review_report(store, cases=cases)
    if not len(report):
        raise ParameterError(f"The review database {str(args.db)!r} holds no verdict yet; nothing to report.")
    html_path, pdf_path = write_report(report, args.out)
    print(f"{len(report)} case{'s' if len(report) != 1 else ''} written to {html_path} and {pdf_path}")
    return 0
