"""Running several methods on one batch, sharing passes where the maths allows.

Saliency, Input x Gradient and Grad-CAM need the plain gradient of the same class score;
Guided Backprop and Deconvolution the same pass with another ReLU backward rule; Guided
Grad-CAM the Guided Backprop map and the Grad-CAM map. Each of these single-pass methods says so
on its :class:`~xaicore.explainers.registry.MethodSpec` (its ``fused`` rule: the backward rules it
needs and how its map is read from the pass). When two or more of them are asked for, one
batched pass (:mod:`xaicore.explainers.fused`: the images once per backward rule needed) gives
all of them. The results equal the separate computations up to float rounding.
When the fused pass fails, each method runs on its own so that the error is attributed to the
method it belongs to.

On a GPU, DeepLift and DeepLiftShap also share their passes when both are asked for: every
(image, reference) pair is independent in DeepLift, so DeepLift's baseline joins
DeepLiftShap's references in one batch (:func:`xaicore.explainers.deeplift.deeplift_and_shap`).

Every method's outcome, error included, is captured: the caller decides what to raise.
``on_outcome(name, outcome)`` hears of each method as soon as it is finished; what the callback
raises (a stop request, for instance) is not captured and ends the run there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from xaicore.explainers import deeplift
from xaicore.explainers.fused import FusedPass, fused_pass
from xaicore.explainers.registry import Attribution, FusedRule, MethodCall, get_method

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Outcome:
    """One method's attribution, or the exception it raised, with its share of the runtime.

    ``shared_with`` names the methods whose computation this result reused or shared; its
    ``runtime_s`` is then its even share of the shared pass plus its own work.
    """

    attribution: Attribution | None
    error: BaseException | None
    runtime_s: float
    shared_with: tuple[str, ...] = ()


def _rule(name: str) -> FusedRule:
    rule = get_method(name).fused
    if rule is None:
        raise KeyError(name)
    return rule


def rules_for(methods: Sequence[str]) -> tuple[str, ...]:
    """The backward rules a fused pass needs for ``methods`` (single-pass methods, each with a :class:`FusedRule`)."""
    wanted = {rule for m in methods for rule in _rule(m).backward}
    return tuple(r for r in ("plain", "guided", "deconv") if r in wanted)


def from_fused(name: str, inputs: torch.Tensor, params: Mapping[str, object], fused: FusedPass) -> Attribution:
    """Method ``name``'s attribution from a fused pass over ``inputs``, read as its :class:`FusedRule` says."""
    return _rule(name).read(inputs, params, fused)


OnOutcome = Callable[[str, "Outcome"], None]


class _Runner:
    def __init__(
        self, calls: Mapping[str, MethodCall], progress: Progress | None, on_outcome: OnOutcome | None = None
    ) -> None:
        self.calls = calls
        self.progress = progress
        self.on_outcome = on_outcome
        self.outcomes: dict[str, Outcome] = {}
        self.device = next(iter(calls.values())).inputs.device

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _report(self, name: str) -> None:
        if self.progress is not None:
            self.progress(len(self.outcomes), len(self.calls), get_method(name).title)

    def _finish(self, name: str, outcome: Outcome) -> None:
        self.outcomes[name] = outcome
        if self.on_outcome is not None:
            self.on_outcome(name, outcome)

    def run_alone(self, name: str) -> None:
        self._report(name)
        start = self._clock()
        try:
            attribution = get_method(name).compute(self.calls[name])
            error = None
        except Exception as exc:  # noqa: BLE001 - the caller turns it into a status or re-raises
            attribution, error = None, exc
        self._finish(name, Outcome(attribution, error, self._clock() - start))

    def fused(self, users: Sequence[str]) -> None:
        """One fused pass for ``users``; on failure they are left to run alone."""
        first = self.calls[users[0]]
        cam_users = [u for u in users if get_method(u).needs_layer]
        self._report(users[0])
        start = self._clock()
        try:
            layer = self.calls[cam_users[0]].layer if cam_users else None
            if cam_users and layer is None:
                return
            fused = fused_pass(first.model, first.inputs, first.target, rules=rules_for(users), layer=layer)
            derived = {u: from_fused(u, first.inputs, self.calls[u].params, fused) for u in users}
        except Exception:  # noqa: BLE001 - fall back to separate runs, which report their own errors
            return
        share = (self._clock() - start) / len(users)
        for name, attribution in derived.items():
            others = tuple(u for u in users if u != name)
            self._finish(name, Outcome(attribution, None, share, others))

    def deeplift_pair(self) -> None:
        """DeepLift and DeepLiftShap from one batch of pairs; on failure both run alone."""
        from xaicore.explainers.methods import deeplift_shap_references

        dl, shap = self.calls["deeplift"], self.calls["deeplift_shap"]
        self._report("deeplift")
        start = self._clock()
        try:
            refs = deeplift_shap_references(shap)
            found = deeplift.deeplift_and_shap(dl.model, dl.inputs, dl.target, dl.baseline, refs)
        except Exception:  # noqa: BLE001 - the separate runs report their own errors
            return
        share = (self._clock() - start) / 2
        self._finish("deeplift", Outcome(found[0], None, share, ("deeplift_shap",)))
        self._finish("deeplift_shap", Outcome(found[1], None, share, ("deeplift",)))


def run_methods(
    calls: Mapping[str, MethodCall], *, progress: Progress | None = None, on_outcome: OnOutcome | None = None
) -> dict[str, Outcome]:
    """Run every ``name -> call`` (same model, inputs and target), sharing passes.

    The shared passes come first, then the other methods in the order of ``calls``.
    ``progress(done, total, title)`` is called before each method starts, ``on_outcome(name,
    outcome)`` after each finishes. Returns outcomes in the order of ``calls``.
    """
    runner = _Runner(calls, progress, on_outcome)
    names = list(calls)
    users = [n for n in names if get_method(n).single_pass]
    if len(users) >= 2:
        runner.fused(users)  # on failure every user runs alone below
    if "deeplift" in calls and "deeplift_shap" in calls and runner.device.type == "cuda":
        runner.deeplift_pair()
    for name in names:
        if name not in runner.outcomes:
            runner.run_alone(name)
    return {name: runner.outcomes[name] for name in names}
