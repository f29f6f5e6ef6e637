"""The registry of explanation methods.

One :class:`MethodSpec` per method, registered with :func:`register_method`; a name can be
registered once. :func:`list_methods` and :func:`get_method` look them up. A method's compute
function receives one :class:`MethodCall` and returns an :class:`Attribution`; it never
touches global state (randomness comes from ``call.generator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xaicore.errors import DuplicateNameError, ParameterError, UnknownNameError

if TYPE_CHECKING:
    from xaicore.explainers.fused import FusedPass

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _to_bool(value: Any) -> bool:
    # bool("false") is True: strings (forms, command lines) are read as words
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ValueError(word)
        return word in _TRUE
    return bool(value)


def _to_int(name: str, value: Any) -> int:
    """A whole number from an int, an integral float or its text; anything else is refused."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a whole number, not {value!r}.")
    if isinstance(value, int):
        return value
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be a whole number, got {value!r}.") from exc
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be a finite whole number, not {value!r}.")
    if number != int(number):
        raise ParameterError(f"{name} must be a whole number, not {value!r}; it is not rounded for you.")
    return int(number)


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a method, with its default and allowed range."""

    name: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any) -> Any:
        """``value`` converted to the default's type; :class:`ParameterError` when not allowed.

        Numbers must be finite (NaN and infinities are refused: they pass no range check
        honestly), and whole-number parameters take whole numbers only (2.5 is refused, not
        truncated to 2). Every limit is named in the message that enforces it.
        """
        kind = type(self.default)
        if kind is int:
            converted = _to_int(self.name, value)
        else:
            try:
                converted = _to_bool(value) if kind is bool else kind(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ParameterError(f"{self.name} must be a {kind.__name__}, got {value!r}.") from exc
        if kind is float and not math.isfinite(converted):
            raise ParameterError(f"{self.name} must be a finite number, not {value!r}.")
        if self.choices is not None and converted not in self.choices:
            raise ParameterError(f"{self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}.")
        if self.minimum is not None and converted < self.minimum:
            raise ParameterError(f"{self.name} must be at least {self.minimum}; got {value!r}.")
        if self.maximum is not None and converted > self.maximum:
            raise ParameterError(f"{self.name} must be at most {self.maximum}; got {value!r}.")
        return converted


Units = Callable[[Mapping[str, Any], tuple[int, int]], float]


@dataclass(frozen=True)
class MethodCall:
    """Everything a method needs for one batch.

    ``inputs`` (N, 3, H, W) in pixel space [0, 1] on the model's device; ``target`` (N,) class
    indices; ``baseline`` same shape as ``inputs`` (already built from the chosen baseline kind);
    ``layer`` the CAM layer module when the method needs one; ``params`` validated values.
    """

    model: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor
    baseline: torch.Tensor
    generator: torch.Generator
    params: Mapping[str, Any]
    layer: nn.Module | None = None


@dataclass(frozen=True)
class Attribution:
    """A method's raw output: attributions shaped like the inputs and, for the methods that
    promise completeness (the attributions of an image add up to a known amount), how well.

    ``expected`` (N,) is that amount, ``reference`` names it in words with ``{baseline}`` for
    the baseline's name (``"f(x) - f({baseline})"``, ``"f(x)"``), and ``delta`` (N,) is the signed
    error ``sum(values) - expected``. ``details`` holds per-image figures a method reports
    beside its map (N,) each: the steps Integrated Gradients used, the relevance LRP's biases
    absorbed.
    """

    values: torch.Tensor
    delta: torch.Tensor | None = None
    expected: torch.Tensor | None = None
    reference: str = ""
    details: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def complete(
        cls,
        values: torch.Tensor,
        expected: torch.Tensor,
        *,
        reference: str,
        details: Mapping[str, torch.Tensor] | None = None,
    ) -> Attribution:
        """``values`` with their completeness error against ``expected`` (N,), named ``reference``."""
        values = values.detach()
        expected = expected.detach().to(values.dtype)
        delta = values.flatten(1).sum(1) - expected
        return cls(values=values, delta=delta, expected=expected, reference=reference, details=dict(details or {}))

    @classmethod
    def cat(cls, parts: Sequence[Attribution]) -> Attribution:
        """The parts of one batch (computed over consecutive chunks of images) joined in order."""
        if len(parts) == 1:
            return parts[0]

        def joined(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
            return None if any(t is None for t in tensors) else torch.cat(list(tensors))  # type: ignore[arg-type]

        keys = set(parts[0].details).intersection(*(p.details for p in parts[1:]))
        return cls(
            values=torch.cat([p.values for p in parts]),
            delta=joined([p.delta for p in parts]),
            expected=joined([p.expected for p in parts]),
            reference=parts[0].reference,
            details={k: torch.cat([p.details[k] for p in parts]) for k in sorted(keys)},
        )


@dataclass(frozen=True)
class FusedRule:
    """How a method's map comes out of the shared gradient pass (:mod:`xaicore.explainers.fused`).

    ``backward`` names the backward rules of that pass the method needs (``"plain"``,
    ``"guided"``, ``"deconv"``); ``read(inputs, params, fused)`` turns the pass over ``inputs``
    into the method's attribution. A method that needs the CAM layer (``needs_layer``) also
    reads the pass's recorded layer activation and gradient.
    """

    backward: tuple[str, ...]
    read: Callable[[torch.Tensor, Mapping[str, Any], FusedPass], Attribution]


@dataclass(frozen=True)
class MethodSpec:
    """A registered explanation method.

    Flags: ``needs_layer`` (uses the bundle's CAM layer), ``hook_based`` (changes the backward
    pass of ReLU modules, so functional ReLUs break it), ``stochastic`` (uses the generator),
    ``needs_baseline``; ``single_pass`` (its map comes out of the one shared gradient pass: one
    forward pass, one backward pass per rule in ``fused.backward``) holds exactly when ``fused``
    is given. ``units(params, (H, W))`` is the method's work on one image in plain
    forward+backward passes of the model (see :mod:`xaicore.explainers.cost`); ``per_channel`` is
    the work added by each channel of the CAM layer (Score-CAM's masked forward passes).
    """

    name: str
    title: str
    description: str
    compute: Callable[[MethodCall], Attribution]
    params: tuple[Param, ...] = ()
    needs_layer: bool = False
    hook_based: bool = False
    stochastic: bool = False
    needs_baseline: bool = False
    fused: FusedRule | None = None
    units: Units = field(default=lambda _params, _size: 1.0)
    per_channel: float = 0.0
    defaults: Mapping[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {p.name: p.default for p in self.params})

    @property
    def single_pass(self) -> bool:
        """Whether the map comes out of the shared gradient pass (see :class:`FusedRule`)."""
        return self.fused is not None

    def resolve_params(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overridden by ``given``; unknown names and bad values are refused."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ParameterError(
                f"{self.title} has no parameter {', '.join(unknown)}; it takes {', '.join(known) or 'none'}."
            )
        return {name: p.validate(given[name]) if name in given else p.default for name, p in known.items()}


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    title: str,
    description: str,
    params: tuple[Param, ...] = (),
    needs_layer: bool = False,
    hook_based: bool = False,
    stochastic: bool = False,
    needs_baseline: bool = False,
    fused: FusedRule | None = None,
    units: Units | None = None,
    per_channel: float = 0.0,
) -> Callable[[Callable[[MethodCall], Attribution]], Callable[[MethodCall], Attribution]]:
    """Decorator registering ``compute`` under ``name``; a second registration is refused."""

    def decorate(compute: Callable[[MethodCall], Attribution]) -> Callable[[MethodCall], Attribution]:
        if name in _REGISTRY:
            raise DuplicateNameError(f"An explanation method named {name!r} is already registered.")
        _REGISTRY[name] = MethodSpec(
            name=name,
            title=title,
            description=" ".join(description.split()),
            compute=compute,
            params=params,
            needs_layer=needs_layer,
            hook_based=hook_based,
            stochastic=stochastic,
            needs_baseline=needs_baseline,
            fused=fused,
            per_channel=per_channel,
            **({} if units is None else {"units": units}),
        )
        return compute

    return decorate


def list_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY)


def list_specs() -> list[MethodSpec]:
    """All registered methods, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def single_pass_methods() -> list[str]:
    """Names of the methods whose maps come out of the one shared gradient pass, in registration order."""
    return [spec.name for spec in list_specs() if spec.single_pass]


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name`` (also accepts its title, case-insensitively)."""
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    lowered = name.strip().lower()
    for spec in _REGISTRY.values():
        if lowered in (spec.name.lower(), spec.title.lower()):
            return spec
    raise UnknownNameError(f"No explanation method named {name!r}. Known methods: {', '.join(_REGISTRY)}.")


def _ensure_loaded() -> None:
    # The methods module registers everything on import; imported lazily to avoid a cycle.
    import xaicore.explainers.methods  # noqa: F401
