"""Running several methods on one batch, sharing passes where the maths allows.

Saliency, Input x Gradient and Grad-CAM all need the gradient of the same class score: when
two or more of them (or Guided Grad-CAM) are asked for, one forward and one backward pass
gives the input gradient and the CAM layer's activation and gradient for all of them.
Guided Grad-CAM is then put together from that Grad-CAM map and the Guided Backprop result
(computed once, also when Guided Backprop itself is asked for). The results equal the
separate computations. When the shared pass fails, each method runs on its own so that the
error is attributed to the method it belongs to.

Every method's outcome, error included, is captured: the caller decides what to raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from xaicore.errors import MethodUnavailable
from xaicore.explainers import cam, modified_relu
from xaicore.explainers.gradients import GradientPass, chunked_gradient_pass
from xaicore.explainers.registry import Attribution, MethodCall, get_method

PASS_METHODS = ("saliency", "input_x_gradient", "gradcam")

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


def _from_pass(name: str, call: MethodCall, grads: GradientPass) -> Attribution:
    if name == "saliency":
        return Attribution(grads.input_grad.abs())  # type: ignore[union-attr]
    if name == "input_x_gradient":
        return Attribution(call.inputs * grads.input_grad)
    raw = cam.cam_from_pass(grads)
    return Attribution(cam.upsample_cam(raw, relu=bool(call.params["relu"]), size=tuple(call.inputs.shape[-2:])))


class _Runner:
    def __init__(self, calls: Mapping[str, MethodCall], progress: Progress | None) -> None:
        self.calls = calls
        self.progress = progress
        self.outcomes: dict[str, Outcome] = {}
        self.cam_raw: torch.Tensor | None = None
        self.pass_share = 0.0
        self.pass_users: tuple[str, ...] = ()
        self.device = next(iter(calls.values())).inputs.device

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _report(self, name: str) -> None:
        if self.progress is not None:
            self.progress(len(self.outcomes), len(self.calls), get_method(name).title)

    def run_alone(self, name: str) -> None:
        self._report(name)
        start = self._clock()
        try:
            attribution = get_method(name).compute(self.calls[name])
            error = None
        except Exception as exc:  # noqa: BLE001 - the caller turns it into a status or re-raises
            attribution, error = None, exc
        self.outcomes[name] = Outcome(attribution, error, self._clock() - start)

    def shared_pass(self, users: Sequence[str]) -> bool:
        """One gradient pass for ``users``; False when it failed (they then run alone)."""
        first = self.calls[users[0]]
        want_input = any(u in ("saliency", "input_x_gradient") for u in users)
        layers = [self.calls[u].layer for u in users if u in ("gradcam", "guided_gradcam")]
        self._report(users[0])
        start = self._clock()
        try:
            if any(layer is None for layer in layers):
                raise MethodUnavailable("A CAM method was asked for without a layer.")
            want_layer = bool(layers)
            grads = chunked_gradient_pass(
                first.model, first.inputs, first.target, layer=layers[0] if layers else None, want_input=want_input
            )
            derived = {u: _from_pass(u, self.calls[u], grads) for u in users if u in PASS_METHODS}
            self.cam_raw = cam.cam_from_pass(grads) if want_layer else None
        except Exception:  # noqa: BLE001 - fall back to separate runs, which report their own errors
            return False
        self.pass_users = tuple(users)
        self.pass_share = (self._clock() - start) / len(users)
        for name, attribution in derived.items():
            self.outcomes[name] = Outcome(attribution, None, self.pass_share, self._others(name, users))
        return True

    @staticmethod
    def _others(name: str, group: Sequence[str]) -> tuple[str, ...]:
        return tuple(u for u in group if u != name)

    def guided_gradcam(self) -> None:
        """Guided Grad-CAM from the Guided Backprop result and the shared pass's CAM map."""
        name = "guided_gradcam"
        call = self.calls[name]
        reused: list[str] = []
        gbp = self.outcomes.get("guided_backprop")
        self._report(name)
        start = self._clock()
        try:
            if gbp is not None and gbp.attribution is not None:
                guided = gbp.attribution.values
                reused.append("guided_backprop")
            else:
                guided = modified_relu.guided_backprop(call.model, call.inputs, call.target)
            if self.cam_raw is not None:
                raw = self.cam_raw
                reused.extend(self._others(name, self.pass_users))
            else:
                if call.layer is None:
                    raise MethodUnavailable("Guided Grad-CAM needs a convolutional layer, and none was given.")
                raw = cam.layer_cam(call.model, call.layer, call.inputs, call.target)
            attribution, error = Attribution(cam.guided_gradcam(guided, raw)), None
        except Exception as exc:  # noqa: BLE001
            attribution, error = None, exc
        own = self._clock() - start
        share = self.pass_share if name in self.pass_users else 0.0
        self.outcomes[name] = Outcome(attribution, error, own + share, tuple(reused))


def run_methods(calls: Mapping[str, MethodCall], *, progress: Progress | None = None) -> dict[str, Outcome]:
    """Run every ``name -> call`` (same model, inputs and target), sharing passes.

    ``progress(done, total, title)`` is called before each method starts. Returns outcomes in
    the order of ``calls``.
    """
    runner = _Runner(calls, progress)
    names = list(calls)
    users = [n for n in names if n in PASS_METHODS or n == "guided_gradcam"]
    if len(users) >= 2:
        runner.shared_pass(users)  # on failure every user runs alone below
    smart_guided = "guided_gradcam" in calls and ("guided_backprop" in calls or "guided_gradcam" in runner.pass_users)
    for name in names:
        if name in runner.outcomes:
            continue
        if name == "guided_gradcam" and smart_guided:
            if "guided_backprop" in calls and "guided_backprop" not in runner.outcomes:
                runner.run_alone("guided_backprop")
            runner.guided_gradcam()
        else:
            runner.run_alone(name)
    return {name: runner.outcomes[name] for name in names}
