"""Re-initializing layers of a private model copy, for parameter-randomization sanity checks.

Adebayo et al. (2018) destroy a trained model's weights layer by layer and watch whether an
explanation changes. Two schedules are offered, both on ONE private copy of the model (made
once per run with :meth:`LayerRandomizer.from_bundle`), never on the shared ``bundle.model``:

* **cascading** -- randomize the output layer, then the one before it, ... down to the first
  layer, cumulatively. The copy is changed in place step after step; no copy per step.
* **independent** -- randomize one layer at a time while every other layer keeps its trained
  weights. After each step only the changed layer's tensors are restored, from a snapshot of the
  trained tensors of the randomizable layers taken when the randomizer is built.

"Layers" are the bundle's parameterized layers (convolutions and linear layers) in *forward*
order (``bundle.layers``), so "from the output layer down" follows the order the forward pass
runs them, not the order modules were registered in.

Re-initialization uses each layer's own default initialization (what ``reset_parameters`` of
``nn.Conv*d`` / ``nn.Linear`` does: Kaiming-uniform weights with ``a = sqrt(5)``, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn from a
local ``torch.Generator`` on the layer's device. The generator is seeded by
:func:`layer_seed` from the run seed and the layer's name, so a layer gets the same random
weights for a given seed in both schedules, and the global RNG is never touched. Other layer
types that define ``reset_parameters`` are reset under ``torch.random.fork_rng`` with a seed drawn
from the same generator, which restores the global RNG state afterwards.

Batch-norm layers are not randomizable layers: their affine parameters and running statistics
stay as trained in every step (the statistics then no longer match the randomized activations,
as in the original study, which randomizes conv and linear weights).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import init

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models.bundle import ModelBundle

_DEFAULT_INIT = (nn.modules.conv._ConvNd, nn.Linear)


def layer_seed(seed: int, layer: str) -> int:
    """A 63-bit seed derived from the run ``seed`` and the layer's qualified name (sha256)."""
    digest = hashlib.sha256(f"{int(seed)}:{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def reinitialize(module: nn.Module, *, generator: torch.Generator) -> None:
    """Re-draw ``module``'s parameters in place with its default initialization.

    Parameters
    ----------
    module:
        A convolution or linear layer (or any module with ``reset_parameters``).
    generator:
        Source of randomness, on the module's device; the global RNG is left unchanged.
    """
    with torch.no_grad():
        if isinstance(module, _DEFAULT_INIT):
            _default_init(module, generator)
            return
        reset = getattr(module, "reset_parameters", None)
        if not callable(reset):
            raise ParameterError(
                f"A {type(module).__name__} layer has no default initialization, so it cannot be randomized; "
                "choose layers that are convolutions or linear layers."
            )
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        device = next(module.parameters()).device
        devices = [device] if device.type != "cpu" else []
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            torch.manual_seed(seed)
            reset()


def _default_init(module: nn.Module, generator: torch.Generator) -> None:
    # Same draws, in the same order, as nn.Conv*d / nn.Linear .reset_parameters().
    weight = cast(torch.Tensor, module.weight)  # a convolution's or linear layer's
    if weight.is_contiguous():
        init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    else:
        fresh = torch.empty_like(weight, memory_format=torch.contiguous_format)
        init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
        weight.copy_(fresh)
    bias = cast(torch.Tensor | None, module.bias)
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound, generator=generator)


@dataclass(frozen=True)
class Step:
    """One randomization step.

    ``layer`` is the layer randomized at this step; ``randomized`` every layer that holds random
    weights during the step (cascading: ``layer`` and all layers after it in forward order).
    """

    index: int
    layer: str
    randomized: tuple[str, ...]


class LayerRandomizer:
    """Randomizes and restores layers of a model that belongs to the caller alone.

    Parameters
    ----------
    model:
        A private model (never a shared ``bundle.model``; see :meth:`from_bundle`).
    layers:
        Qualified names of the layers to randomize, in forward order.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        if not layers:
            raise ParameterError("The model has no randomizable layers (convolutions or linear layers).")
        self.model = model
        self.layers = tuple(layers)
        self._modules: dict[str, nn.Module] = {}
        for name in self.layers:
            try:
                self._modules[name] = model.get_submodule(name)
            except AttributeError as exc:
                raise UnknownNameError(f"The model has no layer named {name!r}.") from exc
        with torch.no_grad():
            self._saved = {
                name: {p: t.detach().clone() for p, t in module.named_parameters(recurse=False)}
                for name, module in self._modules.items()
            }
        self._changed: set[str] = set()

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> tuple[ModelBundle, LayerRandomizer]:
        """A private copy of ``bundle`` (made once) and a randomizer over its layers."""
        private = bundle.private_copy()
        return private, cls(private.model, private.layers)

    @property
    def changed(self) -> tuple[str, ...]:
        """Layers currently holding random weights, in forward order."""
        return tuple(name for name in self.layers if name in self._changed)

    def randomize(self, layer: str, *, seed: int) -> None:
        """Re-initialize ``layer`` with the generator seeded by ``layer_seed(seed, layer)``."""
        module = self._module(layer)
        device = next(module.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(layer_seed(seed, layer))
        self._changed.add(layer)
        reinitialize(module, generator=generator)

    def restore(self, layer: str) -> None:
        """Put ``layer``'s trained tensors back (only that layer's)."""
        module = self._module(layer)
        with torch.no_grad():
            for pname, tensor in module.named_parameters(recurse=False):
                tensor.copy_(self._saved[layer][pname])
        self._changed.discard(layer)

    def restore_all(self) -> None:
        """Restore every layer changed so far."""
        for name in self.changed:
            self.restore(name)

    @contextmanager
    def cascading(self, *, seed: int) -> Iterator[Iterator[Step]]:
        """Context manager yielding the cascading steps, output layer first.

        Each step randomizes one more layer in place, keeping the ones before; on leaving the
        ``with`` block (normally, on error, or after a ``break``) every changed layer is restored.
        """
        try:
            yield self._cascade(seed)
        finally:
            self.restore_all()

    @contextmanager
    def independent(self, *, seed: int) -> Iterator[Iterator[Step]]:
        """Context manager yielding the independent steps, output layer first.

        Each step randomizes one layer; it is restored before the next step and on leaving.
        """
        try:
            yield self._one_at_a_time(seed)
        finally:
            self.restore_all()

    def _cascade(self, seed: int) -> Iterator[Step]:
        for index, name in enumerate(reversed(self.layers)):
            self.randomize(name, seed=seed)
            yield Step(index=index, layer=name, randomized=self.changed)

    def _one_at_a_time(self, seed: int) -> Iterator[Step]:
        for index, name in enumerate(reversed(self.layers)):
            self.randomize(name, seed=seed)
            try:
                yield Step(index=index, layer=name, randomized=(name,))
            finally:
                self.restore(name)

    def _module(self, layer: str) -> nn.Module:
        try:
            return self._modules[layer]
        except KeyError as exc:
            raise UnknownNameError(
                f"{layer!r} is not one of the randomizable layers ({', '.join(self.layers)})."
            ) from exc
