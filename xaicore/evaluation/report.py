"""The report card: per explanation method, every measured figure and whether it passes each test.

It merges what is available: a data-set evaluation (:mod:`xaicore.evaluation.rows`), a sanity check
(:mod:`xaicore.checks.sanity`), a class-discriminativeness comparison (:mod:`xaicore.checks.discriminative`)
and CO scores of AX heatmaps (:mod:`xaicore.confidence.co_ax`). Each test gives ``"pass"``,
``"fail"``, ``"inconclusive"`` or ``"not measured"`` by the rules below (:data:`RULES`), and the
plain-language summary is generated from those outcomes: nothing in it is written by hand.

Rules
-----
faithfulness
    From the paired 95% intervals of (method minus random control) over the same images:
    *pass* when the insertion AUC is higher than the control's and the deletion AUC lower
    (each interval entirely on its good side of zero); *fail* when either is entirely on its bad
    side (worse than random pixels); *inconclusive* otherwise. Only the measured curves count.
localization
    The same comparison with the random control for every measured localization score
    (pointing game, relevance mass, relevance rank accuracy; higher is better): *pass* when
    all are above the control, *fail* when any is below, *inconclusive* otherwise; *not
    measured* without object masks.
sanity
    The sanity check's own verdict (:data:`xaicore.checks.sanity.VERDICT_RULE`: fails when the mean
    SSIM after randomizing the output layer is at or above its threshold); its "undetermined"
    is reported as *inconclusive*.
classes
    *pass* when the mean SSIM between the maps of different classes is below
    ``discriminative_threshold`` (default 0.9) and, where object masks exist, more positive
    relevance falls on the asked-for object than on the other objects (mean over the classes);
    *fail* when the SSIM is at or above the threshold or the relevance favours the other
    objects; *inconclusive* when a class map had no signal or a numerical error.
co_gap
    From the CO scores of the AX heatmaps (variant ``co_variant``, default ``"x+h"``): Welch's
    95% interval of mean CO (correctly predicted) minus mean CO (wrongly predicted): *pass*
    when it lies above zero (the scores separate right from wrong predictions), *fail* when it
    lies below, *inconclusive* when it contains zero or a group has fewer than two images.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.evaluation.rows import FAITHFULNESS, LOCALIZATION, EvalSummary, MethodSummary
from xaicore.metrics.faithfulness import RANDOM
from xaicore.metrics.intervals import Interval, welch_interval

TESTS = ("faithfulness", "localization", "sanity", "classes", "co_gap")
OUTCOMES = ("pass", "fail", "inconclusive", "not measured")
TEST_NAMES = {
    "faithfulness": "faithfulness (insertion/deletion against random pixels)",
    "localization": "localization (relevance on the object against random pixels)",
    "sanity": "the sanity check (the map changes when the model's weights are randomized)",
    "classes": "class-discriminativeness (different maps for different classes)",
    "co_gap": "the CO-score gap (confidence gain separates right from wrong predictions)",
}
SHORT_NAMES = {
    "faithfulness": "faithfulness",
    "localization": "localization",
    "sanity": "the sanity check",
    "classes": "class-discriminativeness",
    "co_gap": "the CO-score gap",
}
SINGLE_IMAGE_TESTS = ("sanity", "classes")  # computed on the image chosen in the sidebar
RULES = {
    "faithfulness": "pass: insertion AUC above and deletion AUC below the random control (paired 95% intervals "
    "exclude zero); fail: either is worse than random; otherwise inconclusive.",
    "localization": "pass: every measured localization score above the random control (paired 95% intervals "
    "exclude zero); fail: any below; otherwise inconclusive; not measured without masks.",
    "sanity": "the sanity check's verdict: fail when the mean SSIM after randomizing the output layer is at or "
    "above its threshold; undetermined is inconclusive.",
    "classes": "pass: mean SSIM between class maps below the threshold and, with masks, more positive relevance "
    "on the asked-for object than on the others; fail otherwise; inconclusive when a map had no signal.",
    "co_gap": "pass: Welch 95% interval of mean CO (correct) minus mean CO (wrong) above zero; fail: below zero; "
    "otherwise inconclusive (or too few images in a group).",
}
# metric -> whether higher is better, for the comparison with the random control
_HIGHER_IS_BETTER = {"insertion": True, "deletion": False, "pointing": True, "mass": True, "rank": True}


@dataclass(frozen=True)
class ReportRules:
    """The adjustable knobs of the rules (see the module docstring)."""

    discriminative_threshold: float = 0.9
    co_variant: str = "x+h"

    def __post_init__(self) -> None:
        if not 0.0 < self.discriminative_threshold <= 1.0:
            raise ParameterError("discriminative_threshold must be in (0, 1], like 0.9.")


@dataclass(frozen=True)
class Check:
    """One test's outcome for one method, with the reason in plain words."""

    test: str
    outcome: str
    reason: str

    def record(self) -> dict[str, str]:
        return {"test": self.test, "outcome": self.outcome, "reason": self.reason}


@dataclass(frozen=True)
class SanityFigures:
    status: str
    ssim_output_layer: float | None
    threshold: float | None
    reason: str
    n_images: int = 1
    n_seeds: int = 0


@dataclass(frozen=True)
class ClassesFigures:
    pair_ssim: float | None
    on_object: float | None
    on_others: float | None
    all_ok: bool
    n_images: int = 1


@dataclass(frozen=True)
class CardRow:
    """Everything the card knows about one method."""

    method: str
    title: str
    evaluation: MethodSummary | None
    sanity: SanityFigures | None
    classes: ClassesFigures | None
    co_gap: Interval | None
    checks: Mapping[str, Check]
    co_sizes: tuple[int, int] | None = None  # (correctly, wrongly) predicted images behind co_gap

    def outcome(self, test: str) -> str:
        return self.checks[test].outcome

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "title": self.title,
            "evaluation": None if self.evaluation is None else self.evaluation.record(),
            "sanity": None if self.sanity is None else self.sanity.__dict__,
            "classes": None if self.classes is None else self.classes.__dict__,
            "co_gap": None if self.co_gap is None else self.co_gap.record(),
            "co_images": None if self.co_sizes is None else {"correct": self.co_sizes[0], "wrong": self.co_sizes[1]},
            "checks": {k: v.record() for k, v in self.checks.items()},
        }


@dataclass(frozen=True)
class ReportCard:
    """The report card of one model: a row per method, the random control, and the summary."""

    rows: tuple[CardRow, ...]
    control: MethodSummary | None
    summary: tuple[str, ...]
    rules: ReportRules
    sources: Mapping[str, Any] = field(default_factory=dict)
    scopes: Mapping[str, str] = field(default_factory=dict)  # test -> "over 16 images", "from one image: ..."

    def by_method(self) -> dict[str, CardRow]:
        return {r.method: r for r in self.rows}

    def table(self, *, interval_text: bool = False) -> list[dict[str, Any]]:
        """One flat dict per method (the random control last): means and intervals, verdicts.

        Intervals are ``low`` / ``high`` number columns, or with ``interval_text`` one text
        column ``"[low, high]"`` each (for display; the means stay numbers, so they sort).
        """
        lines = [_flat(row.method, row.title, row.evaluation, row, text=interval_text) for row in self.rows]
        if self.control is not None:
            lines.append(_flat(RANDOM, self.control.title, self.control, None, text=interval_text))
        return lines

    def csv_text(self) -> str:
        lines = self.table()
        columns = list(dict.fromkeys(k for line in lines for k in line))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        for line in lines:
            writer.writerow({k: "" if v is None else v for k, v in line.items()})
        return out.getvalue()

    def record(self) -> dict[str, Any]:
        return {
            "kind": "report_card",
            "summary": list(self.summary),
            "rules": dict(RULES),
            "rule_settings": dict(self.rules.__dict__),
            "methods": [r.record() for r in self.rows],
            "random_control": None if self.control is None else self.control.record(),
            "table": self.table(),
            "sources": dict(self.sources),
            "scopes": dict(self.scopes),
        }

    def markdown(self) -> str:
        """The summary as a short Markdown document (one bullet per sentence)."""
        return "# Report card\n\n" + "\n".join(f"- {line}" for line in self.summary) + "\n"


# ----------------------------------------------------------------------------- inputs


def _record(result: Any) -> Mapping[str, Any] | None:
    if result is None:
        return None
    return _record_of(result)


def _record_of(result: Any) -> Mapping[str, Any]:
    if hasattr(result, "record"):
        return result.record()
    if isinstance(result, Mapping):
        return result
    raise ParameterError("A result for the report card must be a result object or its JSON record.")


def sanity_figures(sanity: Any) -> dict[str, SanityFigures]:
    """Method -> sanity verdict and SSIM at the output layer, from a SanityResult or its record."""
    record = _record(sanity)
    if record is None:
        return {}
    out = {}
    n_images = max(1, len(record.get("targets") or [0]))
    n_seeds = len(record.get("seeds") or ())
    for method, entry in dict(record.get("methods", {})).items():
        verdict = entry.get("verdict") or {}
        value = verdict.get("value")
        out[method] = SanityFigures(
            status=str(verdict.get("status", "undetermined")),
            ssim_output_layer=None if value is None or not math.isfinite(float(value)) else float(value),
            threshold=verdict.get("threshold"),
            reason=str(verdict.get("reason", "")),
            n_images=n_images,
            n_seeds=n_seeds,
        )
    return out


def classes_figures(classes: Any) -> dict[str, ClassesFigures]:
    """Method -> mean pairwise class-map SSIM and relevance shares, from a ClassesResult or its record."""
    record = _record(classes)
    if record is None:
        return {}
    out = {}
    for method, entry in dict(record.get("methods", {})).items():
        ssim = entry.get("mean_pair_ssim")
        shares = entry.get("relevance_share") or {}
        on_obj = [v.get("on_object") for v in shares.values() if v.get("on_object") is not None]
        on_oth = [v.get("on_others") for v in shares.values() if v.get("on_others") is not None]
        statuses = list(dict(entry.get("status", {})).values())
        out[method] = ClassesFigures(
            pair_ssim=None if ssim is None or not math.isfinite(float(ssim)) else float(ssim),
            on_object=sum(on_obj) / len(on_obj) if on_obj else None,
            on_others=sum(on_oth) / len(on_oth) if on_oth else None,
            all_ok=all(s == "ok" for s in statuses),
        )
    return out


def co_gap_intervals(co: Any, *, variant: str = "x+h") -> dict[str, Interval]:
    """Method -> Welch interval of mean CO (correct) minus mean CO (wrong).

    ``co`` is a CoScoreResult, or rows (objects or mappings, e.g. read from the CSV of
    ``xai co-scores``) with ``method``, ``variant``, ``co`` and ``correct``.
    """
    if co is None:
        return {}
    rows = getattr(co, "rows", co)
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        get = row.get if isinstance(row, Mapping) else lambda k, r=row: getattr(r, k, None)
        if str(get("variant")) != variant:
            continue
        correct = _as_bool(get("correct"))
        value = _as_float(get("co"))
        method = str(get("method"))
        right, wrong = groups.setdefault(method, ([], []))
        if correct is None or value is None:
            continue
        (right if correct else wrong).append(value)
    return {m: welch_interval(right, wrong) for m, (right, wrong) in groups.items()}


def co_group_sizes(co: Any, *, variant: str = "x+h") -> dict[str, tuple[int, int]]:
    """Method -> (correctly, wrongly) predicted images with a finite CO score of ``variant``
    (the two groups behind :func:`co_gap_intervals`)."""
    if co is None:
        return {}
    sizes: dict[str, list[int]] = {}
    for row in getattr(co, "rows", co):
        get = row.get if isinstance(row, Mapping) else lambda k, r=row: getattr(r, k, None)
        if str(get("variant")) != variant:
            continue
        counts = sizes.setdefault(str(get("method")), [0, 0])
        correct = _as_bool(get("correct"))
        if correct is None or _as_float(get("co")) is None:
            continue
        counts[0 if correct else 1] += 1
    return {m: (right, wrong) for m, (right, wrong) in sizes.items()}


def _co_images(co: Any, variant: str) -> int:
    """Distinct images with a CO score of ``variant`` (the set size of a finished run)."""
    rows = [
        r
        for r in getattr(co, "rows", co)
        if str((r.get if isinstance(r, Mapping) else lambda k, r=r: getattr(r, k, None))("variant")) == variant
    ]
    names = {str(r.get("image") if isinstance(r, Mapping) else getattr(r, "image", "")) for r in rows}
    return len(names)


def _count(n: int, noun: str) -> str:
    """``"1 image"``, ``"16 images"``."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def report_scopes(
    evaluation: EvalSummary | None,
    *,
    sanity: Any = None,
    classes: Any = None,
    co: Any = None,
    image_names: Mapping[str, str] | None = None,
    co_variant: str = "x+h",
) -> dict[str, str]:
    """Test -> how many images its figures come from, in words, for the tests that have a source.

    Data-set figures read ``"over 16 images"``; a sanity check or class comparison on the image
    chosen in the sidebar reads ``"from one image: <name>"`` (``image_names["sanity"]`` /
    ``image_names["classes"]``; just ``"from one image"`` when the name is not known).
    """
    names = dict(image_names or {})
    scopes: dict[str, str] = {}
    if evaluation is not None:
        scopes["faithfulness"] = scopes["localization"] = f"over {_count(evaluation.n_images_done, 'image')}"
    for test, source in (("sanity", sanity), ("classes", classes)):
        if source is None:
            continue
        record = _record_of(source)
        n = max(1, len(record.get("targets") or [0])) if test == "sanity" else 1
        if n > 1:
            scopes[test] = f"over {_count(n, 'image')}"
        else:
            scopes[test] = "from one image" + (f": {names[test]}" if names.get(test) else "")
        if test == "sanity" and record.get("seeds"):
            scopes[test] += f", {_count(len(record['seeds']), 'seed')}"
    if co is not None:
        scopes["co_gap"] = f"over {_count(_co_images(co, co_variant), 'image')}"
    return scopes


def _as_bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ----------------------------------------------------------------------------- rules


def _versus_random(names: Iterable[str], vs_random: Mapping[str, Interval]) -> tuple[str, list[str], list[str]]:
    """Outcome over the metrics ``names`` compared with the control, and which were better/worse."""
    better, worse, measured = [], [], 0
    for name in names:
        interval = vs_random.get(name)
        if interval is None or interval.mean is None:
            continue
        measured += 1
        good = "above" if _HIGHER_IS_BETTER[name] else "below"
        bad = "below" if good == "above" else "above"
        side = interval.side(0.0)
        if side == good:
            better.append(name)
        elif side == bad:
            worse.append(name)
    if measured == 0:
        return "not measured", better, worse
    if worse:
        return "fail", better, worse
    if len(better) == measured:
        return "pass", better, worse
    return "inconclusive", better, worse


_METRIC_WORDS = {
    "insertion": "insertion AUC",
    "deletion": "deletion AUC",
    "pointing": "pointing-game hits",
    "mass": "relevance mass",
    "rank": "relevance rank accuracy",
}


def faithfulness_check(summary: MethodSummary | None) -> Check:
    """The faithfulness rule (module docstring) on one method's evaluation summary."""
    if summary is None:
        return Check("faithfulness", "not measured", "No data-set evaluation with insertion or deletion.")
    outcome, better, worse = _versus_random(FAITHFULNESS, summary.vs_random)
    return Check("faithfulness", outcome, _versus_reason(outcome, better, worse, "insertion or deletion"))


def localization_check(summary: MethodSummary | None) -> Check:
    """The localization rule (module docstring) on one method's evaluation summary."""
    if summary is None:
        return Check("localization", "not measured", "No data-set evaluation with object masks.")
    outcome, better, worse = _versus_random(LOCALIZATION, summary.vs_random)
    return Check("localization", outcome, _versus_reason(outcome, better, worse, "localization on images with masks"))


def _words(names: Sequence[str]) -> str:
    return ", ".join(_METRIC_WORDS[n] for n in names)


def _versus_reason(outcome: str, better: list[str], worse: list[str], what: str) -> str:
    if outcome == "not measured":
        return f"No {what} was measured."
    if outcome == "fail":
        return f"Worse than random pixels on {_words(worse)}."
    if outcome == "pass":
        return f"Better than random pixels on {_words(better)}."
    if better:
        return f"Better than random pixels on {_words(better)} only; the rest is within the 95% interval of chance."
    return "Not distinguishable from random pixels on these images (the 95% intervals contain zero)."


def sanity_check(figures: SanityFigures | None) -> Check:
    if figures is None:
        return Check("sanity", "not measured", "No sanity check was run for this method.")
    outcome = {"pass": "pass", "fail": "fail"}.get(figures.status, "inconclusive")
    if figures.ssim_output_layer is None:
        return Check("sanity", outcome, figures.reason or "The trained map had no usable signal.")
    relation = "below" if outcome == "pass" else "at or above" if outcome == "fail" else "against"
    return Check(
        "sanity",
        outcome,
        f"SSIM after randomizing the output layer {figures.ssim_output_layer:.2f}, "
        f"{relation} the threshold {figures.threshold}.",
    )


def classes_check(figures: ClassesFigures | None, *, threshold: float) -> Check:
    if figures is None:
        return Check("classes", "not measured", "No class-discriminativeness comparison was run for this method.")
    if not figures.all_ok or figures.pair_ssim is None:
        return Check("classes", "inconclusive", "A class map had no signal or a numerical error.")
    if figures.pair_ssim >= threshold:
        return Check(
            "classes",
            "fail",
            f"The maps of different classes are nearly the same (SSIM "
            f"{figures.pair_ssim:.2f} at or above {threshold}).",
        )
    if figures.on_object is not None and figures.on_others is not None and figures.on_object <= figures.on_others:
        return Check(
            "classes",
            "fail",
            f"More relevance falls on the other objects ({figures.on_others:.0%}) "
            f"than on the asked-for one ({figures.on_object:.0%}).",
        )
    text = f"The maps of different classes differ (SSIM {figures.pair_ssim:.2f} below {threshold})"
    if figures.on_object is not None and figures.on_others is not None:
        text += (
            f" and relevance falls on the asked-for object ({figures.on_object:.0%} against {figures.on_others:.0%})"
        )
    return Check("classes", "pass", text + ".")


def co_gap_check(gap: Interval | None) -> Check:
    if gap is None:
        return Check("co_gap", "not measured", "No CO scores were computed for this method.")
    if gap.mean is None or not gap.defined:
        return Check("co_gap", "inconclusive", "Fewer than two correctly or two wrongly predicted images.")
    side = gap.side(0.0)
    text = f"Mean CO of correct minus wrong predictions {gap.text(2)}"
    if side == "above":
        return Check("co_gap", "pass", text + ": correct predictions gain more confidence.")
    if side == "below":
        return Check("co_gap", "fail", text + ": wrong predictions gain more confidence.")
    return Check("co_gap", "inconclusive", text + ": the interval contains zero.")


# ----------------------------------------------------------------------------- the card


def build_report(
    evaluation: EvalSummary | None = None,
    *,
    sanity: Any = None,
    classes: Any = None,
    co: Any = None,
    rules: ReportRules = ReportRules(),
    image_names: Mapping[str, str] | None = None,
) -> ReportCard:
    """Merge the available results into a :class:`ReportCard` (any of them may be missing).

    Parameters
    ----------
    evaluation:
        The summary of a data-set evaluation (:func:`xaicore.evaluation.rows.summarize`).
    sanity, classes:
        A SanityResult / ClassesResult, or its JSON record (``sanity.json``, ``classes.json``).
    co:
        A CoScoreResult, or its rows (see :func:`co_gap_intervals`).
    rules:
        Thresholds of the rules.
    image_names:
        ``"sanity"`` / ``"classes"`` -> the name of the one image those results were computed on,
        so that the card says which image a single-image figure comes from (:func:`report_scopes`).
    """
    evaluated = {} if evaluation is None else {m.method: m for m in evaluation.methods if m.method != RANDOM}
    control = None if evaluation is None else evaluation.by_method().get(RANDOM)
    sanity_by = sanity_figures(sanity)
    classes_by = classes_figures(classes)
    co_by = co_gap_intervals(co, variant=rules.co_variant)
    co_sizes = co_group_sizes(co, variant=rules.co_variant)
    order = list(dict.fromkeys([*evaluated, *sanity_by, *classes_by, *co_by]))
    if not order:
        raise ParameterError(
            "Nothing to report yet: run an evaluation, a sanity check, a class comparison or CO scores."
        )
    rows = []
    for method in order:
        summary = evaluated.get(method)
        checks = {
            "faithfulness": faithfulness_check(summary),
            "localization": localization_check(summary),
            "sanity": sanity_check(sanity_by.get(method)),
            "classes": classes_check(classes_by.get(method), threshold=rules.discriminative_threshold),
            "co_gap": co_gap_check(co_by.get(method)),
        }
        rows.append(
            CardRow(
                method,
                _title(method, summary),
                summary,
                sanity_by.get(method),
                classes_by.get(method),
                co_by.get(method),
                checks,
                co_sizes.get(method),
            )
        )
    sources = {
        "evaluation": None if evaluation is None else evaluation.settings.record(),
        "sanity": sanity is not None,
        "classes": classes is not None,
        "co": co is not None,
    }
    card_rows = tuple(rows)
    scopes = report_scopes(
        evaluation, sanity=sanity, classes=classes, co=co, image_names=image_names, co_variant=rules.co_variant
    )
    summary_text = tuple(summary_lines(card_rows, evaluation, scopes=scopes))
    return ReportCard(card_rows, control, summary_text, rules, sources, scopes)


def _title(method: str, summary: MethodSummary | None) -> str:
    if summary is not None:
        return summary.title
    from xaicore.explainers.registry import get_method

    try:
        return get_method(method).title
    except UnknownNameError:
        return method


def summary_lines(
    rows: Sequence[CardRow], evaluation: EvalSummary | None = None, *, scopes: Mapping[str, str] | None = None
) -> list[str]:
    """The plain-language summary: one sentence per measured test, then the overall picture.

    Generated from the outcomes only: for each test, how many images its figures come from
    (``scopes``, see :func:`report_scopes`) and which methods pass, fail or are inconclusive;
    a warning when single-image and data-set figures are on the same card; then the methods
    that pass every test measured, naming the tests that were not measured for them, and the
    methods that fail any. "Passes every test" is said only of a method with every test measured.
    """
    scopes = dict(scopes or {})
    lines = []
    if evaluation is not None:
        s = evaluation.settings
        scope = (
            f"{evaluation.n_images_done} of {s.n_images} images"
            if not evaluation.complete
            else _count(s.n_images, "image")
        )
        lines.append(
            f"Data-set evaluation of {s.model_name} on {scope}"
            + ("" if evaluation.complete else " (the run is not finished)")
            + "."
        )
    measured_any = False
    tested = []
    for test in TESTS:
        groups = {o: [r.title for r in rows if r.outcome(test) == o] for o in OUTCOMES}
        if not any(groups[o] for o in ("pass", "fail", "inconclusive")):
            continue
        measured_any = True
        tested.append(test)
        parts = []
        if groups["pass"]:
            parts.append(f"{_join(groups['pass'])} {_verb(groups['pass'], 'passes', 'pass')}")
        if groups["fail"]:
            parts.append(f"{_join(groups['fail'])} {_verb(groups['fail'], 'fails', 'fail')}")
        if groups["inconclusive"]:
            parts.append(f"{_join(groups['inconclusive'])} {_verb(groups['inconclusive'], 'is', 'are')} inconclusive")
        sentence = "; ".join(parts)
        where = f", {scopes[test]}" if scopes.get(test) else ""
        lines.append(f"On {TEST_NAMES[test]}{where}: {sentence}.")
    if not measured_any:
        lines.append("No test has a result yet.")
        return lines
    mixed = _mixed_scopes(tested, scopes)
    if mixed:
        lines.append(mixed)
    measured = [r for r in rows if any(r.outcome(t) in ("pass", "fail", "inconclusive") for t in TESTS)]
    trusted = [r for r in measured if all(r.outcome(t) in ("pass", "not measured") for t in TESTS)]
    failing = [r.title for r in measured if any(r.outcome(t) == "fail" for t in TESTS)]
    if trusted:
        by_missing: dict[tuple[str, ...], list[str]] = {}
        for r in trusted:
            missing = tuple(t for t in TESTS if r.outcome(t) == "not measured")
            by_missing.setdefault(missing, []).append(r.title)
        for missing, titles in by_missing.items():
            if not missing:
                lines.append(f"{_verb(titles, 'Passes', 'Pass')} every test: {_join(titles)}.")
            else:
                lines.append(
                    f"{_verb(titles, 'Passes', 'Pass')} every test that was measured: {_join(titles)} "
                    f"(not measured: {_join([SHORT_NAMES[t] for t in missing])})."
                )
    else:
        lines.append("No method passes every test that was measured.")
    if failing:
        lines.append(f"Fails at least one test: {_join(failing)}.")
    return lines


def _mixed_scopes(tested: Sequence[str], scopes: Mapping[str, str]) -> str:
    """A sentence when figures from one image and figures over a data set share the card, else ''."""
    single = [t for t in tested if t in SINGLE_IMAGE_TESTS and scopes.get(t, "").startswith("from one image")]
    data_set = [t for t in tested if t not in single and scopes.get(t, "").startswith("over ")]
    if not single or not data_set:
        return ""
    over = "; ".join(f"{SHORT_NAMES[t]} {scopes[t]}" for t in data_set)
    one = "; ".join(f"{SHORT_NAMES[t]} {scopes[t]}" for t in single)
    return (
        f"Figures of different scope: {over}; but {one}. A single image is an example, "
        "not a measurement over a data set."
    )


def _join(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _verb(names: Sequence[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


# ----------------------------------------------------------------------------- table

_COLUMNS = {  # metric -> column label
    "insertion": "insertion AUC",
    "deletion": "deletion AUC",
    "pointing": "pointing hit rate",
    "mass": "relevance mass",
    "rank": "relevance rank",
    "runtime": "runtime s",
}


def _put(line: dict[str, Any], label: str, interval: Interval, text: bool) -> None:
    line[label] = interval.mean
    if text:
        line[f"{label} 95% CI"] = f"[{interval.low:.3g}, {interval.high:.3g}]" if interval.defined else ""
    else:
        line[f"{label} low"] = interval.low
        line[f"{label} high"] = interval.high


def _flat(method: str, title: str, summary: MethodSummary | None, row: CardRow | None, *, text: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"method": method, "title": title}
    if summary is not None:
        line["images"] = summary.n_rows
        line["ok"] = summary.counts.get("ok", 0)
        for name, interval in summary.metrics.items():
            _put(line, _COLUMNS[name], interval, text)
        for name, interval in summary.vs_random.items():
            _put(line, f"{_COLUMNS[name]} minus random", interval, text)
    if row is not None:
        if row.sanity is not None:
            line["SSIM after output layer randomized"] = row.sanity.ssim_output_layer
            line["sanity images"] = row.sanity.n_images
        if row.classes is not None:
            line["class-map SSIM"] = row.classes.pair_ssim
            line["relevance on object"] = row.classes.on_object
            line["relevance on others"] = row.classes.on_others
            line["classes images"] = row.classes.n_images
        if row.co_gap is not None:
            _put(line, "CO gap", row.co_gap, text)
            if row.co_sizes is not None:
                line["CO images correct"], line["CO images wrong"] = row.co_sizes
        for test in TESTS:
            line[f"{test} verdict"] = row.outcome(test)
    return line
