"""What every result records about how it was made: library versions, model, seed, time."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

_PACKAGES = ("xaicore", "torch", "torchvision", "captum", "numpy", "scikit-image", "pillow")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Provenance:
    """Which model, seed, device and library versions produced a result, and when.

    ``preprocessing`` says how images became the model's input (the rule of
    :class:`~xaicore.models.preprocess.Preprocess`, and for one image what it did: sizes, the
    box of the image that was kept, cropped or not); ``None`` where not recorded.
    """

    model_name: str
    model_fingerprint: str
    seed: int
    device: str
    preprocessing: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
