"""One method's explanation of the sidebar's image, kept under one key for every page.

A map is stored in the session's result store (:mod:`dashboard.state`) per (model fingerprint,
image hash, method, parameters, seed, baseline, target, and for the CAM methods the bundle's
CAM layer): :func:`key`. The Explain page and the
Faithfulness page read and write the same entries, so a map either computed is reused by the
other. :func:`run` computes the missing ones in one :func:`xaicore.explainers.api.explain` call,
with the image's predictions from :func:`dashboard.state.predictions` (no second forward pass
for them), and stores each method the moment it finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from dashboard import state
from xaicore.explainers import api  # looked up at each call: tests replace api.explain
from xaicore.explainers.registry import get_method
from xaicore.explainers.results import ExplainResult
from xaicore.models.bundle import ModelBundle

KIND = "explain"


def key(
    bundle: ModelBundle,
    image: state.CurrentImage,
    *,
    method: str,
    params: Mapping[str, Any],
    seed: int,
    baseline: str,
    target: int,
) -> tuple[Hashable, ...]:
    """The store key of ``method``'s map of ``image`` by ``bundle`` with these (resolved) settings;
    a CAM method's key names ``bundle.cam_layer`` (see :meth:`ModelBundle.with_cam_layer`)."""
    return state.result_key(
        KIND,
        fingerprint=bundle.fingerprint,
        image=image.hash,
        method=method,
        params=params,
        seed=seed,
        baseline=baseline,
        target=target,
        layer=bundle.cam_layer if get_method(method).needs_layer else None,
    )


def keys(
    bundle: ModelBundle,
    image: state.CurrentImage,
    methods: Sequence[str],
    *,
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
    baseline: str,
    target: int,
) -> dict[str, tuple[Hashable, ...]]:
    """:func:`key` of each of ``methods``, by name (``params`` by method name, resolved)."""
    return {
        name: key(bundle, image, method=name, params=params[name], seed=seed, baseline=baseline, target=target)
        for name in methods
    }


def stored(found_keys: Mapping[str, Hashable]) -> dict[str, ExplainResult | None]:
    """Each method's stored explanation (a result holding that one method), or ``None``."""
    return {name: state.get_result(k) for name, k in found_keys.items()}


def run(
    bundle: ModelBundle,
    image: state.CurrentImage,
    methods: Sequence[str],
    found_keys: Mapping[str, Hashable],
    *,
    target: int,
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
    baseline: str,
    progress: Callable[[int, int, str], None] | None = None,
    on_result: Callable[[ExplainResult], None] | None = None,
) -> None:
    """One ``explain`` call for ``methods``; each is stored under its key as soon as it is
    finished, then handed to ``on_result``. A rerun or Stop in between loses only the method in
    flight."""

    def finished(part: ExplainResult) -> None:
        state.put_result(found_keys[part.methods[0].method], part)
        if on_result is not None:
            on_result(part)

    api.explain(
        bundle,
        image.array,
        methods=list(methods),
        target=target,
        seed=seed,
        params={name: params[name] for name in methods},
        baseline=baseline,
        predictions=state.predictions(bundle, image),
        progress=progress,
        on_result=finished,
    )
