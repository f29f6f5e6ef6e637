"""Measures of maps: similarity (SSIM, Spearman), localization, faithfulness curves, intervals.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "ssim": "xaicore.metrics.similarity",
    "ssim_batch": "xaicore.metrics.similarity",
    "spearman": "xaicore.metrics.similarity",
    "spearman_batch": "xaicore.metrics.similarity",
    "compare_maps": "xaicore.metrics.similarity",
    "localization_scores": "xaicore.metrics.localization",
    "pointing_game": "xaicore.metrics.localization",
    "Interval": "xaicore.metrics.intervals",
    "t_interval": "xaicore.metrics.intervals",
    "wilson_interval": "xaicore.metrics.intervals",
    "welch_interval": "xaicore.metrics.intervals",
    "FaithfulnessResult": "xaicore.metrics.faithfulness",
    "insertion_deletion": "xaicore.metrics.faithfulness",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
