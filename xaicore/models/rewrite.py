"""Exact rewrites of a model's forward pass, for code that only runs it (no hooks, no layers
named): the results are the same numbers, bit for bit, computed with less work.

* :func:`split_normalization` separates a :class:`PixelSpaceModel`'s pixel-wise normalization
  from the network, so callers that build many images from a few can normalize the few once.
* :func:`pool_before_relu` swaps ``max_pool2d(relu(a))`` into ``relu(max_pool2d(a))``: the ReLU
  then touches a quarter of the values, forward and backward.
* :func:`faster_forward` applies both to a whole model.
* :func:`split_at_head` cuts a network into its trunk and its fully connected head, so callers
  can run the head on more rows at a time than the trunk.
* :func:`relu_max_pool_copy` writes every max-pooling as a network of ReLU modules
  (``max(a, b) = b + relu(a - b)``), equal to the original within rounding, so that DeepLift's
  rescale rule, which is exact for ReLUs, keeps its completeness through the poolings. Unlike
  the rewrites above it is a copy made for hook-based explainers, not a faster forward pass.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from xaicore.errors import ParameterError, RewriteMismatch
from xaicore.models.bundle import PixelSpaceModel


def split_normalization(net: nn.Module) -> tuple[Any, nn.Module]:
    """``(normalize, inner)`` with ``net(z) == inner(normalize(z))`` for a plain
    :class:`PixelSpaceModel` in float32 or float64; ``(identity, net)`` for anything else (a
    model in bf16 autocast, say).

    Normalization (and the grayscale conversion) works pixel by pixel, and a masked image takes
    each pixel, all channels together, from the image or from the background, so
    ``normalize(where(shown, x, bg)) == where(shown, normalize(x), normalize(bg))`` element for
    element, bit for bit: insertion/deletion curves normalize the image and the background once
    instead of every masked image.
    """
    plain = isinstance(net, PixelSpaceModel) and type(net).forward is PixelSpaceModel.forward
    if plain and net.autocast_dtype is None:
        return net.normalize, net.net
    return (lambda z: z), net


_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu, torch.relu_)
_MAX_POOL_FUNCTIONS = (torch.nn.functional.max_pool2d, torch.max_pool2d)


def _is_relu(node: Any, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS and len(node.args) == 1 and dict(node.kwargs) in ({}, {"inplace": False})
    return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1 and not node.kwargs


def _is_max_pool(node: Any, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        module = modules.get(node.target)
        return type(module) is nn.MaxPool2d and not module.return_indices
    if node.op == "call_function" and node.target in _MAX_POOL_FUNCTIONS:
        return not node.kwargs.get("return_indices", False) and not (len(node.args) > 6 and node.args[6])
    return False


def pool_before_relu(net: nn.Module) -> nn.Module | None:
    """``net`` rewritten (torch.fx) so that every ``max_pool2d(relu(a))`` runs as
    ``relu(max_pool2d(a))``; ``None`` when there is no such pair or fx cannot trace ``net``.

    Exact, forward and backward: ReLU is non-decreasing, so the maximum over a window commutes
    with it, and both orders send a window's gradient to the same element (the first maximum)
    and let it through exactly when that maximum is positive. The ReLU then touches a quarter
    of the values (2x2 pooling). Only pairs where the pooling is the ReLU's one user and the
    ReLU its input's one user are swapped (so an in-place ReLU changes nothing anyone else
    reads). The rewritten module shares ``net``'s sub-modules and weights.
    """
    try:
        from torch import fx

        graph_module = fx.symbolic_trace(net)
    except Exception:  # noqa: BLE001 - models fx cannot trace keep their order
        return None
    graph = graph_module.graph
    modules = dict(graph_module.named_modules())
    swapped = 0
    for pool in list(graph.nodes):
        if not _is_max_pool(pool, modules) or not pool.args:
            continue
        relu = pool.args[0]
        if not isinstance(relu, fx.Node) or not _is_relu(relu, modules) or len(relu.users) != 1:
            continue
        source = relu.args[0]
        if not isinstance(source, fx.Node) or len(source.users) != 1:
            continue  # an in-place ReLU would change what the other users of its input see
        pool.args = (relu.args[0], *pool.args[1:])
        with graph.inserting_after(pool):
            after = graph.create_node(relu.op, relu.target, (pool,), {})
        pool.replace_all_uses_with(after, delete_user_cb=lambda user, after=after: user is not after)
        graph.erase_node(relu)
        swapped += 1
    if not swapped:
        return None
    graph.lint()
    graph_module.recompile()
    return graph_module


class _Rewritten(nn.Module):
    def __init__(self, normalize: Any, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self._normalize(x))


def faster_forward(net: nn.Module) -> nn.Module | None:
    """A module computing ``net``'s outputs and input gradients with its max-poolings moved
    before their ReLUs (:func:`pool_before_relu`, applied to the network inside a
    :class:`PixelSpaceModel`'s normalization); ``None`` when nothing can be swapped or the
    model runs in autocast (bf16).

    It shares ``net``'s sub-modules and weights and changes nothing in ``net``. It replays the
    traced tensor operations only (a ``forward`` with Python side effects loses them), and
    forward hooks on the swapped ReLU modules do not run in it: use it where the model is only
    evaluated and differentiated, and check it against ``net`` before use (the rewrite is made
    once per network and kept, so a sub-module replaced later is not seen by it).
    """
    if isinstance(net, PixelSpaceModel) and net.autocast_dtype is not None:
        return None  # fx records operations, not the autocast context around them
    normalize, inner = split_normalization(net)
    with _SWAPPED_LOCK:
        if inner not in _SWAPPED:
            _SWAPPED[inner] = pool_before_relu(inner)  # holds inner's sub-modules, not inner
        swapped = _SWAPPED[inner]
    return None if swapped is None else _Rewritten(normalize, swapped)


# fx tracing takes milliseconds: one rewrite per network (callers check it against the network)
_SWAPPED: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()
_SWAPPED_LOCK = threading.Lock()


def _is_linear(node: Any, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.Linear)
    return node.op == "call_function" and node.target is torch.nn.functional.linear


def split_at_head(net: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(trunk, head)`` with ``head(trunk(x)) == net(x)``, cut at the input of ``net``'s first
    fully connected layer; ``None`` when fx cannot trace ``net``, it has no such layer, or the
    cut does not separate it (a value from before the cut read after it, a skip connection
    say).

    Both parts share ``net``'s sub-modules and weights and replay its operations in order, so
    they compute the same numbers. What a caller gains: the trunk's convolutions run fastest
    on a few images at a time (their activations stay in the CPU's caches), a large fully
    connected layer on many rows at a time (its weights are read once per pass).
    """
    try:
        from torch import fx

        graph_module = net if isinstance(net, fx.GraphModule) else fx.symbolic_trace(net)
    except Exception:  # noqa: BLE001 - models fx cannot trace stay whole
        return None
    modules = dict(graph_module.named_modules())
    nodes = list(graph_module.graph.nodes)
    first = next((n for n in nodes if _is_linear(n, modules)), None)
    if first is None or not first.args or not isinstance(first.args[0], fx.Node):
        return None
    cut = first.args[0]
    if cut.op == "placeholder":
        return None  # nothing before the head
    after = nodes[nodes.index(cut) + 1 :]
    later = set(after)
    for node in after:
        if node.op == "placeholder" or any(
            source is not cut and source not in later and source.op != "get_attr" for source in node.all_input_nodes
        ):
            return None

    trunk_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes[: nodes.index(cut) + 1]:
        env[node] = trunk_graph.node_copy(node, env.__getitem__)
    trunk_graph.output(env[cut])
    head_graph = fx.Graph()
    env = {cut: head_graph.placeholder("features")}

    def head_input(source: Any) -> Any:
        if source not in env:  # an attribute fetched before the cut
            env[source] = head_graph.node_copy(source)
        return env[source]

    for node in after:
        env[node] = head_graph.node_copy(node, head_input)
    parts = []
    for graph in (trunk_graph, head_graph):
        part = fx.GraphModule(graph_module, graph)
        part.graph.eliminate_dead_code()
        part.graph.lint()
        part.recompile()
        parts.append(part)
    return parts[0], parts[1]


# --------------------------------------------------------------------------------------------
# Max-pooling as a network of ReLUs (for DeepLift)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _pool_windows(
    length: int, *, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> torch.Tensor:
    """(outputs, kernel) positions along one axis of ``length`` read by each pooling window, as
    :func:`torch.nn.functional.max_pool2d` places them; a position in the padding is replaced by
    the window's first position inside the input (a repeat changes no maximum, and no padding
    value, infinite or not, enters the arithmetic)."""
    span = dilation * (kernel - 1) + 1
    count = (length + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (count - 1) * stride >= length + padding:
        count -= 1  # torch: the last window must start inside the input or its left padding
    if count < 1:
        raise ParameterError(f"A max-pooling with kernel {kernel} cannot pool an axis of {length} values.")
    starts = torch.arange(count).view(-1, 1) * stride - padding
    positions = starts + torch.arange(kernel).view(1, -1) * dilation
    inside = (positions >= 0) & (positions < length)
    if not bool(inside.any(1).all()):
        raise ParameterError("A max-pooling window lies entirely in the padding; it has no maximum to rewrite.")
    first = torch.gather(positions, 1, inside.to(torch.uint8).argmax(1, keepdim=True))
    return torch.where(inside, positions, first)


def _adaptive_windows(length: int, size: int) -> torch.Tensor:
    """(size, widest) positions of :func:`torch.nn.functional.adaptive_max_pool2d`'s windows
    along one axis (``floor(i L / size)`` to ``ceil((i + 1) L / size)``), the shorter windows
    padded with repeats of their first position."""
    starts = [(i * length) // size for i in range(size)]
    stops = [-((-(i + 1) * length) // size) for i in range(size)]
    widest = max(b - a for a, b in zip(starts, stops))
    rows = [[min(a + j, b - 1) if a + j < b else a for j in range(widest)] for a, b in zip(starts, stops)]
    return torch.tensor(rows)


def _as_unfold(table: torch.Tensor, length: int) -> tuple[int, int] | None:
    """``(kernel, stride)`` when ``table`` lists exactly the windows ``Tensor.unfold(-1,
    kernel, stride)`` reads from an axis of ``length``; ``None`` otherwise."""
    count, kernel = table.shape
    stride = int(table[1, 0] - table[0, 0]) if count > 1 else 1
    if stride < 1 or (length - kernel) // stride + 1 != count:
        return None
    unfolded = torch.arange(count).view(-1, 1) * stride + torch.arange(kernel).view(1, -1)
    return (kernel, stride) if torch.equal(table, unfolded) else None


class ReluMaxPool2d(nn.Module):
    """Max-pooling computed as a network of ReLU modules, equal to the pooling it replaces up
    to float rounding (``b + (a - b)`` is rounded: a few units in the last place of the values a
    window compares; half-precision input is compared in float32).

    Each window's values are gathered along the width (index tables, so padding, stride,
    dilation and ``ceil_mode`` are handled by which positions each window reads; a view from
    ``Tensor.unfold`` where there is no padding or dilation) and reduced by
    a balanced tree of pairwise maxima, ``max(a, b) = b + relu(a - b)``; the same is then done
    along the height (max-pooling is separable). Every level of each tree has its own
    ``nn.ReLU`` module, run once per forward pass, so DeepLift's rescale rule applies to each
    and the attributions add up to the change of the output exactly. ``b + relu(a - b)`` is
    symmetric in ``a`` and ``b`` under that rule: with ``m`` the ReLU's multiplier, the maximum
    takes ``m`` of the change of ``a`` and ``1 - m`` of the change of ``b``, as the mirrored form
    ``a + relu(b - a)`` would (its multiplier is ``1 - m``: the two ReLUs' changes differ by
    exactly the change of ``a - b``).

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode:
        As :class:`torch.nn.MaxPool2d` (``stride=None``: the kernel size).
    output_size:
        Instead of the above, the output size of an :class:`torch.nn.AdaptiveMaxPool2d`
        (``None`` on an axis keeps its size); windows up to ``2 ** ADAPTIVE_LEVELS`` wide.
    """

    ADAPTIVE_LEVELS = 12

    def __init__(
        self,
        kernel_size: int | tuple[int, ...] = 1,
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        ceil_mode: bool = False,
        *,
        output_size: Any = None,
    ) -> None:
        super().__init__()
        self.adaptive = output_size is not None
        self.kernel = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = ceil_mode
        if self.adaptive:
            sizes = (output_size, output_size) if isinstance(output_size, int) or output_size is None else output_size
            self.output_size: tuple[int | None, int | None] = (sizes[0], sizes[-1])
            levels = (self.ADAPTIVE_LEVELS, self.ADAPTIVE_LEVELS)
        else:
            levels = (math.ceil(math.log2(self.kernel[0])), math.ceil(math.log2(self.kernel[1])))
        self.rows = nn.ModuleList(nn.ReLU() for _ in range(levels[0]))
        self.columns = nn.ModuleList(nn.ReLU() for _ in range(levels[1]))
        self._tables: dict[tuple[int, int, torch.device], torch.Tensor | tuple[int, int]] = {}

    @classmethod
    def replacing(cls, pool: nn.Module) -> ReluMaxPool2d:
        """The ReLU network computing what ``pool`` (a ``MaxPool2d`` or ``AdaptiveMaxPool2d``) computes."""
        if isinstance(pool, nn.AdaptiveMaxPool2d):
            return cls(output_size=pool.output_size)
        if isinstance(pool, nn.MaxPool2d):
            return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        raise ParameterError(f"{type(pool).__name__} is not a 2-D max-pooling this rewrite knows.")

    def _windows(self, axis: int, length: int, device: torch.device) -> torch.Tensor | tuple[int, int]:
        """The positions each window reads along ``axis`` (outputs, kernel), or ``(kernel,
        stride)`` where the windows are those of ``Tensor.unfold`` (no padding or dilation,
        none past the end), which reads them as a view, without a copy. Kept per length."""
        key = (axis, length, device)
        found = self._tables.get(key)
        if found is None:
            if self.adaptive:
                size = self.output_size[axis]
                table = _adaptive_windows(length, length if size is None else int(size))
            else:
                table = _pool_windows(
                    length,
                    kernel=self.kernel[axis],
                    stride=self.stride[axis],
                    padding=self.padding[axis],
                    dilation=self.dilation[axis],
                    ceil_mode=self.ceil_mode,
                )
            found = _as_unfold(table, length) or table.to(device)
            self._tables[key] = found
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # b + (a - b) is then a again, as the pooling's own result would be
        x = self._pool_last_axis(x, self._windows(1, x.shape[-1], x.device), self.columns)
        x = self._pool_last_axis(x.transpose(-1, -2), self._windows(0, x.shape[-2], x.device), self.rows)
        return x.transpose(-1, -2).to(dtype)

    @staticmethod
    def _pool_last_axis(x: torch.Tensor, layout: torch.Tensor | tuple[int, int], relus: nn.ModuleList) -> torch.Tensor:
        if isinstance(layout, tuple):
            windows = x.unfold(-1, *layout)  # (..., outputs, kernel), a view
        else:
            windows = x.index_select(-1, layout.flatten()).unflatten(-1, layout.shape)
        width = windows.shape[-1]
        for relu in relus:
            if windows.shape[-1] == 1:
                break
            half = windows.shape[-1] // 2
            a, b = windows[..., 0 : 2 * half : 2], windows[..., 1 : 2 * half : 2]
            top = b + relu(a - b)
            windows = torch.cat([top, windows[..., 2 * half :]], dim=-1) if windows.shape[-1] % 2 else top
        if windows.shape[-1] != 1:
            raise ParameterError(
                f"A max-pooling window of {width} values is wider than this rewrite reduces "
                f"({2 ** len(relus)} at most)."
            )
        return windows.squeeze(-1)

    def extra_repr(self) -> str:
        if self.adaptive:
            return f"output_size={self.output_size}"
        return f"kernel_size={self.kernel}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


def _rewritable_pool(module: nn.Module) -> bool:
    return type(module) in (nn.MaxPool2d, nn.AdaptiveMaxPool2d) and not module.return_indices


def _module_state(net: nn.Module) -> tuple:
    """The modules, parameters and buffers of ``net`` with their identities and in-place
    versions: changes whenever a module is replaced or a weight changes."""
    modules = tuple((name, id(m), type(m)) for name, m in net.named_modules())
    tensors = tuple(
        (name, t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device)
        for name, t in itertools.chain(net.named_parameters(), net.named_buffers())
    )
    return modules, tensors


def with_relu_max_pools(net: nn.Module) -> nn.Module | None:
    """A copy of ``net`` with every ``nn.MaxPool2d`` and ``nn.AdaptiveMaxPool2d`` module (not
    returning indices) replaced by :class:`ReluMaxPool2d`; ``None`` when it has none.

    The copy has its own modules but shares ``net``'s parameters and buffers (no weights are
    copied) and each module's forward and backward hooks (a hook added to or removed from
    ``net`` later acts on the copy too, and a ReLU network runs the hooks of the pooling it
    replaces); ``net`` itself is not changed. Pooling done with functional calls
    (``F.max_pool2d``) is not seen (the hook safety audit marks DeepLift unavailable there).
    """
    pools = [name for name, module in net.named_modules() if name and _rewritable_pool(module)]
    if not pools:
        return None
    # only the modules on the path to a pooling are copied, shallowly (their own child table, the
    # rest shared): nothing of the user's model is pickled or duplicated, whatever it holds
    rewritten = _shallow_copy(net)
    copies = {id(rewritten)}
    for name in pools:
        parent = rewritten
        *path, child = name.split(".")
        for part in path:
            module = parent.get_submodule(part)
            if id(module) not in copies:
                module = _shallow_copy(module)
                copies.add(id(module))
                parent._modules[part] = module
            parent = module
        pool = parent.get_submodule(child)
        replacement = ReluMaxPool2d.replacing(pool)
        for attr in _HOOK_DICTS:
            if isinstance(getattr(pool, attr, None), dict):
                setattr(replacement, attr, getattr(pool, attr))
        parent._modules[child] = replacement
    return rewritten


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing ``module``'s parameters, buffers, hooks and attributes, with a
    child table of its own (so replacing a child leaves ``module`` as it was)."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _hook_dicts(module: nn.Module) -> list[dict]:
    return [d for d in (getattr(module, attr, None) for attr in _HOOK_DICTS) if isinstance(d, dict)]


REWRITE_TOLERANCE = 1e-5
"""How far the rewritten copy's outputs may be from the model's, relative to the largest output
magnitude (at least 1): float rounding of the pairwise maxima stays far below it."""


def relu_max_pool_copy(net: nn.Module, example: torch.Tensor) -> nn.Module:
    """``net`` with its max-poolings written as ReLU networks (:func:`with_relu_max_pools`), or
    ``net`` itself when it has none, for DeepLift and DeepLiftShap.

    Made once per network and kept while its modules and weights stay the same (rebuilt when
    any changes); before it is first used its outputs on ``example`` are compared with
    ``net``'s, and :class:`~xaicore.errors.RewriteMismatch` is raised when they differ by more
    than :data:`REWRITE_TOLERANCE` (relative to the largest output, at least 1). Callers run it
    under the same lock as ``net``: hook-based explainers attach hooks to it.
    """
    state = _module_state(net)
    with _RELU_POOLS_LOCK:
        cached = _RELU_POOLS.get(net)
    if cached is not None and cached[0] == state:
        return net if cached[1] is None else cached[1]
    rewritten = with_relu_max_pools(net)
    if rewritten is not None:
        _check_equal(net, rewritten, example)
    with _RELU_POOLS_LOCK:
        _RELU_POOLS[net] = (state, rewritten)  # the copy holds net's tensors, not net
    return net if rewritten is None else rewritten


def _check_equal(net: nn.Module, rewritten: nn.Module, example: torch.Tensor) -> None:
    with torch.no_grad():
        expected = net(example)
        got = rewritten(example)
    scale = max(1.0, float(expected.abs().max()))
    error = float((got - expected).abs().max()) / scale if got.shape == expected.shape else math.inf
    if not error <= REWRITE_TOLERANCE:
        raise RewriteMismatch(
            f"DeepLift needs this model's max-poolings rewritten as ReLU networks, but the rewritten "
            f"model's outputs differ from the model's by {error:.1e} of their size (more than "
            f"{REWRITE_TOLERANCE:.0e}), so its attributions would not explain this model. Use another method."
        )


# one ReLU-pool copy per network, with the module state it was made for
_RELU_POOLS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module | None]] = weakref.WeakKeyDictionary()
_RELU_POOLS_LOCK = threading.Lock()
