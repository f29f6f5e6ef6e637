"""The canonical form LRP needs, chosen for a network in one place: :func:`canonizers_for`.

zennit's rules are attached to modules, and a few structures of common CNNs hide from modules
what LRP has to see. zennit's *canonizers* rewrite them temporarily (in place, undone on
removal); :func:`registered` applies a composite with its canonizers and undoes both on every path.

* **Batch norm right after a convolution or linear layer** is merged into it (zennit's
  ``NamedMergeBatchNorm``), so the layer's rule sees the affine map it really computes. The
  pairs are found by following the tensors of one forward pass (:func:`batch_norm_pairs`), not
  by module order as zennit's ``SequentialMergeBatchNorm`` (and its ``VGGCanonizer``, the same
  class) does: on VGG with batch norm both find the same pairs, but in a DenseNet the module
  order puts a dense layer's last convolution right before the next layer's batch norm, which
  normalizes the concatenation of all earlier features, not that convolution's output. A batch
  norm that follows anything else (DenseNet's norm-relu-conv order) stays; zennit's composites
  pass relevance through it unchanged.
* **Residual sums** of torchvision's ResNet blocks become a zennit ``Sum`` module over the two
  branches, which the composites give the proportional rule, so the block's relevance is split
  between the shortcut and the residual branch instead of being handed to both. zennit's
  ``ResNetCanonizer`` does this for torchvision's own blocks; the hook-safe blocks of
  :mod:`xaicore.models.safety` (one ReLU module per use) get the same forward with their ReLUs.
* **DenseNet's global average pooling** is a functional call in its ``forward``, whose gradient
  would spread relevance evenly over the positions; it is routed through an
  ``nn.AdaptiveAvgPool2d`` module, which the composites give the proportional rule. DenseNet's
  concatenations need nothing: relevance flows back to each concatenated part exactly.

Every canonizer leaves the network's outputs unchanged (up to float rounding of the merged
weights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.canonizers import AttributeCanonizer, Canonizer, NamedMergeBatchNorm
from zennit.core import Composite
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import BatchNorm
from zennit.types import Linear as LinearTypes

from xaicore.models.safety import SafeBasicBlock, SafeBottleneck, SafeDenseNet


def _safe_basic_forward(self: SafeBasicBlock, x: torch.Tensor) -> torch.Tensor:
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu2(self.canonizer_sum(torch.stack([identity, out], dim=-1)))


def _safe_bottleneck_forward(self: SafeBottleneck, x: torch.Tensor) -> torch.Tensor:
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu3(self.canonizer_sum(torch.stack([identity, out], dim=-1)))


#: exact block type -> its forward with the residual sum as a ``Sum`` module (``canonizer_sum``)
_RESIDUAL_FORWARDS: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    BasicBlock: ResNetBasicBlockCanonizer.forward,
    Bottleneck: ResNetBottleneckCanonizer.forward,
    SafeBasicBlock: _safe_basic_forward,
    SafeBottleneck: _safe_bottleneck_forward,
}


def _densenet_forward(self: DenseNet, x: torch.Tensor) -> torch.Tensor:
    # torchvision's forward with the pooling as a module; the functional ReLU passes relevance exactly
    out = F.relu(self.features(x))
    return self.classifier(torch.flatten(self.canonizer_pool(out), 1))


def _safe_densenet_forward(self: SafeDenseNet, x: torch.Tensor) -> torch.Tensor:
    out = self.final_relu(self.features(x))
    return self.classifier(torch.flatten(self.canonizer_pool(out), 1))


_DENSENET_FORWARDS: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    DenseNet: _densenet_forward,
    SafeDenseNet: _safe_densenet_forward,
}


def _residual_attributes(_name: str, module: nn.Module) -> dict[str, object] | None:
    forward = _RESIDUAL_FORWARDS.get(type(module))
    if forward is None:
        return None
    return {"forward": forward.__get__(module), "canonizer_sum": Sum()}


def _densenet_attributes(_name: str, module: nn.Module) -> dict[str, object] | None:
    forward = _DENSENET_FORWARDS.get(type(module))
    if forward is None:
        return None
    return {"forward": forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d((1, 1))}


def batch_norm_pairs(net: nn.Module, example: torch.Tensor) -> list[tuple[tuple[str], str]]:
    """``[((linear name,), batch norm name), ...]``: every batch norm whose input is exactly the
    output of a convolution or linear layer (with as many channels), found in one forward pass
    of ``net`` on ``example``. Hooks are removed on every path."""
    produced: dict[int, tuple[str, torch.Tensor, int]] = {}  # id(output) -> (name, output kept alive, channels)
    pairs: list[tuple[tuple[str], str]] = []
    names = {module: name for name, module in net.named_modules()}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.ndim >= 2:
            produced[id(output)] = (names[module], output, int(output.shape[1]))

    def match(module: nn.Module, inputs: tuple[object, ...]) -> None:
        source = produced.get(id(inputs[0])) if inputs else None
        mergeable = getattr(module, "weight", None) is not None and getattr(module, "running_mean", None) is not None
        if source is not None and source[1] is inputs[0] and mergeable and source[2] == module.num_features:
            pairs.append(((source[0],), names[module]))

    handles = []
    try:
        for module in names:
            if isinstance(module, LinearTypes):
                handles.append(module.register_forward_hook(record))
            elif isinstance(module, BatchNorm):
                handles.append(module.register_forward_pre_hook(match))
        with torch.no_grad():
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def canonizers_for(net: nn.Module, example: torch.Tensor) -> list[Canonizer]:
    """The zennit canonizers ``net`` needs (see the module's description); ``example`` is one
    input batch of the right size, for finding the batch norms to merge."""
    found: list[Canonizer] = []
    pairs = batch_norm_pairs(net, example)
    if pairs:
        found.append(NamedMergeBatchNorm(pairs))
    kinds = {type(m) for m in net.modules()}
    if kinds & set(_RESIDUAL_FORWARDS):
        found.append(AttributeCanonizer(_residual_attributes))
    if kinds & set(_DENSENET_FORWARDS):
        found.append(AttributeCanonizer(_densenet_attributes))
    return found


@contextlib.contextmanager
def registered(composite: Composite, net: nn.Module) -> Iterator[nn.Module]:
    """``composite`` (its canonizers, then its rules' hooks) registered on ``net``; removed, and
    every canonizer undone, on every path, a failed registration included (zennit's own context
    does not undo a registration that fails half way)."""
    try:
        composite.register(net)
        yield net
    finally:
        composite.remove()
