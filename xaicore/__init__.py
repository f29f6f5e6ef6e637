"""xaicore: explain image classifiers, check the explanations, measure them.

The public names below are imported lazily so that ``import xaicore`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # models
    "ModelBundle": "xaicore.models.bundle",
    "load_model": "xaicore.models.loading",
    "list_models": "xaicore.models.loading",
    # images
    "load_image": "xaicore.data.images",
    # explanations
    "explain": "xaicore.explainers.api",
    "list_methods": "xaicore.explainers.registry",
    "get_method": "xaicore.explainers.registry",
    # errors
    "XaiError": "xaicore.errors",
    "ImageLoadError": "xaicore.errors",
    "CheckpointError": "xaicore.errors",
    "ModelNotAvailable": "xaicore.errors",
    "MethodUnavailable": "xaicore.errors",
    "ParameterError": "xaicore.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'xaicore' has no attribute {name!r}")
