"""Correct and verify: run a correction on a private copy, and the table of figures with its record.

:func:`correct` runs one of :data:`METHODS` on a private copy of a bundle; :func:`verify` measures
the original and every correction on the same test sets (:mod:`xaicore.clever_hans.measures`)
and gives each row a verdict: *fixed* when the false-class rate on stamped non-hearts is at most
:data:`MAX_FALSE_CLASS`, the flip rate at most :data:`MAX_FLIP` and the clean accuracy not lower
than the original's. When the heatmap has left the box (relevance mass under
:data:`CLEAN_FACTOR` times the box's share) but the flip rate stays above :data:`WARN_FLIP`,
the row says so in words: the explanation improved, the behaviour did not (Weber et al.'s
warning). :meth:`Verification.record` is the JSON record that reproduces every figure.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xaicore.clever_hans import aclarc, measures, pclarc, rrr
from xaicore.clever_hans.finetune import FineTune, Progress
from xaicore.data import stamped
from xaicore.errors import ParameterError
from xaicore.models.bundle import ModelBundle
from xaicore.models.default import INPUT_SIZE
from xaicore.runtime.provenance import library_versions

METHODS: dict[str, str] = {"p-clarc": "P-ClArC", "a-clarc": "A-ClArC", "rrr": "RRR"}
MAX_FALSE_CLASS = 0.15
MAX_FLIP = 0.30
WARN_FLIP = 0.40
CLEAN_FACTOR = 2.0
FAST_TUNE = FineTune(epochs=1, images_per_epoch=512, batch_size=64, lr=5e-4)
"""A setting for tests and quick looks: one short epoch."""


@dataclass(frozen=True)
class Correction:
    """A corrected private copy: the method, its bundle, its parameters and its training log."""

    method: str
    bundle: ModelBundle
    parameters: dict[str, Any]
    log: dict[str, Any] = field(default_factory=dict)
    projection: pclarc.Projection | None = None


def correct(
    bundle: ModelBundle,
    *,
    method: str,
    box: measures.Box | None = None,
    settings: FineTune | None = None,
    layer: str = pclarc.DEFAULT_LAYER,
    direction_images: int = 256,
    rrr_scale: float = 1.0,
    validation_images: int = 256,
    progress: Progress | None = None,
) -> Correction:
    """Run ``method`` (a key of :data:`METHODS`) on a private copy of ``bundle``.

    ``settings`` are the fine-tuning knobs of A-ClArC and RRR (default: each method's own);
    ``layer`` and ``direction_images`` P-ClArC's; ``box`` the artifact's box for RRR (default: the
    stamp's); ``rrr_scale`` the factor of RRR's automatic lambda and ``validation_images`` the size of its
    early-stopping set.
    """
    key = method.strip().lower()
    if key not in METHODS:
        raise ParameterError(f"Unknown correction {method!r}; choose one of {', '.join(METHODS)}.")
    if key == "p-clarc":
        seed = settings.seed if settings else 0
        corrected, projection = pclarc.apply_pclarc(bundle, layer=layer, images=direction_images, seed=seed)
        if progress is not None:
            progress(1.0, "direction found")
        params = {"layer": layer, "direction_images": direction_images, "seed": seed}
        return Correction(key, corrected, params, {"reference": projection.reference}, projection)
    if key == "a-clarc":
        tune = settings or FineTune()
        corrected, log = aclarc.apply_aclarc(bundle, settings=tune, progress=progress)
        return Correction(key, corrected, {**vars(tune), "share": 0.5}, log)
    tune = settings or FineTune(epochs=3)
    corrected, log = rrr.apply_rrr(
        bundle,
        box=box,
        settings=tune,
        scale=rrr_scale,
        validation_images=validation_images,
        progress=progress,
    )
    used = list(box or stamped.stamp_box(INPUT_SIZE[0]))
    params = {**vars(tune), "scale": rrr_scale, "box": used, "validation_images": validation_images}
    return Correction(key, corrected, params, log)


@dataclass(frozen=True)
class Row:
    """One model's figures, verdict and warning (empty when none)."""

    name: str
    method: str
    fingerprint: str
    findings: measures.Findings
    fixed: bool
    warning: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "fingerprint": self.fingerprint,
            "figures": self.findings.to_dict(),
            "fixed": self.fixed,
            "warning": self.warning,
        }


def survey_warning(findings: measures.Findings) -> str:
    """The words for a heatmap that left the box while the behaviour stayed (or '')."""
    clean_map = findings.relevance_mass <= CLEAN_FACTOR * findings.box_share
    if clean_map and findings.flip_rate > WARN_FLIP:
        return (
            f"The explanation improved but the behaviour did not: only {findings.relevance_mass:.0%} of the "
            f"relevance lies in the box (its share of the image is {findings.box_share:.0%}), yet pasting the "
            f"stamp still changes {findings.flip_rate:.0%} of the predictions. Do not call this model fixed."
        )
    return ""


def is_fixed(findings: measures.Findings, original: measures.Findings) -> bool:
    return (
        findings.false_class_rate <= MAX_FALSE_CLASS
        and findings.flip_rate <= MAX_FLIP
        and findings.accuracy_clean >= original.accuracy_clean
    )


@dataclass(frozen=True)
class Verification:
    """The table: the original first, then each correction."""

    rows: tuple[Row, ...]
    corrections: tuple[Correction, ...]
    test_seed: int
    test_images: int
    method: str
    box: measures.Box
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def record(self) -> dict[str, Any]:
        """Everything needed to reproduce the table: seeds, parameters, versions, fingerprints."""
        return {
            "test_seed": self.test_seed,
            "test_images": self.test_images,
            "relevance_method": self.method,
            "box": list(self.box),
            "thresholds": {
                "max_false_class": MAX_FALSE_CLASS,
                "max_flip": MAX_FLIP,
                "warn_flip": WARN_FLIP,
                "clean_factor": CLEAN_FACTOR,
            },
            "rows": [row.to_dict() for row in self.rows],
            "corrections": [
                {"method": c.method, "fingerprint": c.bundle.fingerprint, "parameters": c.parameters, "log": c.log}
                for c in self.corrections
            ],
            "versions": library_versions(),
            "created": self.created,
        }


def verify(
    original: ModelBundle,
    corrections: Sequence[Correction],
    tests: measures.TestSets,
    *,
    box: measures.Box | None = None,
    method: str = measures.DEFAULT_METHOD,
    relevance_images: int = 32,
) -> Verification:
    """The table of ``original`` and ``corrections`` on ``tests``."""
    kw: Mapping[str, Any] = {"box": box, "method": method, "relevance_images": relevance_images}
    base = measures.find(original, tests, **kw)
    rows = [Row(original.name, "original", original.fingerprint, base, False, survey_warning(base))]
    for c in corrections:
        found = measures.find(c.bundle, tests, **kw)
        rows.append(
            Row(c.bundle.name, c.method, c.bundle.fingerprint, found, is_fixed(found, base), survey_warning(found))
        )
    return Verification(
        rows=tuple(rows),
        corrections=tuple(corrections),
        test_seed=tests.seed,
        test_images=tests.n,
        method=method,
        box=base.box,
    )


def save(verification: Verification, out_dir: str | Path) -> list[Path]:
    """Write ``clever_hans_table.json`` and each correction's state dict (``<method>.pt``; for
    P-ClArC also ``p-clarc_projection.pt`` with the layer, direction and reference)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "clever_hans_table.json"
    table.write_text(json.dumps(verification.record(), indent=2) + "\n", encoding="utf-8")
    paths = [table]
    for c in verification.corrections:
        path = out / f"{c.method}.pt"
        torch.save({k: v.detach().cpu().clone() for k, v in c.bundle.model.net.state_dict().items()}, path)
        paths.append(path)
        if c.projection is not None:
            extra = out / "p-clarc_projection.pt"
            p = c.projection
            torch.save({"layer": p.layer, "direction": p.direction.cpu(), "reference": p.reference}, extra)
            paths.append(extra)
    return paths
