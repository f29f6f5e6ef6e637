"""Plain gradients, Guided Backprop and Deconvolution from one batched pass.

The three differ only in what every ``nn.ReLU`` passes back: the plain gradient where the
ReLU was active (``g * (out > 0)``), Guided Backprop the positive part there
(``relu(g) * (out > 0)``), Deconvolution the positive part everywhere (``relu(g)``). Stacking
the images once per rule, ``[plain rows | guided rows | deconv rows]``, and giving every ReLU a
backward that applies each row's own rule yields all of them from one forward and one
backward pass of ``R * N`` images instead of ``R`` passes of ``N``. Rows never mix in a model
in eval mode, so each block equals its separate pass up to float rounding (tested).

The CAM layer's activation and gradient are taken from the plain rows, so Grad-CAM, Saliency,
Input x Gradient, Guided Backprop, Deconvolution and Guided Grad-CAM all come from the same
pass (see :mod:`xaicore.explainers.shared`).

:class:`CapturedFusedPass` records that pass once as a CUDA graph for fixed inputs and targets
and replays it: the sanity check changes the private model's weights in place between steps,
so every replay explains the model as it is now, without the per-kernel launch cost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from xaicore.errors import MethodUnavailable, ParameterError
from xaicore.explainers.gradients import GradientPass, chunk_size, single_activation, target_scores
from xaicore.explainers.modified_relu import relu_hooks
from xaicore.runtime.device import run_chunked

RULES = ("plain", "guided", "deconv")
GRAPHS_ENV = "XAI_CUDA_GRAPHS"


def graphs_enabled() -> bool:
    """Whether CUDA graphs may be used (``XAI_CUDA_GRAPHS=0`` turns them off)."""
    return os.environ.get(GRAPHS_ENV, "1").strip() != "0"


# (clamp the incoming gradient to its positive part, gate it by the ReLU's forward activity)
_RULE_FLAGS = {"plain": (False, True), "guided": (True, True), "deconv": (True, False)}


class _RowRuleReLU(torch.autograd.Function):
    """ReLU whose backward applies a per-row rule, given as two (B,) bool masks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clamp: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out, clamp, gate)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out, clamp, gate = ctx.saved_tensors
        shape = (-1,) + (1,) * (grad.ndim - 1)
        g = torch.where(clamp.view(shape), grad.clamp(min=0), grad)
        g = torch.where(gate.view(shape) & (out <= 0), torch.zeros((), dtype=g.dtype, device=g.device), g)
        return g, None, None


def _row_rules(model: nn.Module, clamp: torch.Tensor, gate: torch.Tensor):
    """Within the block, every ``nn.ReLU`` of ``model`` back-propagates with its row's rule."""
    rows = clamp.shape[0]

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if x.ndim == 0 or x.shape[0] != rows:
            raise MethodUnavailable(
                "A ReLU sees a tensor whose first dimension is not the batch; rules cannot be mixed."
            )
        return _RowRuleReLU.apply(x, clamp, gate)

    return relu_hooks(model, hook)


@dataclass(frozen=True)
class FusedPass:
    """Input gradients per rule (each (N, 3, H, W)) and the plain rows' CAM-layer pass."""

    grads: dict[str, torch.Tensor]
    cam: GradientPass | None


def check_rules(rules: Sequence[str], layer: nn.Module | None) -> tuple[str, ...]:
    rules = tuple(rules)
    if not rules or len(set(rules)) != len(rules) or any(r not in RULES for r in rules):
        raise ParameterError(f"rules must be distinct names among {', '.join(RULES)}; got {rules!r}.")
    if layer is not None and "plain" not in rules:
        raise ParameterError("The CAM layer's gradient comes from the plain rows; include the 'plain' rule.")
    return tuple(r for r in RULES if r in rules)


def rule_masks(rules: Sequence[str], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    flags = torch.tensor([_RULE_FLAGS[r] for r in rules], dtype=torch.bool, device=device)  # (R, 2)
    per_row = flags.repeat_interleave(n, dim=0)
    return per_row[:, 0].contiguous(), per_row[:, 1].contiguous()


def fused_pass_once(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    rules: Sequence[str],
    layer: nn.Module | None = None,
    masks: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FusedPass:
    """One forward and one backward pass of ``len(rules) * N`` rows (no chunking).

    ``masks``: the rows' rule masks made beforehand (:func:`rule_masks`), so that the pass
    itself copies nothing from the host (as a CUDA graph capture requires).
    """
    rules = check_rules(rules, layer)
    n = inputs.shape[0]
    x = inputs.detach().repeat(len(rules), *([1] * (inputs.ndim - 1))).requires_grad_(True)
    captured: list[object] = []

    def keep(_module: nn.Module, _args: object, output: object) -> None:
        captured.append(output)

    handle = layer.register_forward_hook(keep) if layer is not None else None
    try:
        with torch.enable_grad():
            if rules == ("plain",):
                logits = model(x)
            else:
                clamp, gate = masks if masks is not None else rule_masks(rules, n, x.device)
                with _row_rules(model, clamp, gate):
                    logits = model(x)
            scores = target_scores(logits, target.repeat(len(rules)))
    finally:
        if handle is not None:
            handle.remove()
    wrt = [x]
    if layer is not None:
        wrt.append(single_activation(captured))
    grads = torch.autograd.grad(scores.sum(), wrt)
    by_rule = {rule: grads[0][i * n : (i + 1) * n] for i, rule in enumerate(rules)}
    cam = None
    if layer is not None:
        cam = GradientPass(by_rule["plain"], wrt[1][:n].detach(), grads[1][:n])
    return FusedPass(by_rule, cam)


def fused_pass(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    rules: Sequence[str],
    layer: nn.Module | None = None,
    stack: bool | None = None,
) -> FusedPass:
    """All ``rules``' gradients over the images in memory-sized chunks (halved on OOM).

    ``stack`` (default: on CUDA only) puts the rules' rows in one batch. On a GPU a pass of a
    few images costs its kernel launches, so one pass of ``R * N`` rows is about as fast as one
    of ``N``; on a CPU the cost grows with the rows and stacking gains nothing, so each rule
    gets its own pass there, which gives exactly the separate methods' arithmetic.
    """
    rules = check_rules(rules, layer)
    if stack is None:
        stack = inputs.device.type == "cuda"
    if not stack and len(rules) > 1:
        parts = [
            fused_pass(model, inputs, target, rules=(r,), layer=layer if r == "plain" else None, stack=True)
            for r in rules
        ]
        grads = {r: p.grads[r] for r, p in zip(rules, parts)}
        return FusedPass(grads, parts[0].cam if layer is not None else None)

    def run(start: int, stop: int) -> FusedPass:
        return fused_pass_once(model, inputs[start:stop], target[start:stop], rules=rules, layer=layer)

    def combine(parts: Sequence[FusedPass]) -> FusedPass:
        if len(parts) == 1:
            return parts[0]
        grads = {r: torch.cat([p.grads[r] for p in parts]) for r in rules}
        cam = None
        if layer is not None:
            cams = cast(list[GradientPass], [p.cam for p in parts])  # every part has one when a layer is set
            cam = GradientPass(
                grads["plain"],
                torch.cat(cast(list[torch.Tensor], [c.activation for c in cams])),
                torch.cat(cast(list[torch.Tensor], [c.layer_grad for c in cams])),
            )
        return FusedPass(grads, cam)

    chunk = max(1, chunk_size(inputs[0]) // len(rules))
    return run_chunked(run, inputs.shape[0], chunk=chunk, combine=combine)


class CapturedFusedPass:
    """:func:`fused_pass_once` recorded as a CUDA graph for fixed ``inputs`` and ``target``.

    Calling it replays the graph and returns copies of the outputs. The graph reads the
    model's parameters from their memory, so changes made in place (``copy_``, in-place
    initialization) are seen by the next call; replacing a parameter tensor is not. Raises
    :class:`ParameterError` off CUDA; capture errors propagate (callers fall back to eager).
    """

    WARMUP = 2

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        rules: Sequence[str],
        layer: nn.Module | None = None,
    ) -> None:
        if inputs.device.type != "cuda":
            raise ParameterError("A captured pass needs a CUDA device.")
        self.rules = check_rules(rules, layer)
        self._inputs = inputs.detach().clone()
        self._target = target.detach().clone()

        # every tensor the graph reads must live as long as the graph: freed memory would be
        # handed to other tensors while replays still read it
        self._masks = rule_masks(self.rules, inputs.shape[0], inputs.device)

        def run() -> FusedPass:
            return fused_pass_once(model, self._inputs, self._target, rules=self.rules, layer=layer, masks=self._masks)

        side = torch.cuda.Stream(device=inputs.device)
        side.wait_stream(torch.cuda.current_stream(inputs.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                run()
        torch.cuda.current_stream(inputs.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = run()

    def set_target(self, target: torch.Tensor) -> None:
        """Explain ``target`` (same shape) from the next replay on (a device copy, no sync)."""
        self._target.copy_(target)

    def __call__(self) -> FusedPass:
        self._graph.replay()
        grads = {r: g.clone() for r, g in self._out.grads.items()}
        cam = None
        if self._out.cam is not None:
            c = self._out.cam
            cam = GradientPass(grads.get("plain"), c.activation.clone(), c.layer_grad.clone())  # type: ignore[union-attr]
        return FusedPass(grads, cam)
