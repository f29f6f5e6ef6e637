"""Explaining images: :func:`explain` for one image and many methods (the Explain page and the
CLI), :func:`attribute` and :func:`attribute_many` for batches (sanity checks, faithfulness,
GAX).

Every method gets its own generator, seeded from ``(seed, method name)``, so its result does
not depend on which other methods run alongside. The baseline is built from that generator
too. The bundle's model is run under ``bundle.lock``; to explain other weights (a randomized
model, say), explain a :meth:`~xaicore.models.bundle.ModelBundle.private_copy`, which has its
own model and lock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.data.images import image_hash
from xaicore.errors import MethodUnavailable, ParameterError, UnknownNameError, XaiError
from xaicore.explainers.baselines import BASELINE_KINDS, make_baseline
from xaicore.explainers.cost import cam_channels, method_units
from xaicore.explainers.registry import Attribution, MethodCall, MethodSpec, get_method, list_methods
from xaicore.explainers.results import (
    ExplainResult,
    MethodResult,
    Prediction,
    Status,
    classify_attribution,
)
from xaicore.explainers.shared import OnOutcome, Outcome, Progress, run_methods
from xaicore.models.bundle import ModelBundle, TargetLike
from xaicore.runtime.provenance import Provenance

OnResult = Callable[[ExplainResult], None]
TOP_K = 5


def method_seed(seed: int, method: str) -> int:
    """The seed of ``method``'s own generator: a stable hash of ``(seed, method)``."""
    digest = hashlib.sha256(f"{int(seed)}:{method}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def method_generator(seed: int, method: str, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded with :func:`method_seed`."""
    return torch.Generator(device=device).manual_seed(method_seed(seed, method))


def resolve_methods(
    methods: Sequence[str] | str | None,
    *,
    unique: bool = False,
    available_on: ModelBundle | None = None,
) -> list[MethodSpec]:
    """Specs for method names or titles, in the given order.

    ``None`` or ``"all"`` means every registered method; a string is a comma-separated list.
    Duplicates are dropped, or refused (:class:`ParameterError`) when ``unique`` is true.
    With ``available_on``, a method that bundle cannot run raises :class:`MethodUnavailable`
    with its reason. Unknown names raise :class:`UnknownNameError`; no method at all raises
    :class:`ParameterError`.
    """
    if methods is None or methods == "all":
        names: Sequence[str] = list_methods()
    elif isinstance(methods, str):
        names = [m for m in methods.split(",") if m.strip()]
    else:
        names = [m for m in methods if m.strip()]
    specs: dict[str, MethodSpec] = {}
    for name in names:
        spec = get_method(name.strip())
        if unique and spec.name in specs:
            raise ParameterError("Each method can be chosen once; remove the duplicates.")
        specs.setdefault(spec.name, spec)
    if not specs:
        raise ParameterError("No explanation method was chosen; pick at least one.")
    if available_on is not None:
        for spec in specs.values():
            if spec.name in available_on.unavailable:
                raise MethodUnavailable(
                    f"{spec.title} cannot run on {available_on.name}: {available_on.unavailable[spec.name]}"
                )
    return list(specs.values())


def _check_baseline(kind: str) -> None:
    if kind not in BASELINE_KINDS:
        raise ParameterError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}.")


def _cam_layer(bundle: ModelBundle) -> nn.Module:
    try:
        return bundle.model.get_submodule(bundle.cam_layer)
    except AttributeError as exc:
        raise MethodUnavailable(f"The model has no layer named {bundle.cam_layer!r} for CAM methods.") from exc


def _make_call(
    bundle: ModelBundle,
    spec: MethodSpec,
    *,
    inputs: torch.Tensor,
    target: torch.Tensor,
    seed: int,
    params: dict[str, Any],
    baseline: str,
) -> MethodCall:
    generator = method_generator(seed, spec.name, inputs.device)
    return MethodCall(
        model=bundle.model,
        inputs=inputs,
        target=target,
        baseline=make_baseline(baseline, inputs, generator=generator),
        generator=generator,
        params=params,
        layer=_cam_layer(bundle) if spec.needs_layer else None,
    )


def _prepare_inputs(bundle: ModelBundle, inputs: torch.Tensor) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ParameterError("Inputs must be a tensor of images shaped (N, 3, H, W); see ModelBundle.to_input.")
    return inputs.detach().to(device=bundle.device, dtype=torch.float32).contiguous()


def attribute_many(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    *,
    methods: Sequence[str],
    target: TargetLike,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
    layer: str | None = None,
) -> dict[str, Attribution]:
    """Several methods on one batch, sharing passes (see :mod:`xaicore.explainers.shared`).

    Each result equals :func:`attribute` for that method alone. Raises the first error.

    Parameters
    ----------
    bundle:
        The model bundle (layer names, classes, unavailable methods, lock).
    inputs:
        (N, 3, H, W) pixel-space images in [0, 1].
    methods:
        Method names or titles.
    target:
        One class (index or label) for all images or one per image, see
        :meth:`~xaicore.models.bundle.ModelBundle.resolve_targets`.
    seed:
        Seed of every method's own generator.
    params:
        Method name -> parameter overrides.
    baseline:
        Baseline kind, see :data:`xaicore.explainers.baselines.BASELINE_KINDS`.
    layer:
        The CAM methods' layer, one of ``bundle.cam_layers()``; ``None`` for ``bundle.cam_layer``.
    """
    specs = resolve_methods(list(methods))
    bundle = bundle.with_cam_layer(layer)
    outcomes = _run(bundle, inputs, specs, target=target, seed=seed, params=params, baseline=baseline)
    results: dict[str, Attribution] = {}
    for name, outcome in outcomes.items():
        if outcome.error is not None:
            raise outcome.error
        results[name] = outcome.attribution  # type: ignore[assignment]
    return results


def attribute(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    *,
    method: str,
    target: TargetLike,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    baseline: str = "black",
    layer: str | None = None,
) -> Attribution:
    """One method on a batch: attributions (N, 3, H, W) in input resolution, delta if any.

    ``layer`` is the CAM methods' layer (default ``bundle.cam_layer``; see :func:`attribute_many`).

    Raises :class:`MethodUnavailable` for methods in ``bundle.unavailable``,
    :class:`ParameterError` for bad targets, parameters or baselines. The bundle's model is
    run under its lock; explain a :meth:`~xaicore.models.bundle.ModelBundle.private_copy` to
    explain changed weights.
    """
    spec = get_method(method)
    result = attribute_many(
        bundle,
        inputs,
        methods=[spec.name],
        target=target,
        seed=seed,
        params={spec.name: dict(params or {})},
        baseline=baseline,
        layer=layer,
    )
    return result[spec.name]


def _resolve_params(specs: Sequence[MethodSpec], params: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict]:
    given: dict[str, Mapping[str, Any]] = {}
    for key, value in (params or {}).items():
        try:
            given[get_method(key).name] = value
        except UnknownNameError as exc:
            raise ParameterError(f"Parameters were given for {key!r}, which is not an explanation method.") from exc
    return {spec.name: spec.resolve_params(given.get(spec.name)) for spec in specs}


def _run(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    specs: Sequence[MethodSpec],
    *,
    target: TargetLike,
    seed: int,
    params: Mapping[str, Mapping[str, Any]] | None,
    baseline: str,
    progress: Progress | None = None,
    on_outcome: OnOutcome | None = None,
    cheapest_first: bool = False,
) -> dict[str, Outcome]:
    """Every spec's outcome, in the order of ``specs``. ``cheapest_first`` runs them in order of
    their work units (the shared passes first in any case); ``on_outcome`` hears of each as it
    finishes, the methods that cannot run at all first."""
    _check_baseline(baseline)
    resolved = _resolve_params(specs, params)
    x = _prepare_inputs(bundle, inputs)
    t = bundle.resolve_targets(target, n=x.shape[0], device=x.device)
    outcomes: dict[str, Outcome] = {}
    calls: dict[str, MethodCall] = {}
    size = (x.shape[-2], x.shape[-1])
    channels = cam_channels(bundle, [spec.name for spec in specs]) if cheapest_first else 0
    order = (
        sorted(specs, key=lambda spec: method_units(spec.name, resolved[spec.name], size, channels=channels))
        if cheapest_first
        else specs
    )
    for spec in order:
        if spec.name in bundle.unavailable:
            outcomes[spec.name] = Outcome(None, MethodUnavailable(bundle.unavailable[spec.name]), 0.0)
            continue
        try:
            calls[spec.name] = _make_call(
                bundle, spec, inputs=x, target=t, seed=seed, params=resolved[spec.name], baseline=baseline
            )
        except XaiError as exc:
            outcomes[spec.name] = Outcome(None, exc, 0.0)
    if on_outcome is not None:
        for name, outcome in outcomes.items():
            on_outcome(name, outcome)
    if calls:
        skipped = len(outcomes)

        def report(done: int, _total: int, title: str) -> None:
            progress(done + skipped, len(specs), title)  # type: ignore[misc]

        with bundle.lock:
            outcomes.update(run_methods(calls, progress=None if progress is None else report, on_outcome=on_outcome))
    return {spec.name: outcomes[spec.name] for spec in specs}


def top_predictions(bundle: ModelBundle, logits: torch.Tensor, *, k: int = TOP_K) -> tuple[Prediction, ...]:
    """The ``k`` most probable classes (softmax of one image's ``logits``), most probable first."""
    probs = torch.softmax(logits.float(), dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return tuple(
        Prediction(index=int(i), label=bundle.labels[int(i)], probability=float(p))
        for p, i in zip(values.tolist(), indices.tolist())
    )


def _reason(error: BaseException, title: str) -> str:
    if isinstance(error, XaiError):
        return str(error)
    return f"{title} failed: {type(error).__name__}: {error}"


def _method_result(
    spec: MethodSpec, outcome: Outcome, *, target: int, params: dict[str, Any], baseline: str, layer: str
) -> MethodResult:
    common: dict[str, Any] = dict(
        method=spec.name,
        title=spec.title,
        target=target,
        params=params,
        runtime_s=outcome.runtime_s,
        layer=layer if spec.needs_layer else None,
    )
    if outcome.error is not None:
        status = Status.UNAVAILABLE if isinstance(outcome.error, MethodUnavailable) else Status.FAILED
        return MethodResult(status=status, attribution=None, reason=_reason(outcome.error, spec.title), **common)
    attribution = outcome.attribution
    values = attribution.values[0].detach().float().cpu().numpy()  # type: ignore[union-attr]
    delta = attribution.delta  # type: ignore[union-attr]
    status = classify_attribution(values)
    reason = {
        Status.NO_SIGNAL: "Every attribution value is zero: this method sees no evidence for the class here.",
        Status.NUMERICAL_ERROR: (
            "The attribution contains NaN or infinite values (a numerical error in the model or method)."
        ),
    }.get(status, "")
    expected = attribution.expected  # type: ignore[union-attr]
    return MethodResult(
        status=status,
        attribution=values,
        delta=None if delta is None else float(delta.reshape(-1)[0]),
        expected=None if expected is None else float(expected.reshape(-1)[0]),
        reference=attribution.reference.format(baseline=baseline),  # type: ignore[union-attr]
        details={k: float(v.reshape(-1)[0]) for k, v in attribution.details.items()},  # type: ignore[union-attr]
        reason=reason,
        shared_with=outcome.shared_with,
        **common,
    )


def explain(
    bundle: ModelBundle,
    image: np.ndarray,
    *,
    methods: Sequence[str] | str | None = None,
    target: int | str | None = None,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
    predictions: Sequence[Prediction] | None = None,
    progress: Progress | None = None,
    on_result: OnResult | None = None,
    layer: str | None = None,
) -> ExplainResult:
    """Explain one image with several methods, the cheapest first.

    Parameters
    ----------
    bundle:
        The model.
    image:
        (H, W, 3) array in [0, 1], any size (resized to the model's input size).
    methods:
        Names or titles; ``None`` or ``"all"`` for every method.
    target:
        Class index or label; ``None`` for the predicted class.
    seed:
        Seed for the stochastic methods and the noise baseline.
    params:
        Method name -> parameter overrides.
    baseline:
        ``"black"``, ``"blur"``, ``"mean"`` or ``"noise"``.
    predictions:
        The image's top predictions by this model when the caller already has them (a page
        that shows them first): with ``target`` given, no forward pass is made for them.
    progress:
        ``progress(done, total, title)`` called before each method starts.
    on_result:
        Called with each method's result as soon as it is finished: an :class:`ExplainResult`
        holding that one method (its ``total_runtime_s`` the time since the call began). An
        exception it raises ends the run at once (the way to stop it); the model is left as
        it was and the finished results have already been handed over.
    layer:
        The CAM methods' layer, one of ``bundle.cam_layers()`` (:class:`UnknownNameError`,
        naming the choices, otherwise); ``None`` for ``bundle.cam_layer``. Each CAM method's
        result records it (:attr:`MethodResult.layer`).

    Returns
    -------
    ExplainResult
        Top-5 predictions and one :class:`MethodResult` per method. A method that raises
        becomes FAILED (or UNAVAILABLE) with a plain reason; the others still run. Bad names,
        parameters, baselines or targets raise before any work.
    """
    started = time.perf_counter()
    specs = resolve_methods(methods)
    bundle = bundle.with_cam_layer(layer)
    resolved = _resolve_params(specs, params)
    _check_baseline(baseline)
    target_index = None if target is None else bundle.class_index(target)
    array = np.asarray(image, dtype=np.float32)
    x = bundle.to_input(array)
    if predictions is None or target_index is None:
        logits = bundle.logits(x)[0]
        if target_index is None:
            target_index = int(logits.argmax())
        if predictions is None:
            predictions = top_predictions(bundle, logits)
    shell = ExplainResult(
        image=x[0].permute(1, 2, 0).detach().cpu().numpy(),
        image_hash=image_hash(array),
        target=target_index,
        target_label=bundle.labels[target_index],
        predictions=tuple(predictions),
        methods=(),
        baseline=baseline,
        provenance=Provenance(
            model_name=bundle.name,
            model_fingerprint=bundle.fingerprint,
            seed=int(seed),
            device=str(bundle.device),
            preprocessing=bundle.preprocess.frame(*array.shape[:2]).record(),
        ),
        total_runtime_s=0.0,
    )
    by_name = {spec.name: spec for spec in specs}
    items: dict[str, MethodResult] = {}

    def finished(name: str, outcome: Outcome) -> None:
        items[name] = _method_result(
            by_name[name],
            outcome,
            target=target_index,
            params=resolved[name],
            baseline=baseline,
            layer=bundle.cam_layer,
        )
        if on_result is not None:
            on_result(replace(shell, methods=(items[name],), total_runtime_s=time.perf_counter() - started))

    _run(
        bundle,
        x,
        specs,
        target=target_index,
        seed=seed,
        params=resolved,
        baseline=baseline,
        progress=progress,
        on_outcome=finished,
        cheapest_first=True,
    )
    if progress is not None:
        progress(len(specs), len(specs), "")
    return replace(
        shell, methods=tuple(items[spec.name] for spec in specs), total_runtime_s=time.perf_counter() - started
    )
