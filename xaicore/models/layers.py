"""Finding a model's parameterized layers in the order the forward pass runs them.

Module registration order is not forward order (a known trap, docs/DESIGN.md), so layers are found by
running one forward pass with hooks that record which modules fire.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.errors import MethodUnavailable

PARAMETERIZED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)


def forward_order(
    model: nn.Module,
    example: torch.Tensor,
    *,
    kinds: tuple[type[nn.Module], ...] = PARAMETERIZED,
) -> list[str]:
    """Qualified names of the modules of type ``kinds`` in the order they first run.

    ``example`` is one input batch; the forward pass runs without gradients and hooks are
    removed on every path.
    """
    order: list[str] = []
    seen: set[str] = set()
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, _output: object) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        return hook

    try:
        for name, module in model.named_modules():
            if name and isinstance(module, kinds):
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


def last_conv_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the last convolution to run: the usual default layer for Grad-CAM."""
    convs = forward_order(model, example, kinds=(nn.Conv2d,))
    if not convs:
        raise MethodUnavailable("The model has no 2-D convolution, so CAM methods have no layer to use.")
    return convs[-1]


def cam_layer_shapes(
    model: nn.Module, example: torch.Tensor, *, include: tuple[str, ...] = ()
) -> dict[str, tuple[int, int, int]]:
    """The layers a CAM method can use, in the order they run: name -> (channels, height, width).

    These are the 2-D convolutions, plus the modules named in ``include`` (a network's default
    CAM layer may be a whole block, as in torchvision ResNets), whose output is one (N, C, H, W)
    tensor and that run exactly once per forward pass (a CAM needs one activation per image).
    ``example`` is one input batch; hooks are removed on every path.
    """
    wanted = {name for name, module in model.named_modules() if name and isinstance(module, nn.Conv2d)}
    wanted.update(include)
    runs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else ()

        return hook

    try:
        for name, module in model.named_modules():
            if name in wanted:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: (shape[1], shape[2], shape[3])
        for name, shape in shapes.items()  # insertion order: the order the layers first ran
        if runs[name] == 1 and len(shape) == 4
    }
