"""Models: the bundle that carries a network with its preprocessing, loading, the default model,
rewrites, weight randomization, training and the fast inference copy.

The names below are imported lazily, from the module named beside each.
"""

from xaicore.runtime.lazy import lazy_exports

_NAMES = {
    "ModelBundle": "xaicore.models.bundle",
    "load_model": "xaicore.models.loading",
    "list_models": "xaicore.models.loading",
    "load_default_bundle": "xaicore.models.default",
    "LayerRandomizer": "xaicore.models.randomization",
    "TrainConfig": "xaicore.models.training",
    "train_default_model": "xaicore.models.training",
    "InferenceCopy": "xaicore.models.inference",
    "inference_copy": "xaicore.models.inference",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
