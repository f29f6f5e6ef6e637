"""The small frozen classifier C of the Improve methods, trained on ``hard`` in seconds.

The network sees the luminance of the image standardized per image (zero mean, unit spread),
so the random object and background colours and the light-or-dark polarity do not have to
be learned; then three 3x3 conv blocks (16, 32, 32 channels, batch norm, ReLU, 2x2 max pool)
and a linear layer. Adam, fixed epochs, reproducible by seed on one thread.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.data.shapes import CLASSES
from xaicore.errors import ParameterError
from xaicore.improve.data import SIZE, ImageSplit
from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order, last_conv_layer

_LUMA = (0.299, 0.587, 0.114)


class Standardize(nn.Module):
    """RGB -> luminance, standardized per image: (N, 3, H, W) -> (N, 1, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        gray = gray - gray.mean(dim=(2, 3), keepdim=True)
        return gray / (gray.std(dim=(2, 3), keepdim=True) + 1e-3)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


def small_cnn(*, size: int = SIZE, classes: int = len(CLASSES)) -> nn.Sequential:
    """The untrained network (input (N, 3, size, size) in [0, 1])."""
    if size % 8:
        raise ParameterError(f"The image side must be a multiple of 8; got {size}.")
    layers = [Standardize(), *_block(1, 16), *_block(16, 32), *_block(32, 32), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(32 * (size // 8) ** 2, classes))


def train_classifier(
    data: ImageSplit, *, seed: int, epochs: int = 6, lr: float = 2e-3, batch_size: int = 64
) -> ModelBundle:
    """Train :func:`small_cnn` on ``data`` and return it frozen (eval mode, no gradients) in a bundle."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ParameterError("epochs and batch_size must be at least 1 and lr positive.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = small_cnn(size=int(data.images.shape[-1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(data.images[idx]), data.labels[idx]).backward()
            optimizer.step()
    return freeze(net, name=f"hard shapes CNN (seed {seed})", side=int(data.images.shape[-1]))


def freeze(net: nn.Module, *, name: str, side: int = SIZE) -> ModelBundle:
    """``net`` in eval mode with its parameters frozen, as a bundle with the shapes' classes."""
    model = PixelSpaceModel(net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    example = torch.zeros(1, 3, side, side)
    return ModelBundle(
        model=model,
        labels=tuple(CLASSES),
        input_size=(side, side),
        cam_layer=last_conv_layer(model, example),
        layers=tuple(forward_order(model, example)),
        name=name,
        fingerprint=fingerprint(model),
        source="improve:hard",
    )


@torch.no_grad()
def predict(bundle: ModelBundle, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """C's predicted class per image, (N,) int64."""
    parts = [bundle.model(images[i : i + batch_size]).argmax(dim=1) for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def accuracy(bundle: ModelBundle, data: ImageSplit) -> float:
    """C's accuracy on ``data``."""
    return float((predict(bundle, data.images) == data.labels).float().mean())
