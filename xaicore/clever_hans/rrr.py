"""Right for the Right Reasons (Ross et al. 2017): penalize input gradients inside the box.

The loss is ``CE + lambda * sum(mask * d/dx sum_k log p_k(x))^2 / N``, the mask being the box of
the suspected artifact on every image. ``lambda`` is ``scale * CE / penalty`` measured on the
first batch, so the penalty starts near the cross-entropy whatever the model. Training stops
early on a validation set where the stamp is on half of every class (so it predicts nothing):
the best epoch's weights are kept. On a private copy; the original bundle is left as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xaicore.clever_hans.finetune import FineTune, Progress, fine_tune, validation_set
from xaicore.clever_hans.measures import Box, box_mask
from xaicore.clever_hans.model import rebundle
from xaicore.data import stamped
from xaicore.errors import ParameterError
from xaicore.models.bundle import ModelBundle, PixelSpaceModel
from xaicore.models.default import INPUT_SIZE


def gradient_penalty(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean over images of the squared input gradient of sum log p inside ``mask``),
    differentiable in the weights."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    log_p = F.log_softmax(logits, dim=1).sum()
    (grad,) = torch.autograd.grad(log_p, x, create_graph=True)
    return logits, ((grad * mask) ** 2).flatten(1).sum(1).mean()


def apply_rrr(
    bundle: ModelBundle,
    *,
    box: Box | None = None,
    settings: FineTune | None = None,
    scale: float = 1.0,
    patience: int = 1,
    validation_images: int = 256,
    progress: Progress | None = None,
) -> tuple[ModelBundle, dict[str, object]]:
    """An RRR-trained private copy of ``bundle``, and the log (with the lambda used)."""
    settings = settings or FineTune(epochs=3)
    if not scale > 0:
        raise ParameterError(f"The penalty scale must be positive; got {scale!r}.")
    box = box or stamped.stamp_box(INPUT_SIZE[0])
    copy = bundle.private_copy()
    mask = torch.from_numpy(box_mask(box)).to(copy.device, torch.float32)[None, None]
    weight: list[float] = []

    def loss(model: PixelSpaceModel, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits, penalty = gradient_penalty(model, x, mask)
        ce = F.cross_entropy(logits, y)
        if not weight:
            weight.append(scale * float(ce.detach()) / max(float(penalty.detach()), 1e-12))
        return ce + weight[0] * penalty

    validation = validation_set(seed=settings.seed, n=validation_images)
    log = fine_tune(copy.model, loss, settings, validation=validation, patience=patience, progress=progress)
    log["lambda"] = weight[0] if weight else None
    return rebundle(copy, copy.model, name=f"{bundle.name} + RRR", source=f"{bundle.source}+rrr"), log
