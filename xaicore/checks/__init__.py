"""Checks of explanation methods: parameter-randomization sanity checks and class discrimination.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "run_sanity": "xaicore.checks.sanity",
    "SanityResult": "xaicore.checks.sanity",
    "Verdict": "xaicore.checks.sanity",
    "compare_classes": "xaicore.checks.discriminative",
    "ClassesResult": "xaicore.checks.discriminative",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
