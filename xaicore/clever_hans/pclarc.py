"""P-ClArC (Anders et al. 2022): project the artifact's direction out of a layer's features.

No training. The *artifact direction* ``v`` is the mean difference, at one layer, between the
features of images with the stamp pasted on and the same images without it, made unit length;
the *reference* ``z`` is the mean of ``<f, v>`` over the clean images. At inference a forward
hook on that layer of a private copy replaces every feature ``f`` by ``f - (<f, v> - z) v``:
the features keep everything but their position along ``v``, which is set to the clean mean.
The hook can be switched off (:meth:`Projection.disabled`) to compare with the original.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.clever_hans.model import rebundle
from xaicore.data import shapes, stamped
from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models.bundle import ModelBundle, PixelSpaceModel
from xaicore.models.default import INPUT_SIZE

DEFAULT_LAYER = "net.features.pool3"


@dataclass
class Projection:
    """The forward hook: ``f -> f - (<f, v> - z) v`` over the flattened features, when enabled."""

    layer: str
    direction: torch.Tensor  # (D,) unit vector
    reference: float
    enabled: bool = True
    handle: Any = field(default=None, repr=False)

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not self.enabled:
            return None
        flat = output.flatten(1)
        v = self.direction.to(flat.dtype)
        along = flat @ v - self.reference
        return (flat - along[:, None] * v[None, :]).view_as(output)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The original model inside the block."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def digest(self) -> str:
        """sha256 of the layer name, direction and reference (part of the corrected model's fingerprint)."""
        h = hashlib.sha256(self.layer.encode())
        h.update(self.direction.detach().cpu().float().numpy().tobytes())
        h.update(np.float64(self.reference).tobytes())
        return h.hexdigest()


def _features(model: nn.Module, layer: nn.Module, images: np.ndarray, *, batch: int = 256) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().flatten(1).cpu()))
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for start in range(0, len(images), batch):
                model(torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).to(device))
    finally:
        handle.remove()
    return torch.cat(captured)


def artifact_direction(model: nn.Module, *, layer: str, images: np.ndarray) -> tuple[torch.Tensor, float]:
    """(unit direction, reference) at ``layer`` from clean ``images`` (N, H, W, 3) and the
    same images with the stamp pasted on."""
    try:
        module = model.get_submodule(layer)
    except AttributeError as exc:
        raise UnknownNameError(f"The model has no layer named {layer!r}.") from exc
    clean = _features(model, module, images)
    marked = _features(model, module, stamped.paste_stamp(images))
    difference = (marked - clean).mean(0).double()
    norm = float(difference.norm())
    if not norm > 0:
        raise ParameterError(f"Pasting the stamp changes nothing at {layer}: choose a layer the stamp reaches.")
    v = (difference / norm).float()
    return v, float((clean.double() @ v.double()).mean())


def apply_pclarc(
    bundle: ModelBundle, *, layer: str = DEFAULT_LAYER, images: int = 256, seed: int = 0
) -> tuple[ModelBundle, Projection]:
    """A private copy of ``bundle`` with the artifact direction projected out at ``layer``.

    The direction comes from ``images`` clean generated images (seed ``seed``) with and without
    the stamp. ``bundle`` is left as it was. Returns the new bundle and its hook.
    """
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ParameterError(f"P-ClArC needs at least 2 images to find the direction; got {images!r}.")
    clean, _ = shapes.generate(images, seed=seed, size=INPUT_SIZE[0])
    copy = bundle.private_copy()
    model: PixelSpaceModel = copy.model
    direction, reference = artifact_direction(model, layer=layer, images=clean)
    projection = Projection(layer=layer, direction=direction.to(copy.device), reference=reference)
    projection.handle = model.get_submodule(layer).register_forward_hook(projection)
    corrected = rebundle(copy, model, name=f"{bundle.name} + P-ClArC", source=f"{bundle.source}+p-clarc")
    digest = hashlib.sha256((corrected.fingerprint + projection.digest()).encode()).hexdigest()
    return rebundle_with_fingerprint(corrected, digest), projection


def rebundle_with_fingerprint(bundle: ModelBundle, digest: str) -> ModelBundle:
    """``bundle`` with ``digest`` as its fingerprint (a model whose behaviour is not all in its weights)."""
    from dataclasses import replace

    return replace(bundle, fingerprint=digest)
