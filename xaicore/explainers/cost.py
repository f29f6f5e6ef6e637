"""What a run will cost before it starts: work units x the model's measured pass time.

A method's work on one image is counted in plain forward+backward passes of the model
(:attr:`MethodSpec.units`: 1 for the single-pass methods, the step or sample count for the
path and sampling methods, the patch positions for Occlusion, and for Score-CAM a forward pass
per channel of the CAM layer, :attr:`MethodSpec.per_channel`). The model's pass time is
measured once per model, device and input size (four passes on one image, under the model's
lock) and kept for the process. Batched
steps and samples run a little faster per image than that single pass, so estimates err on the
long side. An :class:`Estimate` multiplies the two; it is a guide for the
person waiting (the real time varies with the machine's load by tens of percent), not a promise.

``quick`` separates what can run without asking from what should wait for a click: every
method whose own estimate is within ``budget_s``; on a slow model that leaves the single-pass
methods.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xaicore.errors import XaiError
from xaicore.explainers.registry import get_method
from xaicore.models.bundle import ModelBundle
from xaicore.runtime.timing import pass_time

QUICK_BUDGET_S = 1.5  # a method that should take longer than this waits for a click
SAMPLES = 5  # the pass time kept is the fastest of this many measurements, one per estimate
_PASS_S: dict[tuple[str, str, tuple[int, int]], tuple[float, int]] = {}  # key -> (fastest, measurements)
_PASS_LOCK = threading.Lock()


def measured_pass_s(bundle: ModelBundle) -> float:
    """Seconds of one plain forward+backward pass of ``bundle`` on one image.

    The first call measures the best of three passes after a warm-up; each of the next
    ``SAMPLES - 1`` calls times one more pass, and the fastest is kept: a first measurement
    slowed by other work on the machine does not stay the estimate for the rest of the process.
    """
    key = _key(bundle)
    with _PASS_LOCK:
        fastest, count = _PASS_S.get(key, (math.inf, 0))
        if count < SAMPLES:
            repeats = 3 if count == 0 else 1
            seconds = pass_time(bundle, batch=1, repeats=repeats, forward=False)["forward_backward_s"]
            fastest, count = min(fastest, seconds), count + 1
            _PASS_S[key] = (fastest, count)
        return fastest


def forget_pass_times() -> None:
    """Drop the measured pass times (the next estimate measures again, as for a new model)."""
    with _PASS_LOCK:
        _PASS_S.clear()


def _key(bundle: ModelBundle) -> tuple[str, str, tuple[int, int]]:
    return (bundle.fingerprint, str(bundle.device), (bundle.input_size[0], bundle.input_size[1]))


def method_units(name: str, params: Mapping[str, Any] | None, size: tuple[int, int], *, channels: int = 0) -> float:
    """Work of method ``name`` with ``params`` (defaults filled in) on one ``size`` image, in passes,
    with a CAM layer of ``channels`` channels (Score-CAM's work grows with them).

    Settings the method will refuse (an occlusion window larger than the image) cost nothing:
    the method fails at once with its own message.
    """
    spec = get_method(name)
    try:
        units = float(spec.units(spec.resolve_params(params), (int(size[0]), int(size[1]))))
    except XaiError:
        return 0.0
    return units + spec.per_channel * channels


def cam_channels(bundle: ModelBundle, methods: Sequence[str]) -> int:
    """Channels of ``bundle``'s CAM layer when one of ``methods`` costs per channel, else 0 (no
    forward pass is made to find them)."""
    if not any(get_method(m).per_channel for m in methods):
        return 0
    shape = bundle.cam_layer_shape()
    return 0 if shape is None else shape[0]


@dataclass(frozen=True)
class Estimate:
    """Per-method work (passes per image) and the pass time it is multiplied by."""

    units: Mapping[str, float]
    pass_s: float
    images: int = 1

    def seconds(self, name: str) -> float:
        return self.units[name] * self.images * self.pass_s

    @property
    def total_units(self) -> float:
        return sum(self.units.values()) * self.images

    @property
    def total_s(self) -> float:
        return self.total_units * self.pass_s

    def quick(self, budget_s: float = QUICK_BUDGET_S) -> list[str]:
        """Methods whose own estimate is within ``budget_s``, in the given order."""
        return [name for name in self.units if self.seconds(name) <= budget_s]


def plan_run(
    estimate: Estimate, *, pressed: bool, auto: bool, stopped: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """The methods to start now among those not computed yet (``estimate.units``): all of them
    when the user pressed Run; with automatic runs, the quick ones (:meth:`Estimate.quick`) the
    user did not stop; otherwise none."""
    if pressed:
        return list(estimate.units)
    if not auto:
        return []
    return [name for name in estimate.quick() if name not in stopped]


def estimate(
    bundle: ModelBundle,
    methods: Sequence[str],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    images: int = 1,
    repeat: int = 1,
    pass_s: float | None = None,
) -> Estimate:
    """The work of running ``methods`` on ``images`` images ``repeat`` times (e.g. once per
    randomized layer and seed), at the model's measured pass time unless ``pass_s`` is given."""
    size = (bundle.input_size[0], bundle.input_size[1])
    channels = cam_channels(bundle, methods)
    units = {
        get_method(m).name: method_units(m, (params or {}).get(get_method(m).name), size, channels=channels) * repeat
        for m in methods
    }
    return Estimate(units=units, pass_s=measured_pass_s(bundle) if pass_s is None else pass_s, images=images)


def seconds_for(bundle: ModelBundle, units: float) -> float:
    """Seconds of ``units`` passes of ``bundle`` (work other than the methods: GAX steps, curves)."""
    return units * measured_pass_s(bundle)


def describe_seconds(seconds: float) -> str:
    """A duration in words for a person waiting: "under a second", "about 40 s", "about 3 min"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {math.ceil(seconds)} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
