"""GAX: heatmaps optimized to raise a model's confidence (Tjoa et al., docs/DESIGN.md idea 4).

Each image ``x`` gets its own parameters ``w`` (start ``w_init``) and ``b`` (start ``b_init``) of
the image's shape; the heatmap is ``h = tanh(w * x + b)`` and Adam minimizes

    loss = -CO(h) + l_s / mean((h - x + eps)^2 / (x + eps))

where ``CO(h) = kappa . (f(x + h) - f(x))`` on raw logits (:func:`xaicore.confidence.co_ax.co_score`).
The model sees ``x + h`` unclipped.

Step semantics. Step ``t`` is the heatmap after ``t`` Adam updates; step 0 is the initial one.
At every step the CO score is computed; an image whose score reaches ``target_co`` is *stopped*
at that step: its results are those of that step while the other images of the batch go on.
An image that never reaches the target stops at ``max_steps`` (always enforced; requests above
:data:`MAX_STEPS` are capped, and the result says so).

Batching. Several images run as one batch. Adam is elementwise, and every operation of the
step is per image, so the batched run equals the one-image loop exactly whenever the model's
own kernels give the same result for a sample whatever the batch size (true in float64 for
convolutions on the CPU; a BLAS may pick a different kernel for a batch of one in linear
layers, which then differ in the last bits). A stopped image stays in the batch until the next
check, where it is dropped from the working batch so that its compute is not wasted; what it
computes after its stop step is never reported.

CUDA. The step's forward and backward pass is recorded as a CUDA graph and replayed (recorded
again when the working batch shrinks); ``XAI_CUDA_GRAPHS=0`` turns that off. On the CPU the
model gets channels-last float32 batches (oneDNN's faster layout). Everywhere the step runs the
model with its max-poolings moved before their ReLUs when that rewrite applies and gives the
model's own logits (exact, forward and backward: :mod:`xaicore.models.rewrite`).

Host syncs. Nothing in the step loop waits for the device except the check done every
``check_every`` steps (and at step 0): how many images have stopped (the loop ends when all
have; stopped ones leave the batch) and the ``progress`` callback, which receives the current
CO scores.

History. Every heatmap step is stored into a preallocated buffer: ``float16`` (default; ``h``
lies in [-1, 1], where float16 resolves steps of 2**-11 or finer, so the change between two
steps, often a few hundredths, keeps its shape), ``int16`` with scale 1/32767, or ``int8`` with
scale 1/127 (half the memory, but a change of a few hundredths then takes only a handful of
levels and shows as speckle). When all steps of one image would exceed ``history_budget`` bytes
(300 steps of a 224 x 224 image in float16 take 90 MB), only every ``stride``-th step is kept,
with ``stride`` the smallest that fits (3 there); the final heatmap is always kept. The CO curve
keeps every step. The change between two kept steps is the difference of their frames
(:meth:`GaxHistory.change`), no recomputation needed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.confidence.co_ax import kappa, similarity_term
from xaicore.errors import ParameterError
from xaicore.explainers.fused import graphs_enabled
from xaicore.models.bundle import ModelBundle
from xaicore.models.rewrite import faster_forward
from xaicore.runtime.device import run_chunked
from xaicore.runtime.provenance import Provenance

MAX_STEPS = 5000
"""Largest step cap honoured; a larger ``max_steps`` is lowered to this and a notice says so."""

STEP_UNITS = 1.5
"""Work of one optimization step per image in plain forward+backward passes of the model."""

HISTORY_BUDGET_BYTES = 32_000_000
"""Default bound on the stored history of one image (32 MB)."""

HISTORY_SCALES: dict[torch.dtype, float] = {torch.int8: 1.0 / 127, torch.int16: 1.0 / 32767, torch.float16: 1.0}
"""Storage dtypes of the history and their scale: heatmap value = stored value x scale."""


@dataclass(frozen=True)
class GaxHistory:
    """The stored heatmap steps of one image.

    Attributes
    ----------
    frames:
        ``(F, 3, H, W)`` quantized heatmaps (see :data:`HISTORY_SCALES`).
    steps:
        ``(F,)`` the step each frame shows, increasing; the last one is the final step.
    scale:
        Heatmap value = frame value x ``scale``.
    """

    frames: np.ndarray
    steps: np.ndarray
    scale: float

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def heatmap(self, index: int) -> np.ndarray:
        """Frame ``index`` as a float32 ``(3, H, W)`` heatmap in [-1, 1]."""
        return self.frames[index].astype(np.float32) * np.float32(self.scale)

    def change(self, index: int) -> np.ndarray:
        """Per-channel change from the previous frame to frame ``index`` (zeros for the first)."""
        if index == 0:
            return np.zeros(self.frames.shape[1:], dtype=np.float32)
        return (self.frames[index].astype(np.float32) - self.frames[index - 1].astype(np.float32)) * np.float32(
            self.scale
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the frames and their step numbers."""
        return int(self.frames.nbytes + self.steps.nbytes)

    @property
    def bytes_per_step(self) -> int:
        """Bytes of one stored frame."""
        return int(self.frames[0].nbytes)


@dataclass(frozen=True)
class GaxImageResult:
    """GAX on one image.

    ``steps`` is the step at which the image stopped (the first whose CO score reached the
    target, else the cap); ``co_curve`` has ``steps + 1`` values (steps 0 to ``steps``);
    ``heatmap`` is the final heatmap in full precision, ``(3, H, W)``.
    """

    image: np.ndarray
    target: int
    target_label: str
    reached: bool
    steps: int
    co_curve: np.ndarray
    history: GaxHistory
    heatmap: np.ndarray
    final_logits: np.ndarray
    clean_logits: np.ndarray

    @property
    def final_co(self) -> float:
        return float(self.co_curve[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save: history ``frames`` and their ``steps``, ``scale``, the CO curve
        ``co``, the final ``heatmap`` and the ``image`` (model input, (H, W, 3))."""
        return {
            "frames": self.history.frames,
            "steps": self.history.steps,
            "scale": np.asarray(self.history.scale, dtype=np.float64),
            "co": self.co_curve,
            "heatmap": self.heatmap,
            "image": self.image,
        }

    def record(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_label": self.target_label,
            "reached": self.reached,
            "steps": self.steps,
            "final_co": self.final_co,
            "co_curve": [float(v) for v in self.co_curve],
            "history_steps": [int(s) for s in self.history.steps],
            "final_logits": [float(v) for v in self.final_logits],
            "clean_logits": [float(v) for v in self.clean_logits],
        }


@dataclass(frozen=True)
class GaxResult:
    """GAX on a batch of images: one :class:`GaxImageResult` each, and how they were made."""

    images: tuple[GaxImageResult, ...]
    target_co: float
    max_steps: int
    params: dict[str, Any]
    history_stride: int
    history_dtype: str
    notices: tuple[str, ...]
    provenance: Provenance
    runtime_s: float
    loop_steps: int

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> GaxImageResult:
        return self.images[index]

    def record(self) -> dict[str, Any]:
        """The JSON record: per-image CO curves, steps, reached flags, final logits; parameters."""
        return {
            "target_co": self.target_co,
            "max_steps": self.max_steps,
            "params": self.params,
            "history_stride": self.history_stride,
            "history_dtype": self.history_dtype,
            "history_scale": self.images[0].history.scale if self.images else None,
            "notices": list(self.notices),
            "runtime_s": self.runtime_s,
            "loop_steps": self.loop_steps,
            "images": [image.record() for image in self.images],
            "provenance": self.provenance.to_dict(),
        }

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``gax.json`` (:meth:`record`) and ``gax_history.npz`` into ``out_dir``.

        The npz holds :meth:`GaxImageResult.arrays` of each image; with one image the keys are
        plain (``frames``, ``steps``, ``co``, ``heatmap``, ``image``, ``scale``), with several
        they end in ``_<image index>``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for i, image in enumerate(self.images):
            suffix = "" if len(self.images) == 1 else f"_{i}"
            arrays.update({f"{key}{suffix}": value for key, value in image.arrays().items()})
        npz = out / "gax_history.npz"
        np.savez_compressed(npz, **arrays)  # type: ignore[arg-type]  # numpy's stubs match **arrays to allow_pickle
        js = out / "gax.json"
        js.write_text(json.dumps(self.record(), indent=2))
        return js, npz


def history_stride(max_steps: int, frame_bytes: int, *, budget: int) -> int:
    """Smallest stride whose frames (``ceil(max_steps / stride) + 1`` of them) fit ``budget``."""
    if 2 * frame_bytes > budget:
        raise ParameterError(
            f"A history budget of {budget} bytes cannot hold two heatmaps of {frame_bytes} bytes; "
            "raise history_budget or use a smaller image size."
        )
    stride = 1
    while (math.ceil(max_steps / stride) + 1) * frame_bytes > budget:
        stride += 1
    return stride


def quantize(heatmap: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A heatmap in [-1, 1] stored as ``dtype`` with the scale of :data:`HISTORY_SCALES`."""
    if dtype == torch.float16:
        return heatmap.to(torch.float16)
    levels = round(1.0 / HISTORY_SCALES[dtype])
    return torch.round(heatmap * levels).clamp_(-levels, levels).to(dtype)


@dataclass(frozen=True)
class _Settings:
    target_co: float
    max_steps: int
    lr: float
    beta1: float
    beta2: float
    l_s: float
    eps: float
    adam_eps: float
    w_init: float
    b_init: float
    check_every: int


def _check_settings(
    *,
    target_co: float,
    max_steps: int,
    lr: float,
    betas: Sequence[float],
    l_s: float,
    eps: float,
    adam_eps: float,
    w_init: float,
    b_init: float,
    check_every: int,
) -> tuple[_Settings, list[str]]:
    notices: list[str] = []
    if isinstance(max_steps, bool) or int(max_steps) != max_steps:
        raise ParameterError(f"max_steps must be a whole number; got {max_steps!r}.")
    if max_steps < 1:
        raise ParameterError("max_steps must be at least 1: GAX needs at least one optimization step.")
    if max_steps > MAX_STEPS:
        notices.append(f"The step cap {int(max_steps)} was lowered to the maximum of {MAX_STEPS} steps.")
        max_steps = MAX_STEPS
    if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
        raise ParameterError("betas must be two numbers in [0, 1), e.g. (0.9, 0.999).")
    for name, value in (("target_co", target_co), ("w_init", w_init), ("b_init", b_init), ("l_s", l_s)):
        if not (math.isfinite(value) or (name == "target_co" and value == math.inf)):
            raise ParameterError(f"{name} must be a finite number; got {value!r}.")
    for name, value in (("lr", lr), ("eps", eps), ("adam_eps", adam_eps)):
        if not (math.isfinite(value) and value > 0):
            raise ParameterError(f"{name} must be a positive number; got {value!r}.")
    if l_s < 0:
        raise ParameterError(f"l_s must be zero or positive; got {l_s!r}.")
    if check_every < 1:
        raise ParameterError("check_every must be at least 1.")
    settings = _Settings(
        target_co=float(target_co),
        max_steps=int(max_steps),
        lr=float(lr),
        beta1=float(betas[0]),
        beta2=float(betas[1]),
        l_s=float(l_s),
        eps=float(eps),
        adam_eps=float(adam_eps),
        w_init=float(w_init),
        b_init=float(b_init),
        check_every=int(check_every),
    )
    return settings, notices


class _Adam:
    """Adam on one batched parameter tensor (the image index on dimension ``batch_dim``).

    Same arithmetic as ``torch.optim.Adam`` (single-tensor form), in place. Every image in the
    working batch has taken the same number of updates, so the bias corrections are plain
    numbers. An image that reached its target keeps being updated until the next stopping
    check drops it from the batch; nothing computed after its stop step is reported, so those
    updates change no result.
    """

    def __init__(self, param: torch.Tensor, *, batch_dim: int, lr: float, beta1: float, beta2: float, eps: float):
        self.param = param
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.batch_dim = batch_dim
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.step_count = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        self.step_count += 1
        correction1 = 1.0 - self.beta1**self.step_count
        correction2_sqrt = math.sqrt(1.0 - self.beta2**self.step_count)
        self.m.lerp_(grad, 1.0 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        denom = self.v.sqrt().div_(correction2_sqrt).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / correction1)

    @torch.no_grad()
    def select(self, keep: torch.Tensor) -> None:
        """Keep only the images ``keep`` (indices along the batch dimension), state included."""
        dim = self.batch_dim
        self.param = self.param.index_select(dim, keep).requires_grad_(True)
        self.m = self.m.index_select(dim, keep)
        self.v = self.v.index_select(dim, keep)


class _StepPass:
    """One GAX step's forward and backward pass: heatmap, logits, CO score and the gradient of
    the loss with respect to the stacked (w, b) parameters.

    On CUDA it is recorded as a CUDA graph for the current working tensors and replayed every
    step (the optimizer changes the parameters in place, which the replay reads); it is
    recorded again when the working batch shrinks. The outputs are the graph's own buffers,
    valid until the next call. Elsewhere, or when recording fails, it runs eagerly; both give
    the same kernels, hence the same numbers.
    """

    WARMUP = 2

    def __init__(self, net: nn.Module, settings: _Settings) -> None:
        self._net = net
        self._s = settings
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple[int, ...] = ()
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._inputs: tuple[torch.Tensor, ...] = ()
        self._use_graph: bool | None = None

    def _eager(self, wb: torch.Tensor, xb: torch.Tensor, cleanb: torch.Tensor, weightsb: torch.Tensor):
        with torch.enable_grad():
            w, b = wb.unbind(0)  # one backward node for both halves (two selects would zero-fill twice)
            h = torch.tanh(w * xb + b)
            z = xb + h
            if z.device.type == "cpu" and z.dtype == torch.float32:
                # oneDNN's channels-last convolutions are faster on a CPU; values agree to float32 rounding
                z = z.contiguous(memory_format=torch.channels_last)
            logits = self._net(z)
            co = ((logits - cleanb) * weightsb).sum(dim=1)
            loss = self._s.l_s / similarity_term(h, xb, eps=self._s.eps) - co
            (grad,) = torch.autograd.grad(loss.sum(), (wb,))
        return h.detach(), logits.detach(), co.detach(), grad

    def __call__(self, wb: torch.Tensor, xb: torch.Tensor, cleanb: torch.Tensor, weightsb: torch.Tensor):
        if self._use_graph is None:
            self._use_graph = xb.device.type == "cuda" and graphs_enabled()
        if not self._use_graph:
            return self._eager(wb, xb, cleanb, weightsb)
        key = tuple(id(t) for t in (wb, xb, cleanb, weightsb))
        if key != self._key:
            try:
                self._capture(wb, xb, cleanb, weightsb)
            except Exception:  # noqa: BLE001 - anything the capture cannot handle runs eagerly
                self._use_graph, self._graph = False, None
                return self._eager(wb, xb, cleanb, weightsb)
            self._key = key
        self._graph.replay()  # type: ignore[union-attr]
        return self._outputs

    def _capture(self, wb: torch.Tensor, xb: torch.Tensor, cleanb: torch.Tensor, weightsb: torch.Tensor) -> None:
        self._graph = None
        side = torch.cuda.Stream(device=xb.device)
        side.wait_stream(torch.cuda.current_stream(xb.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self._eager(wb, xb, cleanb, weightsb)
        torch.cuda.current_stream(xb.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._eager(wb, xb, cleanb, weightsb)
        # the graph reads these tensors' memory: they must live as long as it does
        self._graph, self._outputs, self._inputs = graph, outputs, (wb, xb, cleanb, weightsb)


def run_gax(
    bundle: ModelBundle,
    images: np.ndarray | torch.Tensor,
    *,
    target: int | str | Sequence[int | str] | None = None,
    target_co: float = 48.0,
    max_steps: int = 300,
    lr: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.999),
    l_s: float = 100.0,
    eps: float = 1e-4,
    w_init: float = 1.0,
    b_init: float = 0.01,
    adam_eps: float = 1e-8,
    check_every: int = 10,
    history_dtype: torch.dtype = torch.float16,
    history_budget: int = HISTORY_BUDGET_BYTES,
    batch_size: int | None = None,
    progress: Callable[[int, int, np.ndarray], None] | None = None,
) -> GaxResult:
    """Optimize a GAX heatmap for each image until its CO score reaches ``target_co``.

    Parameters
    ----------
    bundle:
        The model, run under ``bundle.lock``; the compute dtype follows its parameters (for a
        float64 run, a :meth:`~xaicore.models.bundle.ModelBundle.private_copy` whose model was
        made ``double()``).
    images:
        One (H, W, 3) array in [0, 1] or a batch (N, H, W, 3) / (N, 3, H, W); resized to the
        model's input size.
    target:
        Class of interest: ``None`` (each image's predicted class), one class for all, or one
        per image (index or label).
    target_co:
        CO score at which an image stops.
    max_steps:
        Step cap, between 1 and :data:`MAX_STEPS` (larger values are lowered, with a notice).
    lr, betas, adam_eps:
        Adam's learning rate, moment decays and denominator epsilon.
    l_s, eps:
        Weight and epsilon of the similarity term (:func:`xaicore.confidence.co_ax.similarity_term`).
    w_init, b_init:
        Starting values of ``w`` and ``b``.
    check_every:
        Steps between the checks that end the loop once every image stopped and call
        ``progress`` (the only host syncs in the loop).
    history_dtype, history_budget:
        Storage of the heatmap history (module docstring) and its bound in bytes per image.
    batch_size:
        Images optimized together (default: all); halved when the device runs out of memory
        (:func:`xaicore.runtime.device.run_chunked`). Results do not depend on it.
    progress:
        Called at each check with (step, max_steps, CO scores of the images in the batch being
        optimized, as a numpy array).

    Returns
    -------
    GaxResult
        One :class:`GaxImageResult` per image.
    """
    settings, notices = _check_settings(
        target_co=target_co,
        max_steps=max_steps,
        lr=lr,
        betas=betas,
        l_s=l_s,
        eps=eps,
        adam_eps=adam_eps,
        w_init=w_init,
        b_init=b_init,
        check_every=check_every,
    )
    if history_dtype not in HISTORY_SCALES:
        raise ParameterError("history_dtype must be torch.int8, torch.int16 or torch.float16.")
    net = bundle.model
    dtype = next(net.parameters()).dtype
    x = bundle.to_input(images).to(dtype)
    if bool(((x < 0) | (x > 1)).any()):
        raise ParameterError("Image values must lie in [0, 1].")
    n, _, height, width = x.shape
    frame_bytes = 3 * height * width * torch.empty((), dtype=history_dtype).element_size()
    stride = history_stride(settings.max_steps, frame_bytes, budget=int(history_budget))
    if stride > 1:
        notices.append(
            f"To keep the history within {int(history_budget)} bytes per image, one step in {stride} is stored "
            "(the CO curve keeps every step)."
        )
    given = None if target is None else bundle.resolve_targets(target, n=n, device=x.device)
    if batch_size is not None and batch_size < 1:
        raise ParameterError("batch_size must be at least 1 (or None for all images at once).")
    started = time.perf_counter()

    def chunk(start: int, stop: int) -> list[tuple[GaxImageResult, int]]:
        with bundle.lock:
            with torch.no_grad():
                clean = net(x[start:stop])
            part = None if given is None else given[start:stop]
            targets = bundle.resolve_targets(part, n=stop - start, logits=clean)
            step_net = _step_network(net, x[start:stop], clean)
            loop = _optimize(
                step_net,
                x[start:stop],
                clean,
                targets,
                settings=settings,
                stride=stride,
                history_dtype=history_dtype,
                progress=progress,
            )
        return [
            (image, loop.loop_steps)
            for image in _image_results(
                bundle, x[start:stop], clean, targets, loop, stride=stride, history_dtype=history_dtype
            )
        ]

    done = run_chunked(chunk, n, chunk=batch_size or n, combine=lambda parts: [item for p in parts for item in p])
    return GaxResult(
        images=tuple(image for image, _ in done),
        target_co=settings.target_co,
        max_steps=settings.max_steps,
        params=_params(settings, x.dtype),
        history_stride=stride,
        history_dtype=str(history_dtype).replace("torch.", ""),
        notices=tuple(notices),
        provenance=Provenance(
            model_name=bundle.name,
            model_fingerprint=bundle.fingerprint,
            seed=0,
            device=str(x.device),
            preprocessing=bundle.preprocess.frame_of(images).record(),
        ),
        runtime_s=time.perf_counter() - started,
        loop_steps=max(steps for _, steps in done),
    )


def _step_network(net: nn.Module, x: torch.Tensor, clean: torch.Tensor) -> nn.Module:
    """``net``, or its exact faster rewrite (:func:`xaicore.models.rewrite.faster_forward`: the
    ReLUs before max-poolings then run on a quarter of the values, forward and backward) when
    that gives exactly ``clean``, the logits of ``net`` on ``x``."""
    fast = faster_forward(net)
    if fast is None:
        return net
    try:
        with torch.no_grad():
            same = torch.equal(fast(x), clean)
    except Exception:  # noqa: BLE001 - a rewrite that cannot run is not used
        same = False
    return fast if same else net


@dataclass(frozen=True)
class _Loop:
    frames: torch.Tensor  # (F, N, 3, H, W) history buffer
    co: torch.Tensor  # (T + 1, N) CO per step (rows past loop_steps unused)
    stop_step: torch.Tensor  # (N,) long
    reached: torch.Tensor  # (N,) bool
    heatmap: torch.Tensor  # (N, 3, H, W) final
    logits: torch.Tensor  # (N, C) final
    loop_steps: int  # last step evaluated


def _optimize(
    net: nn.Module,
    x: torch.Tensor,
    clean: torch.Tensor,
    targets: torch.Tensor,
    *,
    settings: _Settings,
    stride: int,
    history_dtype: torch.dtype,
    progress: Callable[[int, int, np.ndarray], None] | None,
) -> _Loop:
    """The step loop. Rows of the working batch map to images through ``rows``; images that
    stopped are dropped from the batch at the next check, so their compute is not wasted."""
    n = x.shape[0]
    s = settings
    weights = kappa(targets, num_classes=clean.shape[1], dtype=x.dtype, device=x.device)
    # w and b in one tensor (2, N, 3, H, W): one optimizer update per step instead of two
    wb = torch.stack([torch.full_like(x, s.w_init), torch.full_like(x, s.b_init)]).requires_grad_(True)
    adam = _Adam(wb, batch_dim=1, lr=s.lr, beta1=s.beta1, beta2=s.beta2, eps=s.adam_eps)
    frames = torch.empty((s.max_steps // stride + 1, *x.shape), dtype=history_dtype, device=x.device)
    co_steps = torch.empty((s.max_steps + 1, n), dtype=x.dtype, device=x.device)
    final_h = torch.empty_like(x)
    final_logits = torch.empty_like(clean)
    reached = torch.zeros(n, dtype=torch.bool, device=x.device)
    stop_step = torch.full((n,), s.max_steps, dtype=torch.long, device=x.device)
    rows = torch.arange(n, device=x.device)
    xb, cleanb, weightsb = x, clean, weights
    step_pass = _StepPass(net, settings)
    t = 0
    reported = -1
    while True:
        h, logits, co, grad = step_pass(adam.param, xb, cleanb, weightsb)
        with torch.no_grad():
            was = reached.index_select(0, rows)
            live = ~was
            co_steps[t].index_copy_(0, rows, co)
            if t % stride == 0:
                frames[t // stride].index_copy_(0, rows, quantize(h, history_dtype))
            final_h.index_copy_(0, rows, torch.where(live.view(-1, 1, 1, 1), h, final_h.index_select(0, rows)))
            final_logits.index_copy_(0, rows, torch.where(live.view(-1, 1), logits, final_logits.index_select(0, rows)))
            now = was | (co >= s.target_co)
            stop_step.index_copy_(0, rows, torch.where(live & now, t, stop_step.index_select(0, rows)))
            reached.index_copy_(0, rows, now)
        if t == s.max_steps:
            break
        stopped = -1
        if t % s.check_every == 0:
            if progress is not None:
                progress(t, s.max_steps, _latest_co(co_steps, stop_step, t))
                reported = t
            stopped = int(now.sum())  # the host sync of this check
            if stopped == rows.numel():
                break
        adam.step(grad)
        if stopped > 0:
            keep = (~now).nonzero().squeeze(1)
            rows, xb, cleanb, weightsb = rows[keep], xb[keep], cleanb[keep], weightsb[keep]
            adam.select(keep)
        t += 1
    if progress is not None and reported != t:
        progress(t, s.max_steps, _latest_co(co_steps, stop_step, t))
    return _Loop(
        frames=frames,
        co=co_steps,
        stop_step=stop_step,
        reached=reached,
        heatmap=final_h,
        logits=final_logits,
        loop_steps=t,
    )


def _latest_co(co_steps: torch.Tensor, stop_step: torch.Tensor, t: int) -> np.ndarray:
    """Each image's CO score at step ``t``, or at its stop step when it stopped earlier."""
    index = torch.clamp(stop_step, max=t)
    return co_steps[index, torch.arange(co_steps.shape[1], device=co_steps.device)].cpu().double().numpy()


def _image_results(
    bundle: ModelBundle,
    x: torch.Tensor,
    clean: torch.Tensor,
    targets: torch.Tensor,
    loop: _Loop,
    *,
    stride: int,
    history_dtype: torch.dtype,
) -> list[GaxImageResult]:
    """Per-image results, copied to the host once: each image's history up to its stop step."""
    stops = loop.stop_step.cpu().numpy()
    reached = loop.reached.cpu().numpy()
    co = loop.co.cpu().double().numpy()
    final_frames = quantize(loop.heatmap, history_dtype).cpu().numpy()
    frames = loop.frames.cpu().numpy()
    images_np = x.permute(0, 2, 3, 1).float().cpu().numpy()
    heatmaps = loop.heatmap.float().cpu().numpy()
    logits = loop.logits.cpu().numpy()
    clean_np = clean.cpu().numpy()
    results = []
    for i in range(x.shape[0]):
        stop = int(stops[i])
        kept = np.arange(0, stop, stride)
        history = GaxHistory(
            frames=np.concatenate([frames[kept // stride, i], final_frames[i : i + 1]]),
            steps=np.append(kept, stop).astype(np.int64),
            scale=HISTORY_SCALES[history_dtype],
        )
        target = int(targets[i])
        results.append(
            GaxImageResult(
                image=images_np[i],
                target=target,
                target_label=bundle.labels[target],
                reached=bool(reached[i]),
                steps=stop,
                co_curve=co[: stop + 1, i].copy(),
                history=history,
                heatmap=heatmaps[i],
                final_logits=logits[i],
                clean_logits=clean_np[i],
            )
        )
    return results


def _params(settings: _Settings, dtype: torch.dtype) -> dict[str, Any]:
    return {
        "target_co": settings.target_co,
        "max_steps": settings.max_steps,
        "lr": settings.lr,
        "betas": [settings.beta1, settings.beta2],
        "l_s": settings.l_s,
        "eps": settings.eps,
        "adam_eps": settings.adam_eps,
        "w_init": settings.w_init,
        "b_init": settings.b_init,
        "check_every": settings.check_every,
        "dtype": str(dtype).replace("torch.", ""),
    }


__all__ = [
    "MAX_STEPS",
    "HISTORY_BUDGET_BYTES",
    "HISTORY_SCALES",
    "GaxHistory",
    "GaxImageResult",
    "GaxResult",
    "history_stride",
    "quantize",
    "run_gax",
]
