"""The machine a run uses: devices and memory-bounded chunks, timing, provenance records.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "default_device": "xaicore.runtime.device",
    "is_oom": "xaicore.runtime.device",
    "run_chunked": "xaicore.runtime.device",
    "synchronize": "xaicore.runtime.timing",
    "best_time": "xaicore.runtime.timing",
    "pass_time": "xaicore.runtime.timing",
    "Provenance": "xaicore.runtime.provenance",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
