"""A-ClArC (Anders et al. 2022): fine-tune with the artifact added to images of every class.

On a private copy, each batch of training-rule images gets the stamp pasted onto a random half
of its images, whatever their class, with their labels unchanged: the stamp stops predicting
the heart, so the model unlearns it. The original bundle is left as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xaicore.clever_hans.finetune import FineTune, Progress, fine_tune
from xaicore.clever_hans.model import rebundle
from xaicore.data import stamped
from xaicore.errors import ParameterError
from xaicore.models.bundle import ModelBundle, PixelSpaceModel


def paste_on_share(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, 3, H, W) with the stamp pasted on a random ``share`` of its images."""
    n = len(x)
    chosen = torch.randperm(n, generator=generator)[: int(round(share * n))]
    images = x.permute(0, 2, 3, 1).cpu().numpy()
    pasted = stamped.paste_stamp(images, chosen.numpy())
    return torch.from_numpy(pasted).permute(0, 3, 1, 2).to(x.device)


def apply_aclarc(
    bundle: ModelBundle, *, settings: FineTune | None = None, share: float = 0.5, progress: Progress | None = None
) -> tuple[ModelBundle, dict[str, object]]:
    """A fine-tuned private copy of ``bundle``, and the training log."""
    if not 0.0 < share <= 1.0:
        raise ParameterError(f"The share of each batch that gets the stamp must be in (0, 1]; got {share!r}.")

    def loss(model: PixelSpaceModel, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(model(paste_on_share(x, share, generator)), y)

    copy = bundle.private_copy()
    log = fine_tune(copy.model, loss, settings or FineTune(), progress=progress)
    return rebundle(copy, copy.model, name=f"{bundle.name} + A-ClArC", source=f"{bundle.source}+a-clarc"), log
