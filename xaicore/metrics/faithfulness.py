"""Faithfulness of heatmaps by insertion and deletion (Petsiuk et al. 2018).

Definition (also written into every result, see :data:`DEFINITION`):

* **Ranking.** Each map is summed over colour channels; pixels are ordered by that value,
  largest first, ties broken by raster index (a stable sort on ``(-value, row * W + col)``).
* **Steps.** With ``P = H * W`` pixels, the step is ``s = max(1, round(step_fraction * P))``
  pixels and the last count ``k_max = max(1, round(fraction * P))``. The curve is sampled at
  ``k = 0, s, 2s, ...`` below ``k_max``, and at ``k_max`` itself.
* **Deletion** replaces the top-``k`` pixels (all three channels) of the image by the
  background; **insertion** starts from the background and puts the top-``k`` pixels of the
  image back. Each curve point is the softmax probability of the target class.
* **AUC** is the trapezoid rule over the fraction axis ``x_j = k_j / P``, from 0 to
  ``k_max / P`` (about ``fraction``): ``sum_j (x_{j+1} - x_j) (p_j + p_{j+1}) / 2``. It is not
  divided by ``fraction``, so it lies in ``[0, k_max / P]``. A faithful map has a high
  insertion AUC and a low deletion AUC.
* **Random control.** The same curves for a uniformly random pixel order drawn from a local
  generator seeded with ``seed``: a map is informative where it beats this control.

Every masked image of every curve (all methods, all images, both kinds) is built on the
model's device from the rank of each pixel (``rank < k``) and sent through the model in
memory-bounded batches (:func:`xaicore.runtime.device.run_chunked`); probabilities stay on the device
until the end. The batched path equals the one-image-at-a-time loop to float rounding (tested
to 1e-5) and does less work per masked image than a plain forward pass:

* **Exact shortcuts.** Normalization is pixel-wise, so the image and the background are
  normalized once and the masked images are built from them; the curve ends (``k = 0``, and
  ``k = P`` when ``fraction = 1``) show the plain image or the background whatever the ranking,
  so those 2N images go through the plain model once for every method and the control. The
  masked images are made by bit selection between the normalized image and background
  (:func:`_masker`), equal to ``torch.where`` bit for bit and faster on the CPU.
* **Inference copy (CPU).** :func:`inference_copy` makes, once per model and weights, a
  private copy with every ``max_pool(relu(a))`` turned into the equal ``relu(max_pool(a))``
  (:func:`pool_before_relu`), then traced, frozen and optimized for inference by TorchScript
  (batch norm folded, oneDNN convolutions with pre-packed weights, activations in oneDNN's
  layout). It is used only when it agrees with the plain model within 1e-5 on (up to 8 of) the
  curve-end images; models TorchScript or fx cannot take run plainly. On CUDA the plain model
  runs. A fully connected head is copied apart (:func:`split_at_head`) and runs on the
  features of up to 256 masked images at a time, while the convolutions take 32 at a time:
  each layout suits its part.
* **Threads (CPU).** With at most 4 intra-op threads, the copy runs from one worker thread
  per intra-op thread, each with one intra-op thread and its share of a batch (small
  convolutions, pooling and masking split poorly across threads; see :func:`cpu_workers`).
  The worker threads live on between calls (:func:`worker_pool`): ``torch.set_num_threads``
  also sets the count new threads start from and clears oneDNN's cache of compiled
  convolutions, so it runs once per pool, not per call.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.explainers.baselines import BLUR_SIGMA_FRACTION, make_baseline
from xaicore.models import inference
from xaicore.models.bundle import ModelBundle
from xaicore.models.rewrite import split_normalization
from xaicore.runtime.device import run_chunked
from xaicore.runtime.provenance import Provenance

DEFINITION = (
    "Pixels ranked by the channel-summed attribution, largest first, ties by raster index. "
    "Step s = max(1, round(step_fraction * P)) pixels of P; curve at k = 0, s, 2s, ... and k_max = "
    "max(1, round(fraction * P)). Deletion: top-k pixels replaced by the background; insertion: "
    "background with the top-k pixels of the image. Value: softmax probability of the target. "
    "AUC: trapezoid rule over x = k / P from 0 to k_max / P, not rescaled."
)
BACKGROUNDS = ("black", "blur", "mean")
RANDOM = "random"  # name of the random-ranking control in results
KINDS = ("insertion", "deletion")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Curves:
    """Insertion and deletion curves of one ranking (a method, or the random control).

    Attributes
    ----------
    insertion, deletion:
        (N, K) float64 softmax probabilities of the target, one row per image.
    insertion_auc, deletion_auc:
        (N,) float64 areas (see the module docstring).
    rank:
        (N, H, W) int32 position of each pixel in the order (0 = most relevant); the masked
        image at step ``j`` shows ``rank < k_j``.
    no_signal:
        (N,) bool, true where the map was constant (all zero, say): its order is raster order
        and its curves say nothing about the method.
    control:
        True for the random ranking.
    """

    method: str
    insertion: np.ndarray
    deletion: np.ndarray
    insertion_auc: np.ndarray
    deletion_auc: np.ndarray
    rank: np.ndarray
    no_signal: np.ndarray
    control: bool = False

    def record(self, fractions: np.ndarray) -> dict[str, Any]:
        return {
            "method": self.method,
            "control": self.control,
            "fractions": fractions.tolist(),
            "insertion": self.insertion.tolist(),
            "deletion": self.deletion.tolist(),
            "insertion_auc": self.insertion_auc.tolist(),
            "deletion_auc": self.deletion_auc.tolist(),
            "no_signal": self.no_signal.tolist(),
        }


@dataclass(frozen=True)
class FaithfulnessResult:
    """Insertion and deletion curves of several rankings over N images.

    ``images`` and ``backgrounds`` are (N, H, W, 3) float32 in [0, 1]: with ``Curves.rank``
    they rebuild any masked image without the model (:meth:`masked_image`).
    """

    fractions: np.ndarray
    steps: np.ndarray
    curves: tuple[Curves, ...]
    images: np.ndarray
    backgrounds: np.ndarray
    target: np.ndarray
    params: dict[str, Any]
    provenance: Provenance
    runtime_s: float
    definition: str = DEFINITION
    extra: dict[str, Any] = field(default_factory=dict)

    def by_method(self) -> dict[str, Curves]:
        return {c.method: c for c in self.curves}

    def get(self, method: str) -> Curves:
        try:
            return self.by_method()[method]
        except KeyError:
            raise UnknownNameError(
                f"No curves for {method!r}; this result has {', '.join(c.method for c in self.curves)}."
            ) from None

    def masked_image(self, method: str, *, step: int, kind: str, image: int = 0) -> np.ndarray:
        """The (H, W, 3) image the model saw at curve point ``step`` of ``kind`` for ``method``."""
        if kind not in KINDS:
            raise ParameterError(f"kind must be 'insertion' or 'deletion'; got {kind!r}.")
        if not 0 <= step < len(self.steps):
            raise ParameterError(f"step must be between 0 and {len(self.steps) - 1}; got {step}.")
        shown = self.get(method).rank[image] < self.steps[step]
        if kind == "deletion":
            shown = ~shown
        return np.where(shown[..., None], self.images[image], self.backgrounds[image])

    def changed_pixels(self, method: str, *, step: int, image: int = 0) -> np.ndarray:
        """(H, W) bool: the pixels changed at curve point ``step`` for ``method``, the same for both
        curves: deletion has replaced them by the background, insertion has put them onto it.

        These are the ``steps[step]`` most relevant pixels of the method's order; the rest of the
        image is as at the start of the curve (the image for deletion, the background for insertion).
        """
        if not 0 <= step < len(self.steps):
            raise ParameterError(f"step must be between 0 and {len(self.steps) - 1}; got {step}.")
        return self.get(method).rank[image] < self.steps[step]

    def background_text(self) -> str:
        """The background of these curves in words, e.g. "the blurred image (Gaussian, sigma 8 px)"."""
        return describe_background(self.params.get("background", "given"), self.images.shape[1:3])

    def summary(self, *, image: int = 0) -> list[dict[str, Any]]:
        """One row per ranking for ``image``: both AUCs, their difference, and the comparison
        with the random control ("better on both", "worse on both", "mixed", "no signal",
        "control"; "no control" when the result has none)."""
        control = self.by_method().get(RANDOM) if self.params.get("random_control") else None
        rows = []
        for c in self.curves:
            ins, dele = float(c.insertion_auc[image]), float(c.deletion_auc[image])
            if c.control:
                verdict = "control"
            elif c.no_signal[image]:
                verdict = "no signal"
            elif control is None:
                verdict = "no control"
            else:
                better = (ins > float(control.insertion_auc[image]), dele < float(control.deletion_auc[image]))
                verdict = {(True, True): "better on both", (False, False): "worse on both"}.get(better, "mixed")
            rows.append(
                {
                    "method": c.method,
                    "insertion_auc": ins,
                    "deletion_auc": dele,
                    "difference": ins - dele,
                    "vs_random": verdict,
                }
            )
        return rows

    def to_csv(self) -> str:
        """CSV text, one row per ranking, image, curve and step: pixels, fraction, probability."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", "image", "curve", "step", "pixels", "fraction", "probability"])
        for c in self.curves:
            for n in range(len(self.target)):
                for kind in KINDS:
                    values = getattr(c, kind)[n]
                    for j, (k, f, p) in enumerate(zip(self.steps, self.fractions, values)):
                        writer.writerow([c.method, n, kind, j, int(k), repr(float(f)), repr(float(p))])
        return buffer.getvalue()

    def record(self) -> dict[str, Any]:
        """JSON-ready record: definition, parameters, steps, per-ranking curves and AUCs, provenance."""
        return {
            "definition": self.definition,
            "params": self.params,
            "target": self.target.tolist(),
            "steps": self.steps.tolist(),
            "fractions": self.fractions.tolist(),
            "methods": {c.method: c.record(self.fractions) for c in self.curves},
            "runtime_s": self.runtime_s,
            "provenance": self.provenance.to_dict(),
            **self.extra,
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``faithfulness.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "faithfulness.json"
        path.write_text(json.dumps(self.record(), indent=2))
        return path


# ----------------------------------------------------------------------------- pieces


def describe_background(kind: str, size: Sequence[int]) -> str:
    """What the insertion/deletion background ``kind`` is on images of ``size`` = (H, W), in words.

    ``"blur"`` names its sigma in pixels (:data:`~xaicore.explainers.baselines.BLUR_SIGMA_FRACTION`
    of the shorter side, as :func:`make_background` uses it).
    """
    if kind == "black":
        return "black"
    if kind == "blur":
        sigma = BLUR_SIGMA_FRACTION * min(int(size[0]), int(size[1]))
        return f"the blurred image (Gaussian, sigma {sigma:g} px)"
    if kind == "mean":
        return "the image's mean colour"
    return "the given background image"


def curve_steps(num_pixels: int, *, step_fraction: float, fraction: float) -> np.ndarray:
    """Pixel counts ``k`` at which the curves are sampled (see the module docstring)."""
    if not 0 < step_fraction <= 1:
        raise ParameterError(f"step_fraction must be in (0, 1]; got {step_fraction}.")
    if not 0 < fraction <= 1:
        raise ParameterError(f"fraction must be in (0, 1] (1 = all pixels, 0.5 = half); got {fraction}.")
    step = max(1, int(round(step_fraction * num_pixels)))
    k_max = max(1, int(round(fraction * num_pixels)))
    return np.append(np.arange(0, k_max, step), k_max).astype(np.int64)


def forward_passes(num_pixels: int, *, step_fraction: float, fraction: float) -> int:
    """Forward passes one image's insertion and deletion curves take (one per point of each)."""
    return 2 * len(curve_steps(num_pixels, step_fraction=step_fraction, fraction=fraction))


def trapezoid_auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area of each row of ``curves`` (..., K) over ``fractions`` (K,)."""
    widths = np.diff(fractions)
    return ((curves[..., 1:] + curves[..., :-1]) * 0.5 * widths).sum(axis=-1)


def pixel_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel (N, P) -> (N, P) int32: 0 for the largest score, ties by index."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    positions = torch.arange(scores.shape[1], device=scores.device, dtype=torch.int32).expand_as(order)
    return torch.empty_like(order, dtype=torch.int32).scatter_(1, order, positions)


def make_background(kind: str | torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The background (N, 3, H, W) for insertion/deletion: "black", "blur", "mean" or a given tensor.

    "blur" and "mean" are the explainers' baselines of the same name
    (:func:`xaicore.explainers.baselines.make_baseline`); a tensor is broadcast to the inputs.
    """
    if isinstance(kind, torch.Tensor):
        try:
            given = torch.broadcast_to(kind.to(device=inputs.device, dtype=inputs.dtype), inputs.shape)
        except RuntimeError as exc:
            raise ParameterError(
                f"A background of shape {tuple(kind.shape)} does not fit images of shape {tuple(inputs.shape)}."
            ) from exc
        if not torch.isfinite(given).all():
            raise ParameterError("The background contains NaN or inf values.")
        return given.contiguous()
    if kind not in BACKGROUNDS:
        raise ParameterError(f"Unknown background {kind!r}; choose black, blur, mean, or pass an image tensor.")
    return make_baseline(kind, inputs, generator=torch.Generator(device=inputs.device))


def _relevance(name: str, attribution: torch.Tensor | np.ndarray, shape: tuple[int, int, int], device) -> torch.Tensor:
    a = torch.as_tensor(attribution).to(device=device)
    n, h, w = shape
    if a.ndim == 4:
        a = a.sum(dim=1)
    if tuple(a.shape) != (n, h, w):
        raise ParameterError(
            f"The attribution of {name} has shape {tuple(torch.as_tensor(attribution).shape)}; "
            f"expected ({n}, 3, {h}, {w}) or ({n}, {h}, {w}) to match the images."
        )
    if not torch.isfinite(a).all():
        raise ParameterError(f"The attribution of {name} contains NaN or inf, so its pixels cannot be ranked.")
    return a.flatten(1).to(torch.float64)


def _default_batch(device: torch.device) -> int:
    return 256 if device.type == "cuda" else 64


# ----------------------------------------------------------------------------- the computation


def insertion_deletion(
    bundle: ModelBundle,
    inputs: torch.Tensor,
    attributions: Mapping[str, torch.Tensor | np.ndarray],
    *,
    target: int | Sequence[int] | torch.Tensor,
    step_fraction: float = 0.01,
    fraction: float = 1.0,
    background: str | torch.Tensor = "black",
    batch_size: int | None = None,
    random_control: bool = True,
    seed: int = 0,
    optimize: bool = True,
) -> FaithfulnessResult:
    """Insertion and deletion curves and AUCs of several maps over several images at once.

    Parameters
    ----------
    bundle:
        The model bundle; its ``model`` is run under its lock (measure a
        :meth:`~xaicore.models.bundle.ModelBundle.private_copy` for other weights).
    inputs:
        (N, 3, H, W) images in pixel space [0, 1] at the model's input size.
    attributions:
        Method name -> attributions (N, 3, H, W), or already channel-summed maps (N, H, W).
        Maps with NaN or inf are refused (:class:`ParameterError`): check them first with
        :func:`xaicore.explainers.results.classify_attribution`.
    target:
        One class (index or label) for all images, or one per image, see
        :meth:`~xaicore.models.bundle.ModelBundle.resolve_targets`.
    step_fraction, fraction:
        Step and end of the curves as fractions of the pixels (see the module docstring).
    background:
        "black", "blur", "mean", or a tensor broadcastable to ``inputs``.
    batch_size:
        Masked images per forward pass (halved on out-of-memory); default 64 on CPU, 256 on GPU.
        An inference copy with its fully connected head apart runs that head on the features
        of up to ``max(batch_size, HEAD_ROWS)`` images per worker.
    random_control, seed:
        Add the curves of a random pixel order drawn from a generator seeded with ``seed``.
    optimize:
        On the CPU, run the masked images through an inference-optimized private copy of the
        model (TorchScript, frozen, oneDNN layouts; made once per model and weights, checked
        against the plain model, see :func:`inference_copy`). False runs the plain model.
        Either way the curves equal the one-image-at-a-time loop to float rounding.

    Returns
    -------
    FaithfulnessResult
        One :class:`Curves` per method, in the given order, then the random control.
    """
    started = time.perf_counter()
    device = bundle.device
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ParameterError("inputs must be a tensor of images of shape (N, 3, H, W).")
    if not attributions and not random_control:
        raise ParameterError("Nothing to measure: give at least one attribution or ask for the random control.")
    x = inputs.to(device=device, dtype=torch.float32).contiguous()
    n, _, h, w = x.shape
    num_pixels = h * w
    steps = curve_steps(num_pixels, step_fraction=step_fraction, fraction=fraction)
    fractions = steps / num_pixels
    tgt = bundle.resolve_targets(target, n=n, device=device)
    bg = make_background(background, x)

    names = list(attributions)
    if random_control and RANDOM in names:
        raise ParameterError(f"{RANDOM!r} names the random control; give the method another name.")
    scores = [_relevance(name, attributions[name], (n, h, w), device) for name in names]
    no_signal = [(s == s[:, :1]).all(dim=1) for s in scores]
    if random_control:
        gen = torch.Generator().manual_seed(int(seed))
        scores.append(torch.rand(n, num_pixels, generator=gen, dtype=torch.float64).to(device))
        no_signal.append(torch.zeros(n, dtype=torch.bool, device=device))
        names.append(RANDOM)
    ranks = torch.stack([pixel_ranks(s) for s in scores])  # (M, N, P)

    batch = batch_size or _default_batch(device)
    if batch < 1:
        raise ParameterError(f"batch_size must be at least 1; got {batch_size}.")
    steps_t = torch.as_tensor(steps, device=device)
    probs, how = _curve_probabilities(
        bundle.model, x, bg, ranks, steps_t, tgt, batch, lock=bundle.lock, optimize=optimize
    )
    curves_np = probs.to(torch.float64).cpu().numpy()  # the one host transfer

    ranks_np = ranks.view(len(names), n, h, w).cpu().numpy()
    flags = torch.stack(no_signal).cpu().numpy()
    curves = tuple(
        Curves(
            method=name,
            insertion=curves_np[m, :, 0],
            deletion=curves_np[m, :, 1],
            insertion_auc=trapezoid_auc(curves_np[m, :, 0], fractions),
            deletion_auc=trapezoid_auc(curves_np[m, :, 1], fractions),
            rank=ranks_np[m],
            no_signal=flags[m],
            control=random_control and m == len(names) - 1,
        )
        for m, name in enumerate(names)
    )
    params = {
        "step_fraction": step_fraction,
        "step_pixels": int(steps[1] - steps[0]) if len(steps) > 1 else int(steps[0]),
        "fraction": fraction,
        "num_pixels": num_pixels,
        "background": background if isinstance(background, str) else "given",
        "random_control": random_control,
        "seed": int(seed),
        "batch_size": batch,
        **how,
    }
    provenance = Provenance(
        model_name=bundle.name,
        model_fingerprint=bundle.fingerprint,
        seed=int(seed),
        device=str(device),
        preprocessing=bundle.preprocess.record(),
    )
    return FaithfulnessResult(
        fractions=fractions,
        steps=steps,
        curves=curves,
        images=x.permute(0, 2, 3, 1).cpu().numpy(),
        backgrounds=bg.permute(0, 2, 3, 1).cpu().numpy(),
        target=tgt.cpu().numpy(),
        params=params,
        provenance=provenance,
        runtime_s=time.perf_counter() - started,
    )


_BIT_VIEWS = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # float element size -> integer view


def _masker(x: torch.Tensor, bg: torch.Tensor):
    """``make(shown, image)``: the images (B, C, H, W) that show ``x[image]`` where ``shown``
    (B, H * W, bool) is true and ``bg[image]`` elsewhere, equal bit for bit to ``torch.where``.

    Built by bit selection, several times faster than ``torch.where`` on the CPU (which
    broadcasts the pixel mask over channels slowly): with ``d = bits(x) ^ bits(bg)`` and a mask
    ``M`` of all ones where the image shows, ``bits(bg) ^ (d & M)`` is ``bits(x)`` there and
    ``bits(bg)`` elsewhere, whatever the values (signed zeros, NaN, inf). ``x`` and ``bg`` are
    contiguous (N, C, H, W) of one float dtype; ``image`` (B,) indexes them (all 0 when N = 1).
    """
    n, c, h, w = x.shape
    bits = _BIT_VIEWS[x.element_size()]
    bg_bits = bg.contiguous().view(bits).view(n, c, h * w)
    diff_bits = x.contiguous().view(bits).view(n, c, h * w) ^ bg_bits

    def make(shown: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        ones = shown.to(bits).neg_().unsqueeze(1)  # (B, 1, P): 0 or all ones
        if n == 1:  # broadcast the one image instead of copying it per masked image
            selected = torch.bitwise_and(diff_bits, ones).bitwise_xor_(bg_bits)
        else:
            selected = torch.bitwise_and(diff_bits.index_select(0, image), ones)
            selected.bitwise_xor_(bg_bits.index_select(0, image))
        return selected.view(x.dtype).view(-1, c, h, w)

    return make


def _curve_probabilities(
    net: nn.Module,
    x: torch.Tensor,
    bg: torch.Tensor,
    ranks: torch.Tensor,
    steps: torch.Tensor,
    target: torch.Tensor,
    batch_size: int,
    *,
    lock,
    optimize: bool,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Target probability of every masked image, (ranking, image, kind, step) as (M, N, 2, K),
    and how it ran (``inference_copy``: whether the copy ran; ``head_apart``: whether it ran
    its fully connected head on :data:`HEAD_ROWS` rows at a time; ``cpu_workers``: threads).

    The image at step ``j`` of ``kind`` shows the input where ``(rank < k_j) != (kind ==
    deletion)`` and the background elsewhere. Exact shortcuts (each equal to running every
    masked image through ``net``):

    * normalization is applied once to the image and the background (:func:`split_normalization`);
    * the curve ends do not depend on the ranking: at ``k = 0`` insertion shows the background
      and deletion the image, at ``k = P`` (``fraction = 1``) the other way round. These 2N
      images go through the plain model once and serve every ranking.

    The other images go through ``net`` in batches of ``batch_size``, laid out channels-last
    (the faster layout for the plain model's convolutions on the CPU); or, on the CPU and when
    ``optimize``, through its inference-optimized copy (:func:`inference_copy`, checked on the
    curve ends), split between as many worker threads as intra-op threads, each with one
    intra-op thread and ``batch_size / workers`` images per call (:func:`run_in_workers`); a
    copy with its head apart runs that head on the features of up to :data:`HEAD_ROWS` images
    per call. A copy that fails on some batch is dropped and the plain model runs instead. Both
    ways are :func:`xaicore.models.inference.forward_logits`.
    """
    num_rankings, n, _ = ranks.shape
    k = len(steps)
    h, w = x.shape[-2:]
    out = torch.empty(num_rankings, n, 2, k, device=x.device, dtype=torch.float32)
    with lock, torch.no_grad():
        normalize, inner = split_normalization(net)
        xn, bgn = normalize(x).contiguous(), normalize(bg).contiguous()
        ends = torch.cat([xn, bgn]).contiguous(memory_format=torch.channels_last)
        ends_probs = run_chunked(
            lambda a, b: torch.softmax(inner(ends[a:b]).float(), dim=1), len(ends), chunk=batch_size, combine=torch.cat
        )
        both = torch.arange(n, device=x.device)
        p_image = ends_probs[both, target]
        p_background = ends_probs[n + both, target]
        full = bool(steps[-1] == h * w)
        out[:, :, 0, 0], out[:, :, 1, 0] = p_background, p_image
        if full:
            out[:, :, 0, -1], out[:, :, 1, -1] = p_image, p_background
        middle = torch.arange(1, k - 1 if full else k, device=x.device)
        if len(middle) == 0:
            return out, {"inference_copy": False, "head_apart": False, "cpu_workers": 1}
        check = min(len(ends), max(2, min(batch_size, 8)))  # another batch size than the trace's
        km = len(middle)
        total = num_rankings * n * 2 * km
        rows = ranks.view(num_rankings * n, h * w)
        thresholds = steps[middle].to(ranks.dtype)
        masked = _masker(xn, bgn)

        def masked_images(start: int, stop: int) -> torch.Tensor:
            i = torch.arange(start, stop, device=x.device)
            row = i // (2 * km)  # ranking * N + image
            deletion = ((i // km) % 2).bool().unsqueeze(1)
            inside = torch.lt(rows.index_select(0, row), thresholds.index_select(0, i % km).unsqueeze(1))
            return masked(torch.ne(inside, deletion), row % n)

        def target_probability(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            image = (torch.arange(start, stop, device=x.device) // (2 * km)) % n
            probs = torch.softmax(logits.float(), dim=1)
            return probs.gather(1, target.index_select(0, image).unsqueeze(1)).squeeze(1)

        run = inference.forward_logits(
            inner,
            masked_images,
            total=total,
            batch_size=batch_size,
            reduce=target_probability,
            check=(ends[:check], ends_probs[:check]),
            optimize=optimize,
            plain_layout=torch.channels_last,
        )
        out[:, :, :, middle] = run.values.view(num_rankings, n, 2, km)
    return out, run.how()
