"""Tiny hand-made models and bundles for the CO score, AX and GAX tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint


class LinearNet(nn.Module):
    """``logits = weight @ flatten(x) + bias``: f(x + h) - f(x) = weight @ h exactly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class ConvNet(nn.Module):
    """conv -> ReLU -> max-pool -> 1x1 conv -> global mean: every kernel gives a sample the same
    result whatever the batch size in float64 on the CPU (no BLAS matrix-vector shortcut)."""

    def __init__(self, num_classes: int, *, seed: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(6, num_classes, 1)
        self.mean = nn.AdaptiveAvgPool2d(1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean(self.head(self.pool(self.relu(self.conv(x))))).flatten(1)


def make_bundle(
    net: nn.Module, *, size: int, num_classes: int, dtype: torch.dtype = torch.float32, cam_layer: str = "net"
) -> ModelBundle:
    model = PixelSpaceModel(net).to(dtype).eval()
    return ModelBundle(
        model=model,
        labels=tuple(f"class{i}" for i in range(num_classes)),
        input_size=(size, size),
        cam_layer=cam_layer,
        layers=(),
        name="gax test net",
        fingerprint=fingerprint(model),
        source="test",
    )


def linear_bundle(weight: torch.Tensor, bias: torch.Tensor, *, size: int) -> ModelBundle:
    return make_bundle(LinearNet(weight, bias), size=size, num_classes=weight.shape[0])


def conv_bundle(
    *, size: int = 8, num_classes: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64
) -> ModelBundle:
    return make_bundle(
        ConvNet(num_classes, seed=seed), size=size, num_classes=num_classes, dtype=dtype, cam_layer="net.conv"
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one intra-op thread is faster than two and immune to a busy machine.

    Import it into a test module to apply it there; the thread count is restored afterwards.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
