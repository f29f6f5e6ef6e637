"""Explanation methods behind one registry, and the one call that runs them: :func:`explain`.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "explain": "xaicore.explainers.api",
    "attribute": "xaicore.explainers.api",
    "attribute_many": "xaicore.explainers.api",
    "ExplainResult": "xaicore.explainers.results",
    "MethodResult": "xaicore.explainers.results",
    "Prediction": "xaicore.explainers.results",
    "classify_attribution": "xaicore.explainers.results",
    "attribution_status": "xaicore.explainers.results",
    "resolve_methods": "xaicore.explainers.api",
    "MethodSpec": "xaicore.explainers.registry",
    "register_method": "xaicore.explainers.registry",
    "list_methods": "xaicore.explainers.registry",
    "get_method": "xaicore.explainers.registry",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
