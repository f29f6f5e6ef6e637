"""Evaluating explanation methods over a set of images: one row per image and method.

For every image and method, a row records the class explained, the prediction and the
requested metrics:

* ``insertion`` / ``deletion`` -- AUCs of :func:`xaicore.metrics.faithfulness.insertion_deletion`
  (definition in :data:`xaicore.metrics.faithfulness.DEFINITION`);
* ``pointing`` / ``mass`` / ``rank`` -- pointing game, relevance mass and relevance rank
  accuracy of :mod:`xaicore.metrics.localization`, for images with an object mask (``None`` otherwise);
* ``runtime`` -- seconds of the method's attribution per image (the batch time divided by the
  images in the batch; the faithfulness and localization work is not counted).

Alongside the methods, a **random control** (method ``"random"``) ranks pixels by uniform noise
drawn from a generator seeded from ``(seed, first image of the batch)``; its rows give the
chance level of every metric and the paired comparisons of the summary.

**Targets.** With ``target="label"`` (default) an image is explained for its true class when it
has one and for the predicted class otherwise; ``target="predicted"`` always uses the prediction.

**Rows are final.** Images are processed in fixed batches of ``batch_size`` (batch ``b`` holds
images ``b * batch_size`` to ``(b + 1) * batch_size - 1``); a batch yields its rows as soon as it
is done. Rows already known (``done``) are not computed again; a batch with any missing row is
recomputed as a whole (stochastic methods draw their noise per batch) and only its missing rows
are yielded, so a resumed run gives the rows of an uninterrupted one.

**Row status.** ``"ok"``; ``"no signal"`` (an all-zero map) and ``"numerical error"`` (NaN or
inf) rows keep the runtime but no metric; ``"failed"`` rows carry the error; a method the model
cannot run is left out of the settings with its reason (``EvalSettings.skipped``).

**Summary** (:func:`summarize`): per method, for each metric, the mean and 95% interval over its
"ok" rows (:mod:`xaicore.metrics.intervals`: Student t for continuous scores, Wilson for the pointing
hit rate), and the paired difference against the random control on the same images (paired t).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xaicore.data.images import image_hash
from xaicore.data.imagesets import match_class
from xaicore.errors import MethodUnavailable, ParameterError, XaiError
from xaicore.explainers.api import attribute, method_seed, resolve_methods
from xaicore.explainers.baselines import BASELINE_KINDS
from xaicore.explainers.registry import get_method
from xaicore.explainers.results import attribution_flags, attribution_status
from xaicore.metrics.faithfulness import BACKGROUNDS, RANDOM, curve_steps, insertion_deletion
from xaicore.metrics.intervals import Interval, paired_differences, t_interval, wilson_interval
from xaicore.metrics.localization import localization_scores
from xaicore.models.bundle import ModelBundle
from xaicore.runtime.provenance import Provenance

METRICS = ("insertion", "deletion", "pointing", "mass", "rank", "runtime")
FAITHFULNESS = ("insertion", "deletion")
LOCALIZATION = ("pointing", "mass", "rank")
TARGETS = ("label", "predicted")
STATUSES = ("ok", "no signal", "numerical error", "failed", "unavailable")
RANDOM_TITLE = "Random control"
DEFAULT_BATCH = 8

# metric name -> the row field holding it
FIELDS = {
    "insertion": "insertion_auc",
    "deletion": "deletion_auc",
    "pointing": "pointing_hit",
    "mass": "relevance_mass",
    "rank": "relevance_rank",
    "runtime": "runtime_s",
}

ProgressFn = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides the rows of an evaluation; two runs with equal settings give
    equal rows. ``params`` holds every method's resolved parameters (defaults included) and
    ``data_digest`` the sha256 of the images, labels and masks, in order."""

    model_name: str
    model_fingerprint: str
    data: str
    data_digest: str
    n_images: int
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    target: str = "label"
    seed: int = 0
    baseline: str = "black"
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    step_fraction: float = 0.01
    fraction: float = 1.0
    background: str = "black"
    batch_size: int = DEFAULT_BATCH
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def with_control(self) -> bool:
        """Whether random-control rows are computed (any metric besides runtime)."""
        return any(m != "runtime" for m in self.metrics)

    @property
    def row_methods(self) -> tuple[str, ...]:
        """Methods that get rows, the random control last."""
        return self.methods + ((RANDOM,) if self.with_control else ())

    def record(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples)."""
        out = asdict(self)
        out["methods"] = list(self.methods)
        out["metrics"] = list(self.metrics)
        out["params"] = {k: dict(v) for k, v in self.params.items()}
        out["skipped"] = dict(self.skipped)
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EvalSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise ParameterError(f"These evaluation settings are not understood: {', '.join(unknown)}.")
        values = dict(record)
        values["methods"] = tuple(values.get("methods", ()))
        values["metrics"] = tuple(values.get("metrics", ()))
        return cls(**values)

    def differences(self, other: EvalSettings) -> list[str]:
        """Names of the settings that differ from ``other``'s (compared as JSON, as stored)."""
        mine, theirs = (json.loads(json.dumps(s.record())) for s in (self, other))
        return [name for name in mine if mine[name] != theirs.get(name)]


def data_digest(items: Sequence[Any], class_names: Sequence[str]) -> str:
    """sha256 over the class names and every item's name, label, image and mask, in order."""
    digest = hashlib.sha256()
    digest.update(repr(tuple(class_names)).encode())
    for item in items:
        mask = getattr(item, "mask", None)
        digest.update(repr((str(item.name), item.label)).encode())
        digest.update(image_hash(np.asarray(item.array)).encode())
        if mask is not None:
            m = np.ascontiguousarray(mask, dtype=bool)
            digest.update(repr(m.shape).encode())
            digest.update(m.tobytes())
    return digest.hexdigest()


def make_settings(
    bundle: ModelBundle,
    image_set: Any,
    *,
    methods: Sequence[str],
    metrics: Sequence[str] = METRICS,
    data: str = "",
    target: str = "label",
    seed: int = 0,
    baseline: str = "black",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    step_fraction: float = 0.01,
    fraction: float = 1.0,
    background: str = "black",
    batch_size: int = DEFAULT_BATCH,
) -> EvalSettings:
    """Check and resolve the settings of an evaluation of ``image_set`` by ``bundle``.

    Parameters
    ----------
    bundle:
        The model.
    image_set:
        An :class:`~xaicore.data.imagesets.ImageSet` (items with ``array``, ``name``, ``label``
        and optional ``mask``).
    methods:
        Method names or titles; methods the model cannot run go to ``skipped`` with the reason.
    metrics:
        A subset of :data:`METRICS`.
    data:
        How the set was named (``"generated:6"``, a path), recorded for people.
    target:
        ``"label"`` or ``"predicted"`` (see the module docstring).
    seed, baseline, params:
        For the explainers (``params``: method name -> overrides) and the random control.
    step_fraction, fraction, background:
        Insertion/deletion curve settings (:func:`xaicore.metrics.faithfulness.insertion_deletion`).
    batch_size:
        Images per batch: rows appear batch by batch; part of the settings because stochastic
        methods draw their noise per batch.
    """
    items = _items(image_set)
    chosen = _metrics(metrics)
    if target not in TARGETS:
        raise ParameterError(f"target must be 'label' or 'predicted'; got {target!r}.")
    if baseline not in BASELINE_KINDS:
        raise ParameterError(f"Unknown baseline {baseline!r}; choose one of {', '.join(BASELINE_KINDS)}.")
    if background not in BACKGROUNDS:
        raise ParameterError(f"Unknown background {background!r}; choose one of {', '.join(BACKGROUNDS)}.")
    if int(batch_size) < 1:
        raise ParameterError(f"batch_size must be at least 1 image; got {batch_size}.")
    curve_steps(100, step_fraction=step_fraction, fraction=fraction)  # validates both
    specs = resolve_methods(methods)
    given = {get_method(k).name: v for k, v in dict(params or {}).items()}
    unknown = sorted(set(given) - {s.name for s in specs})
    if unknown:
        raise ParameterError(f"Parameters were given for {', '.join(unknown)}, which are not among the methods chosen.")
    skipped = {s.name: bundle.unavailable[s.name] for s in specs if s.name in bundle.unavailable}
    usable = [s for s in specs if s.name not in skipped]
    if not usable:
        raise ParameterError(
            "None of the chosen methods can run on this model: "
            + "; ".join(f"{get_method(k).title}: {v}" for k, v in skipped.items())
        )
    _labels(bundle, image_set, items)  # refuses labels the model does not know
    return EvalSettings(
        model_name=bundle.name,
        model_fingerprint=bundle.fingerprint,
        data=str(data),
        data_digest=data_digest(items, _class_names(image_set)),
        n_images=len(items),
        methods=tuple(s.name for s in usable),
        metrics=chosen,
        target=target,
        seed=int(seed),
        baseline=baseline,
        params={s.name: s.resolve_params(given.get(s.name)) for s in usable},
        step_fraction=float(step_fraction),
        fraction=float(fraction),
        background=background,
        batch_size=int(batch_size),
        skipped=skipped,
    )


def _metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ParameterError(f"Unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}.")
    if not names:
        raise ParameterError(f"Choose at least one metric from {', '.join(METRICS)}.")
    return tuple(m for m in METRICS if m in names)


def _items(image_set: Any) -> tuple[Any, ...]:
    items = tuple(getattr(image_set, "items", image_set))
    if not items:
        raise ParameterError("The image set is empty: give at least one image.")
    return items


def _class_names(image_set: Any) -> tuple[str, ...]:
    return tuple(getattr(image_set, "class_names", ()) or ())


def _labels(bundle: ModelBundle, image_set: Any, items: Sequence[Any]) -> list[int | None]:
    """Each item's label as a class index of ``bundle`` (matched by name when the set names
    its classes differently); :class:`ParameterError` for a label the model does not know."""
    names = _class_names(image_set)
    out: list[int | None] = []
    for item in items:
        label = item.label
        if label is None:
            out.append(None)
            continue
        label = int(label)
        if names and tuple(names) != tuple(bundle.labels):
            if not 0 <= label < len(names):
                raise ParameterError(f"The label {label} of {item.name!r} is not a class of the image set.")
            name = names[label]
            index = match_class(name, bundle.labels)
            if index is None:
                raise ParameterError(
                    f"The image set's class {name!r} is not a class of {bundle.name}, so its labels cannot be "
                    "used; evaluate with target 'predicted' on an unlabelled set, or choose a matching model."
                )
            label = index
        elif not 0 <= label < bundle.num_classes:
            raise ParameterError(f"The label {label} of {item.name!r} is not a class of {bundle.name}.")
        out.append(label)
    return out


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class EvalRow:
    """One method's scores on one image (``None``: not measured or not applicable)."""

    image: int
    name: str
    method: str
    status: str
    label: int | None
    target: int
    predicted: int
    correct: bool | None
    insertion_auc: float | None = None
    deletion_auc: float | None = None
    pointing_hit: bool | None = None
    relevance_mass: float | None = None
    relevance_rank: float | None = None
    runtime_s: float | None = None
    reason: str = ""

    @property
    def key(self) -> tuple[int, str]:
        return (self.image, self.method)

    def record(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers become ``None``."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EvalRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


ROW_COLUMNS = tuple(f.name for f in fields(EvalRow))


def rows_csv(rows: Iterable[EvalRow]) -> str:
    """The rows as CSV text, one line per row, empty cells for ``None``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ROW_COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row.record().values()])
    return out.getvalue()


@dataclass(frozen=True)
class RowBatch:
    """The new rows of images ``start:stop`` (empty when every row was already done)."""

    start: int
    stop: int
    rows: tuple[EvalRow, ...]


def iter_rows(
    bundle: ModelBundle,
    image_set: Any,
    settings: EvalSettings,
    *,
    done: Iterable[tuple[int, str]] = (),
    progress: ProgressFn | None = None,
) -> Iterator[RowBatch]:
    """Yield the missing rows batch by batch, lazily (see the module docstring).

    ``done`` holds the ``(image, method)`` keys already computed; a batch whose rows are all
    done costs no model call. ``progress(done_images, total_images, message)`` is called before
    each method of a batch. Stop iterating at any time: every yielded row is final.
    """
    items, labels = checked_items(bundle, image_set, settings)
    known = set(done)
    for start, stop, pending in batch_plan(settings, known):
        if not pending:
            yield RowBatch(start, stop, ())
            continue
        rows = batch_rows(bundle, items[start:stop], labels[start:stop], start, settings, pending, progress)
        yield RowBatch(start, stop, tuple(r for r in rows if r.key not in known))


def checked_items(
    bundle: ModelBundle, image_set: Any, settings: EvalSettings
) -> tuple[tuple[Any, ...], list[int | None]]:
    """The set's items and their labels as class indices of ``bundle``, after checking that
    ``settings`` were made for this model and this set (:class:`ParameterError` otherwise)."""
    items = _items(image_set)
    _check_same(bundle, image_set, items, settings)
    return items, _labels(bundle, image_set, items)


def batch_plan(settings: EvalSettings, done: Iterable[tuple[int, str]] = ()) -> Iterator[tuple[int, int, list[str]]]:
    """``(start, stop, pending methods)`` of every batch, in order; ``pending`` lists the
    methods with a row missing from ``done`` (empty: the batch is complete)."""
    known = done if isinstance(done, (set, frozenset)) else set(done)
    for start in range(0, settings.n_images, settings.batch_size):
        stop = min(settings.n_images, start + settings.batch_size)
        yield start, stop, [m for m in settings.row_methods if any((i, m) not in known for i in range(start, stop))]


def _check_same(bundle: ModelBundle, image_set: Any, items: Sequence[Any], settings: EvalSettings) -> None:
    if bundle.fingerprint != settings.model_fingerprint:
        raise ParameterError("These settings were made for another model (its fingerprint differs).")
    if len(items) != settings.n_images or data_digest(items, _class_names(image_set)) != settings.data_digest:
        raise ParameterError("These settings were made for another image set (its images, labels or masks differ).")


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class _MethodMaps:
    """One method's maps on a batch: (n, H, W) channel sums (zero where unusable) and statuses."""

    maps: torch.Tensor | None
    status: list[str]
    runtime: float | None
    reason: str = ""


def batch_rows(
    bundle: ModelBundle,
    chunk: Sequence[Any],
    labels: Sequence[int | None],
    start: int,
    settings: EvalSettings,
    pending: Sequence[str],
    progress: ProgressFn | None = None,
) -> list[EvalRow]:
    """Every row of the batch of images ``start:start + len(chunk)`` for the ``pending`` methods
    (``labels``: the chunk's labels from :func:`checked_items`). The rows depend only on these
    arguments, so any process holding the same model computes the same rows."""
    n = len(chunk)
    x = torch.cat([bundle.to_input(np.asarray(item.array, dtype=np.float32)) for item in chunk])
    predicted = bundle.logits(x).argmax(dim=1)
    known = torch.tensor([-1 if label is None else label for label in labels], device=x.device)
    target = torch.where(known >= 0, known, predicted) if settings.target == "label" else predicted
    found: dict[str, _MethodMaps] = {}
    for method in pending:
        if method == RANDOM:
            continue
        if progress is not None:
            progress(start, settings.n_images, f"{get_method(method).title}: images {start + 1}-{start + n}")
        found[method] = _explain(bundle, x, target, method, settings)
    if RANDOM in pending:
        generator = torch.Generator().manual_seed(method_seed(settings.seed, f"{RANDOM}:{start}"))
        noise = torch.rand((n, *x.shape[-2:]), generator=generator, dtype=torch.float64)
        found[RANDOM] = _MethodMaps(noise.to(device=x.device, dtype=torch.float32), ["ok"] * n, None)
    scores = _scores(bundle, x, target, chunk, found, settings)
    predicted_list, target_list = predicted.tolist(), target.tolist()
    rows = []
    for i, item in enumerate(chunk):
        for method, result in found.items():
            status = result.status[i]
            metrics = scores.get(method, {}).get(i, {}) if status == "ok" else {}
            rows.append(
                EvalRow(
                    image=start + i,
                    name=str(item.name),
                    method=method,
                    status=status,
                    label=labels[i],
                    target=int(target_list[i]),
                    predicted=int(predicted_list[i]),
                    correct=None if labels[i] is None else predicted_list[i] == labels[i],
                    runtime_s=result.runtime if "runtime" in settings.metrics and status != "failed" else None,
                    reason=result.reason if status != "ok" else "",
                    **metrics,
                )
            )
    return rows


def _explain(
    bundle: ModelBundle, x: torch.Tensor, target: torch.Tensor, method: str, settings: EvalSettings
) -> _MethodMaps:
    n = x.shape[0]
    started = _clock(x.device)
    try:
        attribution = attribute(
            bundle,
            x,
            method=method,
            target=target,
            seed=settings.seed,
            params=settings.params.get(method),
            baseline=settings.baseline,
        )
    except MethodUnavailable as exc:
        return _MethodMaps(None, ["unavailable"] * n, None, str(exc))
    except XaiError as exc:
        return _MethodMaps(None, ["failed"] * n, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - one failing method must not end a long evaluation
        return _MethodMaps(
            None, ["failed"] * n, None, f"{get_method(method).title} failed: {type(exc).__name__}: {exc}"
        )
    runtime = (_clock(x.device) - started) / n
    values = attribution.values.detach().float()
    _, numerical = attribution_flags(values)
    maps = torch.where(numerical.view(-1, 1, 1), torch.zeros((), device=values.device), values.sum(dim=1))
    status = attribution_status(values).tolist()
    reason = ""
    if "numerical error" in status:
        reason = "The attribution contains NaN or infinite values."
    elif "no signal" in status:
        reason = "Every attribution value is zero."
    return _MethodMaps(maps, status, runtime, reason)


def _scores(
    bundle: ModelBundle,
    x: torch.Tensor,
    target: torch.Tensor,
    chunk: Sequence[Any],
    found: Mapping[str, _MethodMaps],
    settings: EvalSettings,
) -> dict[str, dict[int, dict[str, Any]]]:
    """method -> image position -> row fields of the requested faithfulness/localization metrics."""
    usable = {m: r.maps for m, r in found.items() if r.maps is not None}
    out: dict[str, dict[int, dict[str, Any]]] = {m: {i: {} for i in range(len(chunk))} for m in usable}
    if not usable:
        return out
    if any(m in settings.metrics for m in FAITHFULNESS):
        result = insertion_deletion(
            bundle,
            x,
            usable,
            target=target,
            step_fraction=settings.step_fraction,
            fraction=settings.fraction,
            background=settings.background,
            random_control=False,
            seed=settings.seed,
        )
        for curves in result.curves:
            for i in range(len(chunk)):
                if "insertion" in settings.metrics:
                    out[curves.method][i]["insertion_auc"] = float(curves.insertion_auc[i])
                if "deletion" in settings.metrics:
                    out[curves.method][i]["deletion_auc"] = float(curves.deletion_auc[i])
    wanted = [m for m in LOCALIZATION if m in settings.metrics]
    masks = [_mask_at(getattr(item, "mask", None), bundle, (int(x.shape[-2]), int(x.shape[-1]))) for item in chunk]
    if wanted and any(m is not None for m in masks):
        maps_np = {m: v.detach().cpu().numpy() for m, v in usable.items()}
        for method, values in maps_np.items():
            for i, mask in enumerate(masks):
                if mask is None:
                    continue
                s = localization_scores(values[i], mask)
                entry = out[method][i]
                if "pointing" in wanted:
                    entry["pointing_hit"] = s.pointing_hit
                if "mass" in wanted:
                    entry["relevance_mass"] = s.relevance_mass
                if "rank" in wanted:
                    entry["relevance_rank"] = s.relevance_rank
    return out


def _mask_at(mask: np.ndarray | None, bundle: ModelBundle, size: tuple[int, int]) -> np.ndarray | None:
    """An object mask at the model-input size, or ``None`` (none, or empty).

    Masks are at their image's size: under a resize-and-crop rule they go through the image's
    own resize and crop (``bundle.preprocess.apply_mask``), so they stay on the pixels the model
    sees; under a straight resize they are resized to the input size (nearest neighbour).
    """
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if tuple(m.shape) != size and bundle.preprocess.mode != "resize":
        m = bundle.preprocess.apply_mask(m)
    elif tuple(m.shape) != size:
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        m = F.interpolate(t, size=size, mode="nearest")[0, 0].numpy() > 0.5
    return m if m.any() else None


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class MethodSummary:
    """One method's aggregate over the rows: counts by status, metric intervals, and the
    paired differences against the random control (``vs_random``; empty for the control)."""

    method: str
    title: str
    n_rows: int
    counts: Mapping[str, int]
    metrics: Mapping[str, Interval]
    vs_random: Mapping[str, Interval]

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "title": self.title,
            "n_rows": self.n_rows,
            "counts": dict(self.counts),
            "metrics": {k: v.record() for k, v in self.metrics.items()},
            "vs_random": {k: v.record() for k, v in self.vs_random.items()},
        }

    def flat(self) -> dict[str, Any]:
        """One CSV line: counts, then mean/low/high/n of each metric and of each difference."""
        line: dict[str, Any] = {"method": self.method, "title": self.title, "n_rows": self.n_rows}
        line.update({f"n_{s.replace(' ', '_')}": self.counts.get(s, 0) for s in STATUSES})
        for suffix, group in (("", self.metrics), ("_minus_random", self.vs_random)):
            for name, iv in group.items():
                key = FIELDS[name] + suffix
                line.update({f"{key}_mean": iv.mean, f"{key}_low": iv.low, f"{key}_high": iv.high, f"{key}_n": iv.n})
        return line


@dataclass(frozen=True)
class EvalSummary:
    """Per-method aggregates of an evaluation, with its settings and how complete it is."""

    settings: EvalSettings
    methods: tuple[MethodSummary, ...]
    n_images_done: int
    complete: bool
    provenance: Provenance
    interval_rule: str

    def by_method(self) -> dict[str, MethodSummary]:
        return {m.method: m for m in self.methods}

    def record(self) -> dict[str, Any]:
        return {
            "kind": "evaluation",
            "complete": self.complete,
            "n_images": self.settings.n_images,
            "n_images_done": self.n_images_done,
            "interval_rule": self.interval_rule,
            "settings": self.settings.record(),
            "methods": [m.record() for m in self.methods],
            "provenance": self.provenance.to_dict(),
        }

    def csv_text(self) -> str:
        lines = [m.flat() for m in self.methods]
        columns = list(dict.fromkeys(k for line in lines for k in line))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        for line in lines:
            writer.writerow({k: "" if v is None else v for k, v in line.items()})
        return out.getvalue()


INTERVAL_RULE = (
    "Mean over the rows with status ok, with a two-sided 95% interval: Student t interval "
    "(mean +- t(0.975, n-1) * s / sqrt(n)) for AUCs, relevance mass and rank accuracy and runtime; "
    "Wilson score interval for the pointing-game hit rate. 'vs_random': paired t interval of the "
    "per-image difference method minus random control, on images where both have a value."
)


def summarize(rows: Iterable[EvalRow], settings: EvalSettings, *, device: str = "") -> EvalSummary:
    """Aggregate ``rows`` (complete or partial) per method (see the module docstring)."""
    by_key: dict[tuple[int, str], EvalRow] = {}
    for row in rows:
        by_key[row.key] = row
    images = range(settings.n_images)
    control = {i: by_key.get((i, RANDOM)) for i in images}
    summaries = []
    for method in settings.row_methods:
        mine = [by_key[(i, method)] for i in images if (i, method) in by_key]
        counts = {s: sum(r.status == s for r in mine) for s in STATUSES}
        ok = [r for r in mine if r.status == "ok"]
        metrics = {name: _interval(name, [getattr(r, FIELDS[name]) for r in ok]) for name in settings.metrics}
        vs_random: dict[str, Interval] = {}
        if method != RANDOM and settings.with_control:
            for name in settings.metrics:
                if name == "runtime":
                    continue
                pairs = [(r, c) for r in ok if (c := control[r.image]) is not None and c.status == "ok"]
                diffs = paired_differences(
                    [_number(getattr(r, FIELDS[name])) for r, _ in pairs],
                    [_number(getattr(c, FIELDS[name])) for _, c in pairs],
                )
                vs_random[name] = t_interval(diffs)
        title = RANDOM_TITLE if method == RANDOM else get_method(method).title
        summaries.append(MethodSummary(method, title, len(mine), counts, metrics, vs_random))
    done_images = sum(all((i, m) in by_key for m in settings.row_methods) for i in images)
    return EvalSummary(
        settings=settings,
        methods=tuple(summaries),
        n_images_done=done_images,
        complete=done_images == settings.n_images,
        provenance=Provenance(
            model_name=settings.model_name,
            model_fingerprint=settings.model_fingerprint,
            seed=settings.seed,
            device=device,
        ),
        interval_rule=INTERVAL_RULE,
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _interval(metric: str, values: Sequence[Any]) -> Interval:
    numbers = [_number(v) for v in values]
    return wilson_interval(numbers) if metric == "pointing" else t_interval(numbers)


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Evaluation:
    """All rows known at the end of a run (earlier ones included) and their summary."""

    rows: tuple[EvalRow, ...]
    summary: EvalSummary
    runtime_s: float


def evaluate(
    bundle: ModelBundle,
    image_set: Any,
    settings: EvalSettings,
    *,
    done_rows: Iterable[EvalRow] = (),
    on_rows: Callable[[Sequence[EvalRow]], None] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Evaluation:
    """Compute the rows missing from ``done_rows`` and summarize them all.

    ``on_rows(rows)`` receives each batch's new rows as soon as they exist (store them there to
    survive an interruption); ``progress(done, total, message)`` counts images;
    ``should_stop()`` is asked after every batch, and a true answer ends the run early with a
    partial summary (``summary.complete`` false).
    """
    started = time.perf_counter()
    rows = {r.key: r for r in done_rows}
    total = settings.n_images
    for batch in iter_rows(bundle, image_set, settings, done=rows.keys(), progress=progress):
        for row in batch.rows:
            rows[row.key] = row
        if batch.rows and on_rows is not None:
            on_rows(batch.rows)
        if progress is not None:
            progress(batch.stop, total, f"images {batch.start + 1}-{batch.stop} done")
        if should_stop is not None and batch.stop < total and should_stop():
            break
    ordered = in_order(rows.values(), settings)
    return Evaluation(ordered, summarize(ordered, settings, device=str(bundle.device)), time.perf_counter() - started)


def in_order(rows: Iterable[EvalRow], settings: EvalSettings) -> tuple[EvalRow, ...]:
    """``rows`` by image, then in the order of ``settings.row_methods`` (the random control last)."""
    return tuple(sorted(rows, key=lambda r: (r.image, _method_order(settings, r.method))))


def _method_order(settings: EvalSettings, method: str) -> int:
    order = settings.row_methods
    return order.index(method) if method in order else len(order)
