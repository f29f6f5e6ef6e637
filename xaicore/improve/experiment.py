"""Soft-masking over several seeds: presets, the per-seed runs and the table with 95% intervals.

Each seed trains its own classifier C on ``hard`` and its own mask networks, so the intervals
cover both. ``(b) - (c)`` per seed is the gain an explanation really brings (a deployable IG
map against the same extra capacity fed nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xaicore.errors import ParameterError
from xaicore.improve import classifier, data
from xaicore.improve.softmask import PROTOCOLS, Progress, SoftMaskParams, SoftMaskResult, run_softmask
from xaicore.metrics.intervals import t_interval


@dataclass(frozen=True)
class Preset:
    """How much data and training a soft-masking run gets."""

    classifier_epochs: int
    mask_train_images: int
    params: SoftMaskParams


PRESETS: dict[str, Preset] = {
    # a few minutes for three seeds on one CPU thread
    "cpu": Preset(6, 2000, SoftMaskParams(epochs=10, patience=2, ig_steps=8)),
    # the whole training set, longer training, finer IG
    "gpu": Preset(12, data.TRAIN_SIZE, SoftMaskParams(epochs=40, patience=6, ig_steps=32)),
}


@dataclass(frozen=True)
class SoftMaskTable:
    """The runs of every seed and the mean with a 95% t interval per protocol."""

    data: str
    preset: str
    runs: tuple[SoftMaskResult, ...]

    def summary(self) -> dict[str, dict[str, Any]]:
        rows = {p: t_interval([r.accuracies[p] for r in self.runs]).record() for p in PROTOCOLS}
        rows["baseline"] = t_interval([r.baseline for r in self.runs]).record()
        gain = [r.accuracies["predicted_ig"] - r.accuracies["zero"] for r in self.runs]
        rows["gain_predicted_minus_zero"] = t_interval(gain).record()
        return rows

    def ordering_holds(self) -> bool:
        """Whether the means follow (d) >= (a) > (b) >= (c) >= baseline."""
        m = {k: v["mean"] for k, v in self.summary().items()}
        return m["onehot"] >= m["true_ig"] > m["predicted_ig"] >= m["zero"] >= m["baseline"]

    def record(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "preset": self.preset,
            "seeds": [r.seed for r in self.runs],
            "runs": [r.record() for r in self.runs],
            "summary": self.summary(),
            "ordering_d_ge_a_gt_b_ge_c_ge_baseline": self.ordering_holds(),
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "softmask_table.json"
        path.write_text(json.dumps(self.record(), indent=2, sort_keys=True))
        return path


def run_seeds(
    *, name: str = data.NAME, preset: str = "cpu", seeds: Sequence[int], progress: Progress | None = None
) -> SoftMaskTable:
    """Train C and the mask networks for every seed and measure the four protocols on the test set."""
    if preset not in PRESETS:
        raise ParameterError(f"The preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    if not seeds:
        raise ParameterError("Give at least one seed.")
    chosen = PRESETS[preset]
    say = progress or (lambda _line: None)
    train, test = data.load(name, "train"), data.load(name, "test")
    runs = []
    for seed in seeds:
        say(f"seed {seed}: training the classifier")
        bundle = classifier.train_classifier(train, seed=seed, epochs=chosen.classifier_epochs)
        result = run_softmask(
            bundle, train=train.head(chosen.mask_train_images), test=test, seed=seed, params=chosen.params, progress=say
        )
        runs.append(result)
        say(
            f"seed {seed}: baseline {result.baseline:.1%}, "
            + ", ".join(f"{k} {v:.1%}" for k, v in result.accuracies.items())
        )
    return SoftMaskTable(data=name, preset=preset, runs=tuple(runs))
