"""Words the pages show: counts with the right plural, and plain titles for table columns.

Tables built from core records carry the records' own keys (``co_gap verdict``,
``insertion_auc``); :func:`plain_columns` renames them to the titles in :data:`COLUMN_TITLES`
before a page shows them, so no internal name reaches the screen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def estimate(seconds: float) -> str:
    """How long a run should take, for the line before its Run button."""
    from xaicore.explainers.cost import describe_seconds

    return f"{describe_seconds(seconds)} on this model (estimated from the time of one pass of the model)"


_IRREGULAR = {"class": "classes", "pass": "passes", "box": "boxes"}  # nouns whose plural adds "es"

COLUMN_TITLES: dict[str, str] = {
    # report card (xaicore.evaluation.report.ReportCard.table)
    "title": "method",
    "images": "data-set images",
    "ok": "data-set images ok",
    "faithfulness verdict": "faithfulness",
    "localization verdict": "localization",
    "sanity verdict": "sanity check",
    "classes verdict": "class-discriminativeness",
    "co_gap verdict": "CO-score gap",
    "SSIM after output layer randomized": "sanity: SSIM after randomizing the output layer",
    "sanity images": "sanity: images",
    "class-map SSIM": "classes: SSIM between class maps",
    "relevance on object": "classes: relevance on the object",
    "relevance on others": "classes: relevance on the other objects",
    "classes images": "classes: images",
    "CO gap": "CO gap (correct minus wrong)",
    "CO gap 95% CI": "CO gap 95% interval",
    "CO images": "CO: images (correct / wrong)",
    # CO rows (xaicore.confidence.co_sets.CoRow)
    "image": "image",
    "method": "method",
    "variant": "AX variant",
    "co": "CO score",
    "predicted": "predicted class",
    "true": "true class",
    "correct": "prediction correct",
    "status": "status",
    # faithfulness summary (xaicore.metrics.faithfulness.FaithfulnessResult.summary)
    "insertion_auc": "insertion AUC",
    "deletion_auc": "deletion AUC",
    "difference": "insertion − deletion",
    "vs_random": "vs random",
}


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``n`` with the noun in the right number: ``plural(1, "seed")`` -> ``"1 seed"``, ``plural(5, "seed")``
    -> ``"5 seeds"``; ``many`` gives an irregular plural (``plural(2, "class", "classes")``)."""
    word = singular if n == 1 else many or _IRREGULAR.get(singular, singular + "s")
    return f"{n} {word}"


def column_title(key: str) -> str:
    """The plain title of a column key (a key's own text when it is already plain words).

    ``"insertion AUC 95% CI"`` -> ``"insertion AUC 95% interval"``; a ``"<test> verdict"`` key
    becomes the test's name.
    """
    if key in COLUMN_TITLES:
        return COLUMN_TITLES[key]
    if key.endswith(" 95% CI"):
        return column_title(key.removesuffix(" 95% CI")) + " 95% interval"
    return key.replace("_", " ")


def plain_columns(rows: Iterable[Mapping[str, Any]], titles: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``rows`` with every key renamed to its plain title (``titles`` first, then :func:`column_title`)."""
    extra = dict(titles or {})
    return [{extra.get(k) or column_title(k): v for k, v in row.items()} for row in rows]


def plain_table(columns: Mapping[str, list[Any]], titles: Mapping[str, str] | None = None) -> dict[str, list[Any]]:
    """A column-oriented table (name -> values) with each name renamed to its plain title."""
    extra = dict(titles or {})
    return {extra.get(k) or column_title(k): v for k, v in columns.items()}
