"""CO scores over an image set: one row per image, method and AX variant, and the gap between
correctly and wrongly predicted images.

:func:`co_scores` computes one :class:`CoRow` per image, method and variant; :class:`CoGap` figures
say whether the CO scores of correctly predicted images differ from those of wrongly predicted
ones. :func:`iter_co_rows` yields the rows batch by batch, so a caller (the dashboard) keeps every
finished row when the run is interrupted. The scores themselves are :func:`xaicore.confidence.co_ax.ax_co_scores`.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.confidence.co_ax import VARIANTS, AxScores, ax_co_scores
from xaicore.data.imagesets import ImageSet, relabel
from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.models.bundle import ModelBundle
from xaicore.runtime.device import run_chunked
from xaicore.runtime.provenance import Provenance


@dataclass(frozen=True)
class CoRow:
    """One image's CO score for one method and AX variant."""

    image: str
    method: str
    variant: str
    co: float
    predicted: int
    true: int | None
    correct: bool | None
    status: str


@dataclass(frozen=True)
class CoGap:
    """How the CO scores of correctly and wrongly predicted images differ, for one method/variant.

    ``mean_gap = mean(correct) - mean(wrong)`` and ``median_gap`` likewise; ``None`` when one of
    the groups is empty. Rows without a true label or with a non-finite CO score are left out.
    """

    method: str
    variant: str
    n_correct: int
    n_wrong: int
    mean_correct: float | None
    mean_wrong: float | None
    median_correct: float | None
    median_wrong: float | None
    mean_gap: float | None
    median_gap: float | None


@dataclass(frozen=True)
class CoScoreResult:
    """CO scores of AX heatmaps over an image set: rows, per-method gaps, and how the run went."""

    rows: tuple[CoRow, ...]
    gaps: tuple[CoGap, ...]
    methods: tuple[str, ...]
    variants: tuple[str, ...]
    n_images: int
    complete: bool
    skipped: dict[str, str]
    params: dict[str, Any]
    provenance: Provenance
    runtime_s: float = 0.0

    def table(self) -> dict[str, list[Any]]:
        """Column name -> values, in row order (ready for a data frame or a CSV writer)."""
        names = [f.name for f in CoRow.__dataclass_fields__.values()]
        return {name: [getattr(row, name) for row in self.rows] for name in names}

    def record(self) -> dict[str, Any]:
        """The JSON summary (without the rows)."""
        return {
            "n_images": self.n_images,
            "n_rows": len(self.rows),
            "complete": self.complete,
            "methods": list(self.methods),
            "variants": list(self.variants),
            "skipped": dict(self.skipped),
            "gaps": [asdict(g) for g in self.gaps],
            "params": self.params,
            "runtime_s": self.runtime_s,
            "provenance": self.provenance.to_dict(),
        }

    def csv_text(self) -> str:
        """The rows as CSV text: a header, then one line per image, method and variant."""
        columns = self.table()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for values in zip(*columns.values()):
            writer.writerow(["" if v is None else v for v in values])
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> None:
        """Write :meth:`csv_text` to ``path``."""
        Path(path).write_text(self.csv_text())


def co_gaps(rows: Sequence[CoRow], *, methods: Sequence[str], variants: Sequence[str]) -> tuple[CoGap, ...]:
    """One :class:`CoGap` per method and variant from ``rows``."""
    gaps = []
    for method in methods:
        for variant in variants:
            picked = [
                r
                for r in rows
                if r.method == method and r.variant == variant and r.correct is not None and math.isfinite(r.co)
            ]
            right = np.array([r.co for r in picked if r.correct], dtype=np.float64)
            wrong = np.array([r.co for r in picked if not r.correct], dtype=np.float64)
            mean_c, mean_w = _stat(np.mean, right), _stat(np.mean, wrong)
            med_c, med_w = _stat(np.median, right), _stat(np.median, wrong)
            gaps.append(
                CoGap(
                    method=method,
                    variant=variant,
                    n_correct=int(right.size),
                    n_wrong=int(wrong.size),
                    mean_correct=mean_c,
                    mean_wrong=mean_w,
                    median_correct=med_c,
                    median_wrong=med_w,
                    mean_gap=None if mean_c is None or mean_w is None else mean_c - mean_w,
                    median_gap=None if med_c is None or med_w is None else med_c - med_w,
                )
            )
    return tuple(gaps)


def _stat(fn: Callable[[np.ndarray], Any], values: np.ndarray) -> float | None:
    return float(fn(values)) if values.size else None


@dataclass(frozen=True)
class _Item:
    array: np.ndarray
    name: str
    label: int | None


def _for_model(bundle: ModelBundle, image_set: Any) -> Any:
    """An :class:`ImageSet` labelled with other class names gets its labels matched to the model's
    classes by name (:func:`~xaicore.data.imagesets.relabel`); anything else is used as given."""
    if isinstance(image_set, ImageSet):
        return relabel(image_set, bundle.labels)
    return image_set


def _items(image_set: Any) -> list[_Item]:
    """The (array, name, label) items of an image set or of a sequence of such items."""
    raw = getattr(image_set, "items", image_set)
    items = []
    for i, item in enumerate(raw):
        label = getattr(item, "label", None)
        items.append(
            _Item(
                array=np.asarray(item.array),
                name=str(getattr(item, "name", f"image {i}")),
                label=None if label is None else int(label),
            )
        )
    if not items:
        raise ParameterError("The image set is empty: give at least one image.")
    return items


@dataclass(frozen=True)
class CoBatch:
    """The rows of one method on images ``start:stop`` of the set (empty when the method was skipped)."""

    start: int
    stop: int
    method: str
    rows: tuple[CoRow, ...]


def iter_co_rows(
    bundle: ModelBundle,
    image_set: Any,
    *,
    methods: Sequence[str],
    variants: Sequence[str] = VARIANTS,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
    batch_size: int = 16,
    skipped: dict[str, str] | None = None,
) -> Generator[CoBatch, None, None]:
    """Yield one :class:`CoBatch` per batch of images and method, lazily and in order.

    Methods the model cannot run yield empty batches; their reasons go into ``skipped`` when a
    dict is given. Stochastic methods use ``seed`` for every batch, so results are reproducible
    for a given ``batch_size``; a batch that does not fit in memory is split
    (:func:`xaicore.runtime.device.run_chunked`). Stop iterating at any time: every yielded row is final.
    """
    if not methods:
        raise ParameterError("Choose at least one explanation method.")
    if batch_size < 1:
        raise ParameterError("batch_size must be at least 1.")
    items = _items(_for_model(bundle, image_set))
    params = dict(params or {})
    unusable: dict[str, str] = {} if skipped is None else skipped
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        stop = start + len(chunk)
        for item in chunk:
            if item.label is not None:
                bundle.class_index(item.label)
        inputs = torch.cat([bundle.to_input(item.array) for item in chunk])
        labels = [item.label for item in chunk]
        for method in methods:
            if method in unusable:
                yield CoBatch(start, stop, method, ())
                continue

            def score(
                a: int, b: int, method: str = method, inputs: torch.Tensor = inputs, labels: list = labels
            ) -> AxScores:
                return ax_co_scores(
                    bundle,
                    inputs[a:b],
                    method=method,
                    true_labels=labels[a:b],
                    variants=variants,
                    seed=seed,
                    params=params.get(method),
                    baseline=baseline,
                )

            try:
                scores = run_chunked(score, len(chunk), chunk=len(chunk), combine=_join_scores)
            except MethodUnavailable as exc:
                unusable[method] = str(exc)
                yield CoBatch(start, stop, method, ())
                continue
            yield CoBatch(start, stop, method, tuple(_rows(chunk, method, variants, scores)))


def _join_scores(parts: Sequence[AxScores]) -> AxScores:
    if len(parts) == 1:
        return parts[0]
    return AxScores(
        predicted=np.concatenate([p.predicted for p in parts]),
        co_target=np.concatenate([p.co_target for p in parts]),
        co={v: np.concatenate([p.co[v] for p in parts]) for v in parts[0].co},
        status=np.concatenate([p.status for p in parts]),
    )


def _rows(chunk: Sequence[_Item], method: str, variants: Sequence[str], scores: AxScores) -> Iterator[CoRow]:
    for j, item in enumerate(chunk):
        predicted = int(scores.predicted[j])
        for variant in variants:
            yield CoRow(
                image=item.name,
                method=method,
                variant=variant,
                co=float(scores.co[variant][j]),
                predicted=predicted,
                true=item.label,
                correct=None if item.label is None else predicted == item.label,
                status=str(scores.status[j]),
            )


def co_scores(
    bundle: ModelBundle,
    image_set: Any,
    *,
    methods: Sequence[str],
    variants: Sequence[str] = VARIANTS,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
    batch_size: int = 16,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CoScoreResult:
    """CO scores of every method's AX heatmaps over an image set.

    Parameters
    ----------
    bundle:
        The model.
    image_set:
        An ``ImageSet`` (:mod:`xaicore.data.imagesets`) or a sequence of items with ``array``
        ((H, W, 3) in [0, 1]), ``name`` and ``label`` (class index or ``None``).
    methods:
        Registered explanation method names.
    variants:
        AX variants, from :data:`VARIANTS`.
    seed, params, baseline:
        Passed to the explainers (``params`` maps method name -> its parameters).
    batch_size:
        Images per batch.
    progress:
        Called after each method and batch with (done, total, method), counted in
        images x methods.
    should_stop:
        Checked after each method and batch; when it returns true the run ends, the rows
        computed so far are kept and ``complete`` is false.
    """
    started = time.perf_counter()
    items = _items(_for_model(bundle, image_set))
    skipped: dict[str, str] = {}
    rows: list[CoRow] = []
    total = len(items) * len(methods)
    done = 0
    batches = iter_co_rows(
        bundle,
        items,
        methods=methods,
        variants=variants,
        seed=seed,
        params=params,
        baseline=baseline,
        batch_size=batch_size,
        skipped=skipped,
    )
    for batch in batches:
        rows.extend(batch.rows)
        done += batch.stop - batch.start
        if progress is not None:
            progress(done, total, batch.method)
        if should_stop is not None and done < total and should_stop():
            break
    batches.close()
    return summarize(
        bundle,
        rows,
        methods=methods,
        variants=variants,
        n_images=len(items),
        complete=done == total,
        skipped=skipped,
        seed=seed,
        params=params,
        baseline=baseline,
        runtime_s=time.perf_counter() - started,
    )


def summarize(
    bundle: ModelBundle,
    rows: Sequence[CoRow],
    *,
    methods: Sequence[str],
    variants: Sequence[str] = VARIANTS,
    n_images: int,
    complete: bool,
    skipped: Mapping[str, str] | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    baseline: str = "black",
    runtime_s: float = 0.0,
) -> CoScoreResult:
    """A :class:`CoScoreResult` from rows (also from the partial rows of an interrupted run)."""
    return CoScoreResult(
        rows=tuple(rows),
        gaps=co_gaps(rows, methods=methods, variants=variants),
        methods=tuple(methods),
        variants=tuple(variants),
        n_images=n_images,
        complete=complete,
        skipped=dict(skipped or {}),
        params={"baseline": baseline, "method_params": {k: dict(v) for k, v in dict(params or {}).items()}},
        provenance=Provenance(
            model_name=bundle.name,
            model_fingerprint=bundle.fingerprint,
            seed=seed,
            device=str(bundle.device),
            preprocessing=bundle.preprocess.record(),
        ),
        runtime_s=runtime_s,
    )
