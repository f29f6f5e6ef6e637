"""Exact rewrites of a model's forward pass, for code that only runs it (no hooks, no layers
named): the results are the same numbers, bit for bit, computed with less work.

* :func:`split_normalization` separates a :class:`PixelSpaceModel`'s pixel-wise normalization
  from the network, so callers that build many images from a few can normalize the few once.
* :func:`pool_before_relu` swaps ``max_pool2d(relu(a))`` into ``relu(max_pool2d(a))``: the ReLU
  then touches a quarter of the values, forward and backward.
* :func:`faster_forward` applies both to a whole model.
* :func:`split_at_head` cuts a network into its trunk and its fully connected head, so callers
  can run the head on more rows at a time than the trunk.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

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
