"""The result of a sanity check by model-parameter randomization: values, verdicts, export.

:class:`SanityResult` holds the similarity of every randomized model's maps to the trained model's
(per mode, method, seed, step and image) and one :class:`Verdict` per method; it writes itself as
JSON, CSV and .npz. The run that makes it is :func:`xaicore.checks.sanity.run_sanity`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.errors import ParameterError
from xaicore.runtime.provenance import Provenance

MODES = ("cascading", "independent")


TARGET_POLICIES = ("original", "randomized_prediction")


METRICS = ("ssim_abs", "ssim_signed", "spearman_abs", "spearman_signed")


KINDS = ("abs", "signed")


KEEP_MAPS = ("none", "first", "all")


DEFAULT_THRESHOLD = 0.9


DEFAULT_SEEDS = (0, 1, 2, 3, 4)


MAX_SEEDS = 100
"""Most randomization seeds in one check: each seed is a randomized model per layer and mode."""


VERDICT_RULE = (
    "A method fails when the mean SSIM (absolute maps) between its trained-model map and its map after "
    "randomizing only the output layer is at or above the threshold; it passes below it, and is "
    "undetermined when the trained map has no signal or a numerical error."
)


@dataclass(frozen=True)
class Verdict:
    """The outcome of the sanity check for one method (rule: :data:`VERDICT_RULE`).

    ``value`` is the mean over seeds of the SSIM (absolute maps) after randomizing only the
    output layer; ``status`` is ``"pass"``, ``"fail"`` or ``"undetermined"`` (``reason`` says why).
    """

    method: str
    status: str
    value: float
    threshold: float
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class SanityResult:
    """Everything a sanity check found, as plain data (rendering never recomputes).

    Axes of the arrays: ``modes`` x ``methods`` x ``seeds`` x steps x images. Step ``i``
    randomizes ``steps[i]`` (``steps`` is ``layers`` reversed: output layer first); in cascading
    mode every layer of ``steps[: i + 1]`` holds random weights during step ``i``.

    Attributes
    ----------
    values:
        Metric name (:data:`METRICS`) -> float64 array (modes, methods, seeds, steps, images).
    trained_maps:
        ``"abs"`` / ``"signed"`` -> float32 (methods, images, H, W): the trained model's maps after
        the normalization named in ``params["normalizations"]``.
    maps:
        Same keys -> float32 (modes, methods, len(map_seeds), steps, images, H, W): the compared
        randomized maps for the seeds in ``map_seeds`` (all seeds, the first one, or none).
    targets:
        (images,) classes explained on the trained model.
    step_targets:
        int64 (modes, seeds, steps, images): the class explained on each randomized model.
    no_signal, numerical_error:
        bool (modes, methods, seeds, steps, images): the randomized raw map was all zero / had
        NaN or inf (similarities with a NaN map are NaN).
    trained_status:
        (methods, images) ``"ok"``, ``"no signal"`` or ``"numerical error"`` of the trained maps.
    """

    methods: tuple[str, ...]
    titles: tuple[str, ...]
    modes: tuple[str, ...]
    layers: tuple[str, ...]
    seeds: tuple[int, ...]
    map_seeds: tuple[int, ...]
    image: np.ndarray
    targets: np.ndarray
    step_targets: np.ndarray
    values: Mapping[str, np.ndarray]
    trained_maps: Mapping[str, np.ndarray]
    maps: Mapping[str, np.ndarray]
    no_signal: np.ndarray
    numerical_error: np.ndarray
    trained_status: np.ndarray
    verdicts: tuple[Verdict, ...]
    params: Mapping[str, Any]
    provenance: Provenance
    runtime_s: float = 0.0
    labels: tuple[str, ...] = field(default=(), repr=False)

    @property
    def steps(self) -> tuple[str, ...]:
        """The layer randomized at each step, output layer first."""
        return tuple(reversed(self.layers))

    def per_seed(self, metric: str, *, mode: str, method: str) -> np.ndarray:
        """(seeds, steps) values of ``metric``: each seed's mean over the images."""
        return self._slice(metric, mode, method).mean(axis=-1)

    def mean(self, metric: str, *, mode: str, method: str) -> np.ndarray:
        """(steps,) mean over seeds of :meth:`per_seed`."""
        return self.per_seed(metric, mode=mode, method=method).mean(axis=0)

    def std(self, metric: str, *, mode: str, method: str) -> np.ndarray:
        """(steps,) population standard deviation over seeds of :meth:`per_seed`."""
        return self.per_seed(metric, mode=mode, method=method).std(axis=0)

    def verdict(self, method: str) -> Verdict:
        return self.verdicts[self._index(self.methods, method, "method")]

    def with_threshold(self, threshold: float) -> SanityResult:
        """The same result judged with another SSIM threshold (nothing is recomputed)."""
        check_threshold(threshold)
        verdicts = judge_methods(self.values["ssim_abs"], self.trained_status, self.methods, threshold)
        params = {**self.params, "threshold": float(threshold)}
        return dataclasses.replace(self, verdicts=verdicts, params=params)

    def _slice(self, metric: str, mode: str, method: str) -> np.ndarray:
        if metric not in self.values:
            raise ParameterError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
        i = self._index(self.modes, mode, "mode")
        j = self._index(self.methods, method, "method")
        return self.values[metric][i, j]

    @staticmethod
    def _index(options: tuple[str, ...], value: str, what: str) -> int:
        if value not in options:
            raise ParameterError(f"This result has no {what} {value!r}; it has {', '.join(options)}.")
        return options.index(value)

    # ------------------------------------------------------------------ export

    def record(self) -> dict[str, Any]:
        """The JSON record: per method, the ordered layers, per-seed values, mean, std, verdict."""
        methods = {}
        for j, method in enumerate(self.methods):
            modes = {}
            for mode in self.modes:
                entry: dict[str, Any] = {}
                for metric in METRICS:
                    entry[metric] = {
                        "per_seed": self.per_seed(metric, mode=mode, method=method).tolist(),
                        "mean": self.mean(metric, mode=mode, method=method).tolist(),
                        "std": self.std(metric, mode=mode, method=method).tolist(),
                    }
                    if self.image.shape[0] > 1:
                        entry[metric]["per_image"] = self._slice(metric, mode, method).tolist()
                i = self.modes.index(mode)
                entry["no_signal_steps"] = self.no_signal[i, j].any(axis=(0, 2)).tolist()
                entry["numerical_error_steps"] = self.numerical_error[i, j].any(axis=(0, 2)).tolist()
                modes[mode] = entry
            v = self.verdicts[j]
            methods[method] = {
                "title": self.titles[j],
                "layers_forward_order": list(self.layers),
                "steps": list(self.steps),
                "trained_status": self.trained_status[j].tolist(),
                "modes": modes,
                "verdict": {"status": v.status, "value": v.value, "threshold": v.threshold, "reason": v.reason},
            }
        return {
            "kind": "sanity",
            "model": self.provenance.model_name,
            "seeds": list(self.seeds),
            "modes": list(self.modes),
            "targets": self.targets.tolist(),
            "target_labels": [self.labels[t] if t < len(self.labels) else str(t) for t in self.targets.tolist()],
            "step_targets": {mode: self.step_targets[i].tolist() for i, mode in enumerate(self.modes)},
            "verdict_rule": VERDICT_RULE,
            "params": dict(self.params),
            "methods": methods,
            "runtime_s": self.runtime_s,
            "provenance": self.provenance.to_dict(),
        }

    def to_csv(self) -> str:
        """All values, one row per (mode, method, seed, step, image, metric)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["mode", "method", "seed", "step", "layer", "image", "metric", "value"])
        steps = self.steps
        for metric in METRICS:
            data = self.values[metric]
            for (i, j, s, t, n), value in np.ndenumerate(data):
                writer.writerow(
                    [self.modes[i], self.methods[j], self.seeds[s], t, steps[t], n, metric, repr(float(value))]
                )
        return out.getvalue()

    def save(self, out_dir: str | Path, *, save_maps: bool = False) -> list[Path]:
        """Write ``sanity.json`` and, with ``save_maps``, ``sanity_maps.npz`` into ``out_dir``.

        The npz holds ``trained_<kind>`` (methods, images, H, W) and ``randomized_<kind>``
        (modes, methods, map seeds, steps, images, H, W) for both kinds of maps, plus the axis
        labels, so that every similarity can be recomputed independently.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "sanity.json"]
        paths[0].write_text(json.dumps(self.record(), indent=2))
        if save_maps:
            if not self.map_seeds:
                raise ParameterError("This result kept no maps; run the check with keep_maps='all' to save them.")
            arrays: dict[str, np.ndarray] = {}
            for kind in KINDS:
                arrays[f"trained_{kind}"] = self.trained_maps[kind]
                arrays[f"randomized_{kind}"] = self.maps[kind]
            arrays.update(
                modes=np.array(self.modes),
                methods=np.array(self.methods),
                map_seeds=np.array(self.map_seeds, dtype=np.int64),
                steps=np.array(self.steps),
                normalizations=np.array([self.params["normalizations"][k] for k in KINDS]),
            )
            paths.append(out / "sanity_maps.npz")
            # mypy matches **arrays against allow_pickle (a bool); no map is named so
            np.savez_compressed(paths[1], **arrays)  # type: ignore[arg-type]
        return paths


def check_threshold(threshold: float) -> None:
    if not 0.0 < float(threshold) <= 1.0:
        raise ParameterError(f"The SSIM threshold must be in (0, 1]; got {threshold}.")


def judge_methods(
    ssim_abs: np.ndarray, trained_status: np.ndarray, methods: Sequence[str], threshold: float
) -> tuple[Verdict, ...]:
    """One verdict per method from the (modes, methods, seeds, steps, images) SSIM of absolute maps."""
    output_only = ssim_abs[0, :, :, 0].mean(axis=-1).mean(axis=-1)  # step 0, mean over images then seeds
    return tuple(_verdict(m, output_only[j], trained_status[j], threshold) for j, m in enumerate(methods))


def _verdict(method: str, value: float, trained_status: np.ndarray, threshold: float) -> Verdict:
    bad = [s for s in trained_status if s != "ok"]
    if bad:
        return Verdict(method, "undetermined", float(value), float(threshold), f"the trained model's map: {bad[0]}")
    if not np.isfinite(value):
        return Verdict(method, "undetermined", float(value), float(threshold), "numerical error after randomization")
    if value >= threshold:
        return Verdict(
            method,
            "fail",
            float(value),
            float(threshold),
            f"SSIM {value:.2f} >= {threshold:.2f} after randomizing the output layer: the map barely changed",
        )
    return Verdict(
        method,
        "pass",
        float(value),
        float(threshold),
        f"SSIM {value:.2f} < {threshold:.2f} after randomizing the output layer: the map depends on the weights",
    )
