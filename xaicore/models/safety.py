"""Making a network safe for Captum's hook-based explainers, and saying what cannot be made safe.

Guided Backprop, Deconvolution, Guided Grad-CAM, DeepLift, DeepLiftShap and LRP work by hooking
*modules*: they change the backward pass of ``nn.ReLU`` (and, for DeepLift, a few more
non-linear modules). A model defeats them silently in three ways (docs/DESIGN.md, known traps):

* an in-place activation (``nn.ReLU(inplace=True)``) overwrites the input the hook needs;
* one activation module run several times per forward pass (torchvision's ResNet blocks call
  ``self.relu`` two or three times) keeps only the last call's tensors;
* a functional call (``F.relu``, ``torch.sigmoid``...) or an activation type the method does
  not know is never hooked, so the map silently degrades to a plain gradient there.

:func:`make_hook_safe` fixes the first two on a copy (in-place flags off; ResNet blocks and
DenseNet given one ReLU module per use, with numerically identical outputs) and detects the
rest with one audited forward pass (:func:`audit`), returning ``{method: reason}`` for the
methods that would give wrong maps.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import BasicBlock, Bottleneck

from xaicore.errors import ParameterError

# --------------------------------------------------------------------------------------------
# What each hook-based method handles (captum 0.9; checked against captum's own tables in tests)

#: Activation and pooling module types that have a non-linear backward worth hooking.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Tanhshrink,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Threshold,
    nn.GLU,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softmin,
    nn.Softmax2d,
)
#: Pooling module types that are not linear in their input.
POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
)
#: Guided Backprop and Deconvolution override the backward pass of ReLU modules only; their
#: definition routes the signal through max-pooling like a plain gradient.
GUIDED_HANDLED: frozenset[type[nn.Module]] = frozenset({nn.ReLU, *POOL_TYPES})
#: DeepLift's rescale rule exists for these module types (captum's ``SUPPORTED_NON_LINEAR``).
DEEPLIFT_HANDLED: frozenset[type[nn.Module]] = frozenset(
    {
        nn.ReLU,
        nn.ELU,
        nn.LeakyReLU,
        nn.Sigmoid,
        nn.Tanh,
        nn.Softplus,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.Softmax,
    }
)
#: Leaf module types zennit's LRP composites (xaicore.explainers.lrp) handle: convolutions and
#: linear layers get a rule, batch norm is merged into the layer before it or passed through,
#: average pooling (and the canonizers' zennit ``Sum``) gets the proportional rule, max-pooling
#: routes relevance to the maximum, dropout is the identity in eval mode, and ReLU and Tanh pass
#: relevance through. Other activations are refused: zennit would pass relevance through them
#: unchanged, which for a shifted or non-monotone activation (sigmoid, SiLU, GELU...) is not
#: what the model computes.
LRP_RULES: frozenset[type[nn.Module]] = frozenset(
    {
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.Linear,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AdaptiveMaxPool2d,
        nn.Dropout,
        nn.ReLU,
        nn.Tanh,
    }
)
#: Shape-only leaves: relevance passes through them unchanged, which is exact for them.
LRP_PASSTHROUGH: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity)
#: Functional calls LRP's backward pass handles exactly: a ReLU's zero outputs carry no
#: relevance anyway, and max-pooling routes it to the maximum as the module does.
LRP_FUNCTIONAL_OK = frozenset({"relu", "max_pool"})

METHOD_TITLES = {
    "guided_backprop": "Guided Backprop",
    "deconvolution": "Deconvolution",
    "guided_gradcam": "Guided Grad-CAM",
    "deeplift": "DeepLift",
    "deeplift_shap": "DeepLiftShap",
    "lrp": "LRP",
}

# Functional non-linearities, by what they compute. Calls of these outside a module of an
# activation/pooling type are invisible to module hooks.
_FUNCTIONAL_GROUPS: dict[str, tuple[Callable, ...]] = {
    "relu": (F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_),
    "relu6/hardtanh": (F.relu6, F.hardtanh, F.hardtanh_),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_),
    "elu/selu/celu": (F.elu, F.elu_, F.selu, F.celu, torch.selu, torch.celu),
    "gelu": (F.gelu,),
    "silu": (F.silu,),
    "mish": (F.mish,),
    "hardswish": (F.hardswish,),
    "hardsigmoid": (F.hardsigmoid,),
    "sigmoid": (F.sigmoid, torch.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_),
    "tanh": (F.tanh, torch.tanh, torch.tanh_, torch.Tensor.tanh, torch.Tensor.tanh_),
    "softplus": (F.softplus,),
    "softmax": (F.softmax, F.log_softmax, torch.softmax, torch.Tensor.softmax),
    "max_pool": (
        F.max_pool1d,
        F.max_pool2d,
        F.max_pool3d,
        torch.max_pool1d,
        torch.max_pool2d,
        torch.max_pool3d,
        F.adaptive_max_pool2d,
    ),
}
_FUNCTIONAL: dict[Callable, str] = {fn: kind for kind, fns in _FUNCTIONAL_GROUPS.items() for fn in fns}

_SUMS = (
    torch.add,
    torch.sub,
    torch.Tensor.add,
    torch.Tensor.add_,
    torch.Tensor.sub,
    torch.Tensor.sub_,
    torch.Tensor.__add__,
    torch.Tensor.__iadd__,
    torch.Tensor.__radd__,
    torch.Tensor.__sub__,
    torch.Tensor.__isub__,
    torch.Tensor.__rsub__,
)
_PRODUCTS = (
    torch.mul,
    torch.div,
    torch.matmul,
    torch.bmm,
    torch.Tensor.mul,
    torch.Tensor.mul_,
    torch.Tensor.div,
    torch.Tensor.div_,
    torch.Tensor.__mul__,
    torch.Tensor.__imul__,
    torch.Tensor.__rmul__,
    torch.Tensor.__truediv__,
    torch.Tensor.__itruediv__,
    torch.Tensor.__matmul__,
    torch.Tensor.matmul,
)
_BINARY: dict[Callable, str] = {**{f: "sum" for f in _SUMS}, **{f: "product" for f in _PRODUCTS}}


# --------------------------------------------------------------------------------------------
# Fixing: one non-in-place ReLU module per use


class SafeBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` with its own ReLU module per use (``relu1``, ``relu2``).

    Same computation in the same order as the original (the shortcut runs last).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class SafeBottleneck(Bottleneck):
    """torchvision's ``Bottleneck`` with its own ReLU module per use (``relu1`` to ``relu3``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


class SafeDenseNet(DenseNet):
    """torchvision's ``DenseNet`` with its final functional ReLU turned into a module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_relu(self.features(x))
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


# exact original type -> (safe type, attribute to drop, ReLU attributes to add)
_SAFE_SWAPS: dict[type[nn.Module], tuple[type[nn.Module], str | None, tuple[str, ...]]] = {
    BasicBlock: (SafeBasicBlock, "relu", ("relu1", "relu2")),
    Bottleneck: (SafeBottleneck, "relu", ("relu1", "relu2", "relu3")),
    DenseNet: (SafeDenseNet, None, ("final_relu",)),
}


#: Block types whose residual sum LRP's canonizer turns into a zennit ``Sum`` module
#: (xaicore.models.canonizers), by exact type: a subclass may compute something else.
LRP_SPLIT_BLOCKS: tuple[type[nn.Module], ...] = (BasicBlock, Bottleneck, SafeBasicBlock, SafeBottleneck)


def _turn_off_inplace(net: nn.Module) -> int:
    """Set ``inplace=False`` on every module that has the flag; returns how many changed."""
    changed = 0
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]  # torch types Module attributes as tensors or modules
            changed += 1
    return changed


def _swap_known_blocks(net: nn.Module) -> int:
    """Give torchvision blocks that reuse one ReLU (or call F.relu) one ReLU module per use."""
    swapped = 0
    for module in net.modules():
        swap = _SAFE_SWAPS.get(type(module))
        if swap is None:
            continue
        safe_type, drop, relus = swap
        module.__class__ = safe_type
        if drop is not None:
            delattr(module, drop)
        for attr in relus:
            setattr(module, attr, nn.ReLU(inplace=False))
        swapped += 1
    return swapped


# --------------------------------------------------------------------------------------------
# Detecting what remains


@dataclass(frozen=True)
class ActivationAudit:
    """What one forward pass revealed about a network's non-linearities.

    Attributes
    ----------
    functional:
        Kind of functional non-linearity (``"relu"``, ``"sigmoid"``, ``"max_pool"``...) ->
        number of calls made outside any activation or pooling module.
    nonlinear_modules:
        Qualified module name -> type name, for every activation or non-linear pooling module
        that ran.
    reused:
        Qualified name -> number of calls, for leaf modules that ran more than once.
    leaves:
        Qualified name -> type name of every leaf module (whether or not it ran).
    input_sums, input_products:
        Number of element-wise sums / products (or divisions, matrix products) of two tensors
        that both depend on the input: residual additions and gating.
    split_sums:
        How many of ``input_sums`` are the residual sums of :data:`LRP_SPLIT_BLOCKS`, made
        directly in such a block's ``forward``: the ones LRP's canonizer splits.
    """

    functional: dict[str, int] = field(default_factory=dict)
    nonlinear_modules: dict[str, str] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    leaves: dict[str, str] = field(default_factory=dict)
    input_sums: int = 0
    input_products: int = 0
    split_sums: int = 0


class _Recorder(TorchFunctionMode):
    """Counts functional non-linearities called outside activation modules, and binary ops
    whose two operands both depend on the input."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0  # depth of activation / non-linear pooling modules currently running
        self.running: list[nn.Module] = []  # the modules whose forward is running, innermost last
        self.functional: Counter[str] = Counter()
        self.binary: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # torch's protocol
        kwargs = kwargs or {}
        kind = _FUNCTIONAL.get(func)
        if kind is not None and self.inside == 0:
            self.functional[kind] += 1
        op = _BINARY.get(func)
        if op is not None and _both_input_dependent(args, kwargs):
            self.binary[op] += 1
            if op == "sum" and self.running and type(self.running[-1]) in LRP_SPLIT_BLOCKS:
                self.binary["split_sum"] += 1
        return func(*args, **kwargs)


def _both_input_dependent(args: tuple, kwargs: dict) -> bool:
    operands = [a for a in (*args[:2], kwargs.get("other")) if isinstance(a, torch.Tensor)]
    return len(operands) == 2 and all(t.requires_grad for t in operands)


@contextlib.contextmanager
def _frozen_parameters(net: nn.Module) -> Iterator[None]:
    """Parameters temporarily not requiring grad, so ``requires_grad`` means "depends on input"."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def audit(net: nn.Module, example: torch.Tensor) -> ActivationAudit:
    """Run ``net`` once on ``example`` and record its non-linearities (see :class:`ActivationAudit`).

    Hooks are removed and parameter flags restored on every path. The network must be in the
    mode it will be explained in (eval).
    """
    recorder = _Recorder()
    calls: Counter[str] = Counter()
    handles = []
    names = {module: name for name, module in net.named_modules()}
    tracked = ACTIVATION_TYPES + POOL_TYPES

    def count(module: nn.Module, _inputs: object) -> None:
        calls[names[module]] += 1
        recorder.running.append(module)
        if isinstance(module, tracked):
            recorder.inside += 1

    def leave(module: nn.Module, _inputs: object, _output: object) -> None:
        recorder.running.pop()
        if isinstance(module, tracked):
            recorder.inside -= 1

    try:
        for module in names:
            handles.append(module.register_forward_pre_hook(count))
            handles.append(module.register_forward_hook(leave))
        x = example.detach().clone().requires_grad_(True)
        with _frozen_parameters(net), torch.enable_grad(), recorder:
            net(x)
    finally:
        for handle in handles:
            handle.remove()

    leaves = {name: type(m).__name__ for m, name in names.items() if name and not list(m.children())}
    return ActivationAudit(
        functional=dict(recorder.functional),
        nonlinear_modules={
            name: type(m).__name__ for m, name in names.items() if isinstance(m, tracked) and calls[name]
        },
        reused={name: n for name, n in calls.items() if n > 1 and name in leaves},
        leaves=leaves,
        input_sums=recorder.binary["sum"],
        input_products=recorder.binary["product"],
        split_sums=recorder.binary["split_sum"],
    )


# --------------------------------------------------------------------------------------------
# From the audit to per-method reasons


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _functional_issue(found: dict[str, int]) -> list[str]:
    if not found:
        return []
    calls = _few([f"{kind} ({n}x)" for kind, n in sorted(found.items())])
    return [f"it calls functional non-linearities outside modules ({calls}), which hooks cannot see"]


def _type_issue(types: dict[str, str], handled: frozenset[type[nn.Module]]) -> list[str]:
    handled_names = {t.__name__ for t in handled}
    odd = sorted({t for t in types.values() if t not in handled_names})
    return [f"it uses {_few(odd)} layers, which this method does not handle"] if odd else []


def _reuse_issue(
    reused: dict[str, int], leaves: dict[str, str], kinds: tuple[type[nn.Module], ...] | None
) -> list[str]:
    kind_names = None if kinds is None else {t.__name__ for t in kinds}
    hits = [f"{name} ({n}x)" for name, n in sorted(reused.items()) if kind_names is None or leaves[name] in kind_names]
    return [f"module(s) {_few(hits)} run more than once per forward pass, so hooks mix up their calls"] if hits else []


def _guided_issues(a: ActivationAudit) -> list[str]:
    return (
        _functional_issue(a.functional)
        + _type_issue(a.nonlinear_modules, GUIDED_HANDLED)
        + _reuse_issue(a.reused, a.leaves, ACTIVATION_TYPES)
    )


def _deeplift_issues(a: ActivationAudit) -> list[str]:
    issues = (
        _functional_issue(a.functional)
        + _type_issue(a.nonlinear_modules, DEEPLIFT_HANDLED)
        + _reuse_issue(a.reused, a.leaves, ACTIVATION_TYPES + POOL_TYPES)
    )
    if a.input_products:
        issues.append(
            f"it multiplies input-dependent tensors together ({a.input_products}x, e.g. attention or "
            "squeeze-excitation gates), where the rescale rule does not hold"
        )
    return issues


def _lrp_issues(a: ActivationAudit) -> list[str]:
    allowed = {t.__name__ for t in LRP_RULES} | {t.__name__ for t in LRP_PASSTHROUGH}
    no_rule = sorted({t for t in a.leaves.values() if t not in allowed})
    functional = {kind: n for kind, n in a.functional.items() if kind not in LRP_FUNCTIONAL_OK}
    issues = _functional_issue(functional) + _reuse_issue(a.reused, a.leaves, None)
    if no_rule:
        issues.append(f"LRP has no rule for its {_few(no_rule)} layers")
    unsplit = a.input_sums - a.split_sums
    if unsplit:
        issues.append(
            f"it adds input-dependent branches ({unsplit}x, e.g. residual connections) outside torchvision's "
            "ResNet blocks, and only those blocks' sums are split between their branches, so relevance would "
            "not be conserved"
        )
    if a.input_products:
        issues.append(f"it multiplies input-dependent tensors together ({a.input_products}x)")
    return issues


_ISSUES: dict[str, Callable[[ActivationAudit], list[str]]] = {
    "guided_backprop": _guided_issues,
    "deconvolution": _guided_issues,
    "guided_gradcam": _guided_issues,
    "deeplift": _deeplift_issues,
    "deeplift_shap": _deeplift_issues,
    "lrp": _lrp_issues,
}


def unavailable_methods(findings: ActivationAudit) -> dict[str, str]:
    """Method name -> plain-language reason, for the hook-based methods ``findings`` rule out."""
    reasons: dict[str, str] = {}
    for method, issues_of in _ISSUES.items():
        issues = issues_of(findings)
        if issues:
            reasons[method] = (
                f"{METHOD_TITLES[method]} would silently give a wrong map on this model: " + "; ".join(issues) + "."
            )
    return reasons


def make_hook_safe(
    net: nn.Module,
    *,
    input_size: tuple[int, int] = (224, 224),
    example: torch.Tensor | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``net`` that hook-based explainers handle correctly, and what still fails.

    The copy has every in-place activation made non-in-place and torchvision's ResNet blocks
    and DenseNet given one ReLU module per use; its outputs equal the original's. One forward
    pass on ``example`` (default: a fixed pseudo-random batch of one ``input_size`` image)
    then detects functional non-linearities, activation types and reused modules that remain.

    Parameters
    ----------
    net:
        The network (normalized input), not modified.
    input_size, example:
        Input for the audit pass; ``example`` (N, 3, H, W) wins when given.

    Returns
    -------
    (safe_copy, unavailable):
        ``unavailable`` maps method names (``"guided_backprop"``, ``"deeplift"``, ``"lrp"``...)
        to a plain reason; methods not named are safe to run.
    """
    safe = copy.deepcopy(net)
    _turn_off_inplace(safe)
    _swap_known_blocks(safe)
    was_training = safe.training
    safe.eval()
    device = next((p.device for p in safe.parameters()), torch.device("cpu"))
    if example is None:
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(1, 3, *input_size, generator=generator)
    try:
        findings = audit(safe, example.to(device))
    except RuntimeError as exc:
        raise ParameterError(
            f"The model could not run on a {tuple(example.shape[-2:])} input ({exc}); "
            "check the input size you gave for it."
        ) from exc
    finally:
        safe.train(was_training)
    return safe, unavailable_methods(findings)
