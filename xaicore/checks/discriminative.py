"""Class-discriminativeness: does an explanation change with the class it is asked to explain?

For one image holding objects of several classes (a banana and an orange in one basket), each
method explains each chosen class. A class-discriminative method highlights the object of the
class asked for, so its maps for two classes differ (low SSIM); a method that draws every edge
whichever class is asked for gives nearly the same map twice (SSIM near 1).

Maps are compared after a named normalization of :mod:`xaicore.metrics.similarity` (default ``"abs"``:
channel sum, absolute value, scaled to [0, 1]); the SSIM ``data_range`` is the normalization's.
Spearman rank correlation is reported beside SSIM.

Where ground-truth object masks exist (generated scenes, samples with masks, a mask the user
uploads), the *share of positive relevance* on an object is the sum of the positive part of the
channel-summed raw attribution inside the object's mask, divided by the sum over the whole
image (0 when the map has no positive relevance). It is reported for the object of the class
asked for ("on object") and for the other objects together ("on others"; NaN when the image has
no other masked object). Masks are resized to the model's input size by nearest neighbour at
pixel centres (:func:`xaicore.data.images.resize_mask`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.errors import ParameterError
from xaicore.explainers.results import attribution_status
from xaicore.metrics.similarity import get_normalization, prepare_maps, spearman_batch, ssim_batch
from xaicore.models.bundle import ModelBundle
from xaicore.runtime.provenance import Provenance


@dataclass(frozen=True)
class ClassesResult:
    """Each method's maps for several classes of one image, and how alike they are.

    Attributes
    ----------
    classes:
        Class indices explained (K of them), in the order of every class axis.
    image:
        The model input as (H, W, 3) float32 in [0, 1].
    maps:
        ``"abs"`` / ``"signed"`` -> float32 (methods, K, H, W) normalized maps (the names of the
        normalizations are in ``params["normalizations"]``).
    ssim, spearman:
        float64 (methods, K, K): similarity of the maps of classes i and j (diagonal 1) on the
        ``"abs"`` maps.
    status:
        (methods, K) ``"ok"``, ``"no signal"`` or ``"numerical error"`` of each raw map.
    masks, mask_labels:
        The object masks at model-input size (k, H, W) bool and their classes, or ``None``.
    on_object, on_others:
        float64 (methods, K): share of positive relevance on the asked-for object's mask and on
        the other objects' masks (NaN where the class has no mask); ``None`` without masks.
    probabilities:
        float64 (K,) softmax probability of each explained class.
    """

    methods: tuple[str, ...]
    titles: tuple[str, ...]
    classes: tuple[int, ...]
    class_labels: tuple[str, ...]
    image: np.ndarray
    maps: Mapping[str, np.ndarray]
    ssim: np.ndarray
    spearman: np.ndarray
    status: np.ndarray
    masks: np.ndarray | None
    mask_labels: tuple[int, ...] | None
    on_object: np.ndarray | None
    on_others: np.ndarray | None
    probabilities: np.ndarray
    params: Mapping[str, Any]
    provenance: Provenance
    runtime_s: float = 0.0

    def pair_ssim(self, method: str) -> float:
        """Mean SSIM over all pairs of distinct classes for ``method`` (the one pair when K = 2)."""
        return self._pair_mean(self.ssim, method)

    def pair_spearman(self, method: str) -> float:
        return self._pair_mean(self.spearman, method)

    def _pair_mean(self, matrix: np.ndarray, method: str) -> float:
        if method not in self.methods:
            raise ParameterError(f"This result has no method {method!r}; it has {', '.join(self.methods)}.")
        m = matrix[self.methods.index(method)]
        upper = np.triu_indices(m.shape[0], k=1)
        return float(m[upper].mean())

    def record(self) -> dict[str, Any]:
        """The JSON record: classes, pairwise SSIM and Spearman per method, relevance shares."""
        pairs = [(i, j) for i in range(len(self.classes)) for j in range(i + 1, len(self.classes))]
        methods = {}
        for k, method in enumerate(self.methods):
            entry: dict[str, Any] = {
                "title": self.titles[k],
                "status": dict(zip(self.class_labels, self.status[k].tolist(), strict=True)),
                "pairs": [
                    {
                        "classes": [self.class_labels[i], self.class_labels[j]],
                        "ssim": float(self.ssim[k, i, j]),
                        "spearman": float(self.spearman[k, i, j]),
                    }
                    for i, j in pairs
                ],
                "mean_pair_ssim": self.pair_ssim(method),
            }
            if self.on_object is not None and self.on_others is not None:
                entry["relevance_share"] = {
                    label: {
                        "on_object": _json_float(self.on_object[k, c]),
                        "on_others": _json_float(self.on_others[k, c]),
                    }
                    for c, label in enumerate(self.class_labels)
                }
            methods[method] = entry
        return {
            "kind": "classes",
            "model": self.provenance.model_name,
            "classes": list(self.classes),
            "class_labels": list(self.class_labels),
            "probabilities": self.probabilities.tolist(),
            "mask_labels": list(self.mask_labels) if self.mask_labels is not None else None,
            "params": dict(self.params),
            "methods": methods,
            "runtime_s": self.runtime_s,
            "provenance": self.provenance.to_dict(),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``classes.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "classes.json"
        path.write_text(json.dumps(self.record(), indent=2))
        return path


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def compare_classes(
    bundle: ModelBundle,
    image: Any,
    *,
    methods: Sequence[str],
    classes: Sequence[int | str] | None = None,
    masks: np.ndarray | None = None,
    mask_labels: Sequence[int | str] | None = None,
    seed: int = 0,
    normalization: str = "abs",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = "black",
) -> ClassesResult:
    """Explain several classes of one image with each method and compare the maps.

    Parameters
    ----------
    bundle:
        The model (not changed; hook-based methods run under its lock).
    image:
        An (H, W, 3) array in [0, 1], or a generated scene / sample (anything with ``image``,
        and optionally ``labels`` or ``mask_labels`` and ``masks``): its masks are then used.
    methods:
        Registry names of explanation methods.
    classes:
        At least two distinct classes (indices or labels). Default: the classes of the masked
        objects when masks are known, else the model's two most probable classes.
    masks, mask_labels:
        Ground-truth object masks (k, H, W) bool at the image's size and the class of each.
    seed:
        Seed of stochastic methods (the same for every class).
    normalization:
        How maps are normalized before SSIM (see :data:`xaicore.metrics.similarity.NORMALIZATIONS`).
    params, baseline:
        Per-method parameters and baseline kind, as in :func:`xaicore.explainers.api.attribute`.
    """
    from xaicore.explainers import api

    started = time.perf_counter()
    array, masks, mask_labels = _unpack(image, masks, mask_labels)
    specs = api.resolve_methods(methods or (), unique=True, available_on=bundle)
    norm = get_normalization(normalization)
    if norm.name == "signed":
        raise ParameterError("Compare classes on absolute maps ('abs' or 'abs_channel_max'); signed maps are kept too.")
    params = dict(params or {})
    unknown = sorted(set(params) - {s.name for s in specs})
    if unknown:
        raise ParameterError(f"Parameters were given for {', '.join(unknown)}, which is not among the chosen methods.")
    resolved = {s.name: s.resolve_params(params.get(s.name)) for s in specs}

    inputs = bundle.to_input(array)
    probs = torch.softmax(bundle.logits(inputs), dim=1)[0]
    label_idx = tuple(bundle.class_index(c) for c in mask_labels) if mask_labels is not None else None
    chosen = _choose_classes(bundle, classes, label_idx, probs)
    target = torch.tensor(chosen, dtype=torch.long, device=inputs.device)
    batch = inputs.expand(len(chosen), -1, -1, -1).contiguous()
    raw = torch.stack(
        [
            api.attribute(
                bundle, batch, method=s.name, target=target, seed=seed, params=resolved[s.name], baseline=baseline
            ).values.detach()
            for s in specs
        ]
    )  # (methods, K, 3, H, W)

    m, k = raw.shape[:2]
    flat = raw.flatten(0, 1)
    maps = {
        "abs": prepare_maps(flat, normalization=norm.name).reshape(m, k, *raw.shape[-2:]),
        "signed": prepare_maps(flat, normalization="signed").reshape(m, k, *raw.shape[-2:]),
    }
    ssim, spearman = _pairwise(maps["abs"], data_range=norm.data_range)
    status = attribution_status(raw, batch_dims=2)
    input_masks = _resize_masks(masks, bundle) if masks is not None else None
    on_object = on_others = None
    if input_masks is not None and label_idx is not None:
        on_object, on_others = _relevance_shares(raw, chosen, input_masks, label_idx)

    return ClassesResult(
        methods=tuple(s.name for s in specs),
        titles=tuple(s.title for s in specs),
        classes=chosen,
        class_labels=tuple(bundle.labels[c] for c in chosen),
        image=inputs[0].permute(1, 2, 0).cpu().numpy(),
        maps={kind: v.cpu().numpy().astype(np.float32) for kind, v in maps.items()},
        ssim=ssim,
        spearman=spearman,
        status=status,
        masks=input_masks,
        mask_labels=label_idx,
        on_object=on_object,
        on_others=on_others,
        probabilities=probs[list(chosen)].double().cpu().numpy(),
        params={
            "normalizations": {"abs": norm.name, "signed": "signed"},
            "data_range": norm.data_range,
            "seed": int(seed),
            "baseline": baseline,
            "method_params": resolved,
            "cam_layer": bundle.cam_layer if any(spec.needs_layer for spec in specs) else None,
            "relevance_share": "positive part of the channel-summed raw map inside the mask / over the image",
        },
        provenance=Provenance(
            model_name=bundle.name,
            model_fingerprint=bundle.fingerprint,
            seed=int(seed),
            device=str(inputs.device),
            preprocessing=bundle.preprocess.frame(*array.shape[:2]).record(),
        ),
        runtime_s=time.perf_counter() - started,
    )


def _unpack(image: Any, masks, mask_labels):
    if hasattr(image, "image"):
        found_masks = getattr(image, "masks", None)
        found_labels = getattr(image, "mask_labels", None) or getattr(image, "labels", None)
        if masks is None and found_masks is not None and found_labels:
            masks, mask_labels = found_masks, found_labels
        image = image.image
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ParameterError(f"The image must be one (H, W, 3) RGB array; got shape {array.shape}.")
    if masks is None:
        if mask_labels is not None:
            raise ParameterError("mask_labels were given without masks; give both or neither.")
        return array, None, None
    masks = np.asarray(masks).astype(bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != array.shape[:2]:
        raise ParameterError(
            f"Masks must have the image's size {array.shape[:2]} (one (H, W) mask per object); got {masks.shape}."
        )
    if mask_labels is None or len(mask_labels) != masks.shape[0]:
        raise ParameterError("Give one class per mask (mask_labels), in the order of the masks.")
    return array, masks, tuple(mask_labels)


def _choose_classes(bundle, classes, label_idx, probs: torch.Tensor) -> tuple[int, ...]:
    if classes is not None:
        chosen = tuple(bundle.class_index(c) for c in classes)
    elif label_idx is not None:
        chosen = tuple(dict.fromkeys(label_idx))
    else:
        chosen = tuple(int(i) for i in torch.topk(probs, k=min(2, probs.numel())).indices.tolist())
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise ParameterError("Choose at least two different classes to compare.")
    return chosen


def _pairwise(maps: torch.Tensor, *, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """(methods, K, K) SSIM and Spearman of every pair of class maps, in one batched call each."""
    m, k = maps.shape[:2]
    i, j = torch.triu_indices(k, k, offset=1)
    a = maps[:, i].flatten(0, 1)
    b = maps[:, j].flatten(0, 1)
    s = ssim_batch(a, b, data_range=data_range).view(m, -1).cpu().numpy()
    r = spearman_batch(a, b).view(m, -1).cpu().numpy()
    ssim = np.ones((m, k, k))
    spearman = np.ones((m, k, k))
    ii, jj = i.numpy(), j.numpy()
    ssim[:, ii, jj] = ssim[:, jj, ii] = s
    spearman[:, ii, jj] = spearman[:, jj, ii] = r
    return ssim, spearman


def _resize_masks(masks: np.ndarray, bundle: ModelBundle) -> np.ndarray:
    """Masks through the image's own resize and crop (``bundle.preprocess``), at the model's input size.

    Nearest neighbour at pixel centres, as :func:`xaicore.data.images.resize_mask`.
    """
    return np.stack([bundle.preprocess.apply_mask(m) for m in masks])


def _relevance_shares(
    raw: torch.Tensor, chosen: tuple[int, ...], masks: np.ndarray, labels: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    positive = raw.sum(dim=2).clamp(min=0).double().cpu().numpy()  # (methods, K, H, W)
    total = positive.sum(axis=(2, 3))
    on_object = np.full(positive.shape[:2], np.nan)
    on_others = np.full(positive.shape[:2], np.nan)
    for c, cls in enumerate(chosen):
        own = [n for n, lab in enumerate(labels) if lab == cls]
        if not own:
            continue
        rest = [n for n in range(len(labels)) if labels[n] != cls]
        on_object[:, c] = _share(positive[:, c], np.asarray(masks[own].any(axis=0)), total[:, c])
        if rest:
            on_others[:, c] = _share(positive[:, c], np.asarray(masks[rest].any(axis=0)), total[:, c])
    return on_object, on_others


def _share(positive: np.ndarray, mask: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(methods,) share of ``positive`` (methods, H, W) inside ``mask``; 0 where ``total`` is 0."""
    inside = (positive * mask).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)
