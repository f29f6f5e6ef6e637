"""Confidence of heatmaps: CO scores and the AX process, CO over image sets, and GAX optimization.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "kappa": "xaicore.confidence.co_ax",
    "co_score": "xaicore.confidence.co_ax",
    "ax_co_scores": "xaicore.confidence.co_ax",
    "AxScores": "xaicore.confidence.co_ax",
    "co_scores": "xaicore.confidence.co_sets",
    "iter_co_rows": "xaicore.confidence.co_sets",
    "CoRow": "xaicore.confidence.co_sets",
    "CoScoreResult": "xaicore.confidence.co_sets",
    "run_gax": "xaicore.confidence.gax",
    "GaxResult": "xaicore.confidence.gax",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
