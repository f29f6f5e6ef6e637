"""Explain the same inputs again and again while a private model's weights change in place.

A sanity check explains its images once per randomization step. On CUDA, when every method comes
from the fused pass, that pass is recorded once as a CUDA graph and replayed at each step (the
replay reads the weights the randomizer changed in place); otherwise each step is one call of
:func:`xaicore.explainers.api.attribute_many`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from xaicore.explainers.fused import CapturedFusedPass, FusedPass, graphs_enabled
from xaicore.explainers.registry import get_method
from xaicore.explainers.shared import from_fused, rules_for
from xaicore.models.bundle import ModelBundle


class StepExplainer:
    """All methods' raw maps of the inputs by the private model as it currently is.

    On CUDA, when every method comes from the fused pass (:mod:`xaicore.explainers.fused`),
    that pass is recorded once as a CUDA graph and replayed at every step: the randomizer
    changes the private model's weights in place, which the replay reads. Anything else, or a
    capture that fails, takes the plain path (:func:`attribute_many`).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        inputs: torch.Tensor,
        *,
        methods: Sequence[str],
        method_params: Mapping[str, Mapping[str, Any]],
        baseline: str,
        seed: int,
    ) -> None:
        from xaicore.explainers import api

        self._api = api
        self._bundle = bundle
        self.inputs = inputs
        self._methods = tuple(methods)
        self._params = method_params
        self._baseline = baseline
        self._seed = seed
        self._graph: CapturedFusedPass | None = None
        self._graph_ok = (
            inputs.device.type == "cuda" and graphs_enabled() and all(get_method(m).single_pass for m in self._methods)
        )
        self.path = "eager"

    def __call__(self, target: torch.Tensor) -> torch.Tensor:
        """(methods, N, 3, H, W) attributions for ``target`` (N,), sharing passes between methods."""
        if self._graph_ok:
            fused = self._replay(target)
            if fused is not None:
                return torch.stack([from_fused(m, self.inputs, self._params[m], fused).values for m in self._methods])
        found = self._api.attribute_many(
            self._bundle,
            self.inputs,
            methods=self._methods,
            target=target,
            seed=self._seed,
            params=self._params,
            baseline=self._baseline,
        )
        return torch.stack([found[m].values.detach() for m in self._methods])

    def _replay(self, target: torch.Tensor) -> FusedPass | None:
        if self._graph is None:
            try:
                cam_layer = None
                if any(get_method(m).needs_layer for m in self._methods):
                    cam_layer = self._bundle.module(self._bundle.cam_layer)
                self._graph = CapturedFusedPass(
                    self._bundle.model, self.inputs, target, rules=rules_for(self._methods), layer=cam_layer
                )
            except Exception:  # noqa: BLE001 - any capture problem: the eager path gives the same maps
                self._graph_ok = False
                return None
            self.path = "cuda_graph"
        self._graph.set_target(target)
        return self._graph()
