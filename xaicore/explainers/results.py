"""Results of explaining one image: plain frozen data that the CLI saves and the dashboard draws."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.runtime.provenance import Provenance

COMPLETENESS_TOLERANCE = 0.01  # above this share of its reference, a completeness error is called out


class Status(str, enum.Enum):  # noqa: UP042 - StrEnum would change str() and f-strings from 'Status.OK' to 'ok'
    """What became of one method's attribution."""

    OK = "ok"
    NO_SIGNAL = "no signal"  # every value is zero: nothing to show
    NUMERICAL_ERROR = "numerical error"  # NaN or inf somewhere
    UNAVAILABLE = "unavailable"  # the method cannot run on this model (reason given)
    FAILED = "failed"  # the method raised an error (message given)


def attribution_flags(raw: np.ndarray | torch.Tensor, *, batch_dims: int = 1) -> tuple[Any, Any]:
    """Two boolean arrays over the maps of ``raw``: (all zero, NaN or inf anywhere).

    The first ``batch_dims`` dimensions of ``raw`` index the maps, the others are one map: a
    batch ``(N, 3, H, W)`` has ``batch_dims=1``, a (methods, N, 3, H, W) stack 2, one map 0.
    Tensors give tensors on their device (no host sync); anything else gives numpy arrays.
    """
    if isinstance(raw, torch.Tensor):
        flat = raw.detach().unsqueeze(-1).flatten(batch_dims)
        return (flat == 0).all(dim=-1), ~torch.isfinite(flat).all(dim=-1)
    values = np.asarray(raw)
    lead = values.shape[:batch_dims]
    rows = values.reshape(*lead, math.prod(values.shape[batch_dims:]))
    return ~rows.any(axis=-1), ~np.isfinite(rows).all(axis=-1)


def attribution_status(raw: np.ndarray | torch.Tensor, *, batch_dims: int = 1) -> np.ndarray:
    """The status of every map of ``raw`` (maps indexed as in :func:`attribution_flags`): an
    array of shape ``raw.shape[:batch_dims]`` holding ``"numerical error"`` (NaN or inf
    anywhere), ``"no signal"`` (every value zero) or ``"ok"``."""
    no_signal, numerical = attribution_flags(raw, batch_dims=batch_dims)
    if isinstance(no_signal, torch.Tensor):
        no_signal, numerical = no_signal.cpu().numpy(), numerical.cpu().numpy()
    return np.where(
        numerical, Status.NUMERICAL_ERROR.value, np.where(no_signal, Status.NO_SIGNAL.value, Status.OK.value)
    )


def classify_attribution(values: np.ndarray | torch.Tensor) -> Status:
    """OK, NO_SIGNAL (all zero) or NUMERICAL_ERROR (any NaN or inf) of one map of any shape."""
    return Status(str(attribution_status(values, batch_dims=0)))


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class MethodResult:
    """One method's explanation of one image.

    ``attribution`` is the raw (3, H, W) float32 map in model-input resolution, or ``None``
    when the status is UNAVAILABLE or FAILED; ``reason`` then says why in plain words.
    ``shared_with`` names the methods whose pass this result shared or reused (``runtime_s``
    is then this method's even share of that pass plus its own work). ``layer`` is the layer a
    CAM method used (qualified module name), ``None`` for the other methods.
    """

    method: str
    title: str
    status: Status
    attribution: np.ndarray | None
    target: int
    params: dict[str, Any]
    runtime_s: float
    delta: float | None = None
    reason: str = ""
    shared_with: tuple[str, ...] = ()
    expected: float | None = None
    reference: str = ""
    details: dict[str, float] = field(default_factory=dict)
    layer: str | None = None

    @property
    def relative_error(self) -> float | None:
        """``|delta| / |expected|``: the completeness error as a share of the amount the
        attributions should add up to (``reference``); ``None`` for a method that promises no
        such sum, or when that amount is zero (the error then has no scale)."""
        if self.delta is None or self.expected is None or self.expected == 0 or not math.isfinite(self.expected):
            return None
        return abs(self.delta) / abs(self.expected)

    def completeness(self) -> dict[str, Any] | None:
        """The completeness figures as a JSON-ready dict, ``None`` for a method without them."""
        if self.delta is None or self.expected is None:
            return None
        return {
            "reference": self.reference,
            "expected": self.expected,
            "sum": self.expected + self.delta,
            "error": self.delta,
            "relative_error": self.relative_error,
            "above_tolerance": self.incomplete,
        }

    @property
    def incomplete(self) -> bool:
        """Whether the completeness error is above :data:`COMPLETENESS_TOLERANCE` of its reference."""
        error = self.relative_error
        return error is not None and error > COMPLETENESS_TOLERANCE

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (without the array)."""
        return {
            "method": self.method,
            "title": self.title,
            "status": self.status.value,
            "reason": self.reason,
            "target": self.target,
            "params": self.params,
            "layer": self.layer,
            "runtime_s": self.runtime_s,
            "convergence_delta": self.delta,
            "completeness": self.completeness(),
            "details": dict(self.details),
            "shared_with": list(self.shared_with),
        }


@dataclass(frozen=True)
class ExplainResult:
    """All methods' explanations of one image by one model.

    ``image`` is the model input as an (H, W, 3) float32 array in [0, 1]: the picture that
    heatmaps are drawn over. ``predictions`` are the top-5 classes by probability.
    """

    image: np.ndarray
    image_hash: str
    target: int
    target_label: str
    predictions: tuple[Prediction, ...]
    methods: tuple[MethodResult, ...]
    baseline: str
    provenance: Provenance
    total_runtime_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def by_method(self) -> dict[str, MethodResult]:
        return {m.method: m for m in self.methods}

    def record(self) -> dict[str, Any]:
        """The JSON record: predictions, per-method status, runtime, parameters, provenance."""
        return {
            "image_hash": self.image_hash,
            "target": self.target,
            "target_label": self.target_label,
            "baseline": self.baseline,
            "predictions": [p.__dict__ for p in self.predictions],
            "methods": [m.record() for m in self.methods],
            "total_runtime_s": self.total_runtime_s,
            "provenance": self.provenance.to_dict(),
            **self.extra,
        }

    def attributions(self) -> dict[str, np.ndarray]:
        """Method name -> raw (3, H, W) attribution, for the methods that produced one."""
        return {m.method: m.attribution for m in self.methods if m.attribution is not None}

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``attributions.npz`` and ``explain.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        npz = out / "attributions.npz"
        np.savez_compressed(npz, **self.attributions())  # type: ignore[arg-type]  # numpy's stubs match **arrays to allow_pickle
        js = out / "explain.json"
        js.write_text(json.dumps(self.record(), indent=2))
        return npz, js
