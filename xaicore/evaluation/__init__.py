"""Evaluation over image sets: rows per image and method, a resumable run folder, the report card.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "evaluate": "xaicore.evaluation.rows",
    "iter_rows": "xaicore.evaluation.rows",
    "make_settings": "xaicore.evaluation.rows",
    "EvalRow": "xaicore.evaluation.rows",
    "EvalSettings": "xaicore.evaluation.rows",
    "EvalSummary": "xaicore.evaluation.rows",
    "RunFolder": "xaicore.evaluation.store",
    "evaluate_in_folder": "xaicore.evaluation.store",
    "build_report": "xaicore.evaluation.report",
    "ReportCard": "xaicore.evaluation.report",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
