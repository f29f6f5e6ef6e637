"""Tiny hand-made models and bundles shared by the sanity, randomization and classes tests."""

from __future__ import annotations

import torch
from torch import nn

from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order


class TinyNet(nn.Module):
    """conv -> relu -> maxpool -> conv -> relu -> linear, registered in a scrambled order.

    The head is registered first and the first convolution last, so registration order is the
    reverse of forward order: tests can tell the two apart.
    """

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 4 * 4, num_classes)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.pool2 = nn.AdaptiveAvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.head(x.flatten(1))


def seeded_weights(net: nn.Module, seed: int) -> nn.Module:
    """Fill ``net``'s parameters from a local generator (the global RNG is not used)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            fan_in = param[0].numel() if param.ndim > 1 else param.numel()
            param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
    return net


def tiny_bundle(*, seed: int = 0, size: int = 16, num_classes: int = 3) -> ModelBundle:
    """A :class:`ModelBundle` around :class:`TinyNet` with seeded weights."""
    model = PixelSpaceModel(seeded_weights(TinyNet(num_classes), seed)).eval()
    example = torch.zeros(1, 3, size, size)
    return ModelBundle(
        model=model,
        labels=tuple(f"class{i}" for i in range(num_classes)),
        input_size=(size, size),
        cam_layer="net.conv2",
        layers=tuple(forward_order(model, example)),
        name="tiny test net",
        fingerprint=fingerprint(model),
        source="test",
    )


def tiny_image(*, seed: int = 0, size: int = 16) -> torch.Tensor:
    """One (H, W, 3) image in [0, 1] from a local generator."""
    return torch.rand(size, size, 3, generator=torch.Generator().manual_seed(seed))
