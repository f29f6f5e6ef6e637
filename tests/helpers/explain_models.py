"""Small models and bundles for the explainer tests (weights from local generators only)."""

from __future__ import annotations

import threading

import torch
from torch import nn

from xaicore.models.bundle import ModelBundle, PixelSpaceModel, fingerprint
from xaicore.models.layers import forward_order


class TinyConvNet(nn.Module):
    """Conv-ReLU-MaxPool twice, then Flatten-Linear-ReLU-Linear, for 16x16 input, 4 classes."""

    def __init__(self, *, seed: int = 0, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(8 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, classes))
        init_weights(self, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.features(x)))


def init_weights(net: nn.Module, *, seed: int, scale: float = 1.0) -> nn.Module:
    """He-style normal weights and small biases drawn from a local generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * scale * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.05)
    return net


def make_bundle(
    net: nn.Module,
    *,
    input_size: tuple[int, int],
    cam_layer: str,
    labels: tuple[str, ...] | None = None,
    unavailable: dict[str, str] | None = None,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    lock: object | None = None,
) -> ModelBundle:
    """A bundle around ``net`` (wrapped in pixel space, eval mode)."""
    model = PixelSpaceModel(net, mean=mean, std=std).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *input_size))
    names = labels or tuple(f"class {k}" for k in range(out.shape[1]))
    return ModelBundle(
        model=model,
        labels=names,
        input_size=input_size,
        cam_layer=cam_layer,
        layers=tuple(forward_order(model, torch.zeros(1, 3, *input_size))),
        name="test model",
        fingerprint=fingerprint(model),
        unavailable=unavailable or {},
        lock=lock if lock is not None else threading.RLock(),
    )


def tiny_bundle(*, seed: int = 0, **kwargs) -> ModelBundle:
    return make_bundle(TinyConvNet(seed=seed), input_size=(16, 16), cam_layer="net.features.3", **kwargs)


def shapes_bundle(*, seed: int = 0) -> ModelBundle:
    """The default model's architecture with random weights (independent of the trained file)."""
    from xaicore.models.default import INPUT_SIZE, ShapesNet

    net = init_weights(ShapesNet(8), seed=seed)
    return make_bundle(net, input_size=INPUT_SIZE, cam_layer="net.features.conv3")


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry any hook."""
    found = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, attr, None):
                found.append(f"{name or '<root>'}.{attr}")
        for attr in ("rule", "activations"):
            if hasattr(m, attr):
                found.append(f"{name or '<root>'}.{attr}")
    return found


def images(n: int, size: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g)
