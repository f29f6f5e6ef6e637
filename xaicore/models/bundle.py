"""The model bundle: one wrapped classifier in pixel space and everything known about it.

Contract (docs/DESIGN.md, docs/ARCHITECTURE.md): the bundle's ``model`` takes RGB float images in [0, 1] of shape
(N, 3, H, W) and returns raw logits; normalization lives inside it. Bundles are shared by
every dashboard session, so nothing may mutate ``model``: use :meth:`ModelBundle.private_copy`
for anything that changes weights, and hold :attr:`ModelBundle.lock` while hooks are attached.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from xaicore.errors import ParameterError, UnknownNameError
from xaicore.models.preprocess import Preprocess

TargetLike = int | float | str | Sequence[int | str] | np.ndarray | torch.Tensor | None
"""A target class argument: see :meth:`ModelBundle.resolve_targets`."""


class PixelSpaceModel(nn.Module):
    """Wraps a network so that it takes RGB in [0, 1] and normalizes inside.

    Parameters
    ----------
    net:
        The classifier proper, taking normalized input.
    mean, std:
        Per-channel normalization of the network's input: three values each for a network whose
        first layer takes three channels, one value each for a one-channel (grayscale) network.
    grayscale:
        When true, the RGB input is first turned into luminance (ITU-R 601 weights) and copied
        to three channels, for three-channel models trained on grayscale images. A one-channel
        network always gets the luminance as its single channel (``in_channels == 1``).

    The forward pass takes (N, 3, H, W) RGB in [0, 1] in every case (the pixel-space contract);
    for a gray picture (R = G = B) the luminance is the picture itself, and attributions to the
    three channels add up to the attribution to the one channel the network sees.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        net: nn.Module,
        *,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        grayscale: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise ParameterError(
                "mean and std need three values each (R, G, B), or one value each for a one-channel "
                f"(grayscale) model; got {len(mean)} and {len(std)}."
            )
        if any(s <= 0 for s in std):
            raise ParameterError("every std value must be positive.")
        channels = len(mean)
        self.net = net
        self.in_channels = channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))
        self.grayscale = grayscale or channels == 1
        self.autocast_dtype: torch.dtype | None = None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The input of ``net`` for pixel-space input ``x`` (grayscale conversion, then mean/std)."""
        if self.grayscale:
            weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
            if self.in_channels == 3:
                x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.net(self.normalize(x))
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            logits = self.net(self.normalize(x))
        return logits.float()


def fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict: names, dtypes, shapes and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A classifier ready to be explained.

    Attributes
    ----------
    model:
        :class:`PixelSpaceModel` in eval mode, made safe for hook-based explainers.
    labels:
        One name per output logit.
    input_size:
        (height, width) the model expects; images are brought to it by ``preprocess``.
    cam_layer:
        Qualified module name (in ``model``) of the default layer for CAM methods.
    layers:
        Qualified names of the randomizable (parameterized) layers in *forward* order.
    name:
        Display name, e.g. ``"Default shapes CNN"`` or ``"resnet18 (random weights)"``.
    fingerprint:
        sha256 of the state dict at load time (see :func:`fingerprint`).
    unavailable:
        Method name -> plain reason, for methods that would give wrong maps on this model.
    source:
        How it was made: ``"default"``, ``"torchvision:resnet18"``, ``"checkpoint:<file>"``.
    lock:
        Held while hooks are attached to ``model`` or it is run by an explainer.
    preprocess:
        How an image becomes the model input (:class:`~xaicore.models.preprocess.Preprocess`):
        resize and centre crop, or a straight resize. ``None`` at construction means a
        straight resize to ``input_size``.
    """

    model: PixelSpaceModel
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    cam_layer: str
    layers: tuple[str, ...]
    name: str
    fingerprint: str
    unavailable: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # None at construction means a straight resize, which __post_init__ sets: once built, always a Preprocess
    preprocess: Preprocess = None  # type: ignore[assignment]
    # the CAM layers' output shapes, found by one forward pass when first asked for (cam_layers)
    _cam_shapes: dict[str, tuple[int, int, int]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.preprocess is None:
            object.__setattr__(self, "preprocess", Preprocess.direct(self.input_size))
        elif tuple(self.preprocess.input_size) != tuple(self.input_size):
            raise ParameterError(
                f"The preprocessing makes {self.preprocess.input_size} images but the model takes {self.input_size}."
            )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def module(self, name: str) -> nn.Module:
        """The sub-module of ``model`` with qualified name ``name``."""
        try:
            return self.model.get_submodule(name)
        except AttributeError as exc:
            raise UnknownNameError(f"The model has no layer named {name!r}.") from exc

    def class_index(self, target: int | float | str | np.integer | np.floating) -> int:
        """Class index from an index or a label; raises :class:`ParameterError` when out of range."""
        if isinstance(target, str):
            if target in self.labels:
                return self.labels.index(target)
            if target.strip().lstrip("-").isdigit():
                target = int(target)
            else:
                raise ParameterError(f"{target!r} is not a class of {self.name}.")
        index = int(target)
        if not 0 <= index < self.num_classes:
            raise ParameterError(self._out_of_range(index))
        return index

    def _out_of_range(self, index: int) -> str:
        return f"Class {index} is out of range: {self.name} has classes between 0 and {self.num_classes - 1}."

    def resolve_targets(
        self,
        target: TargetLike,
        *,
        n: int,
        logits: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """One class index per image: a long tensor of shape ``(n,)``.

        ``target`` is ``None`` (each image's predicted class, the argmax of ``logits`` of shape
        ``(n, C)``), one class index or label for every image (a Python or numpy number, a
        string, a 0-dim tensor), or one per image (a sequence, array or tensor of ``n`` indices
        or labels). The result lies on ``device``, by default that of ``logits`` or else the
        model's. Raises :class:`ParameterError` for a wrong count or a class out of range.
        """
        if device is None:
            device = self.device if logits is None else logits.device
        if target is None:
            if logits is None:
                raise ParameterError("No target class was given, and no predictions to take it from.")
            return logits.argmax(dim=1).to(device)
        if isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 0:
            target = target.item()
        if isinstance(target, (int, float, str, np.integer, np.floating)):
            return torch.full((n,), self.class_index(target), dtype=torch.long, device=device)
        numeric = isinstance(target, torch.Tensor) or (isinstance(target, np.ndarray) and target.dtype.kind in "biuf")
        values = torch.as_tensor(target).reshape(-1) if numeric else list(target)
        if len(values) != n:
            raise ParameterError(
                f"Give one target class for all images, or one target class per image: {n} images but "
                f"{len(values)} targets."
            )
        if not numeric:
            values = [self.class_index(v.item() if isinstance(v, (torch.Tensor, np.ndarray)) else v) for v in values]
        t = torch.as_tensor(values, dtype=torch.long).to(device)
        bad = (t < 0) | (t >= self.num_classes)
        if bool(bad.any()):
            raise ParameterError(self._out_of_range(int(t[bad][0])))
        return t.contiguous()

    def _cam_layer_shapes(self) -> dict[str, tuple[int, int, int]]:
        if self._cam_shapes is None:
            from xaicore.models.layers import cam_layer_shapes

            example = torch.zeros(1, 3, *self.input_size, device=self.device)
            with self.lock:
                found = cam_layer_shapes(self.model, example, include=(self.cam_layer,) if self.cam_layer else ())
            object.__setattr__(self, "_cam_shapes", found)
        return self._cam_shapes  # type: ignore[return-value]

    def cam_layers(self) -> tuple[str, ...]:
        """Qualified names of the layers a CAM method can use, in forward order: the 2-D
        convolutions (and the default :attr:`cam_layer`) with one (N, C, H, W) output per pass."""
        return tuple(self._cam_layer_shapes())

    def cam_layer_shape(self, name: str | None = None) -> tuple[int, int, int] | None:
        """(channels, height, width) of CAM layer ``name`` (default :attr:`cam_layer`) for one
        input; ``None`` when it is not a layer a CAM method can use."""
        return self._cam_layer_shapes().get(self.cam_layer if name is None else name)

    def with_cam_layer(self, name: str | None) -> ModelBundle:
        """This model with ``name`` as the CAM methods' layer (``None``: unchanged).

        The model, its weights and its lock are shared with this bundle. Raises
        :class:`UnknownNameError`, listing the choices, when ``name`` is not one of
        :meth:`cam_layers`.
        """
        if name is None or name == self.cam_layer:
            return self
        choices = self.cam_layers()
        if name not in choices:
            listed = ", ".join(choices) if choices else "none (the model has no 2-D convolution)"
            raise UnknownNameError(
                f"{name!r} is not a layer CAM methods can use on {self.name}. Choose a convolutional layer "
                f"with an image-shaped output: {listed}."
            )
        chosen = replace(self, cam_layer=name)
        object.__setattr__(chosen, "_cam_shapes", self._cam_shapes)
        return chosen

    def available_methods(self) -> list[str]:
        """Names of the registered methods that can run on this model (all but :attr:`unavailable`),
        in registration order."""
        from xaicore.explainers.registry import list_methods

        return [name for name in list_methods() if name not in self.unavailable]

    def to_input(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images as model input: (N, 3, H, W) float32 on the bundle's device at ``input_size``.

        Accepts one (H, W, 3) array / (3, H, W) tensor, or a batch (N, H, W, 3) / (N, 3, H, W).
        Values must already be in [0, 1]. Images not at ``input_size`` go through
        :attr:`preprocess` (resize, and centre crop where the rule says so); ``preprocess.frame``
        tells which part of the image the input shows.
        """
        x = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ParameterError("Images must have shape (H, W, 3) or (N, H, W, 3).")
        if x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] != 3:
            raise ParameterError("Images must have three colour channels (RGB).")
        x = x.to(device=self.device, dtype=torch.float32)
        x = self.preprocess.apply_tensor(x)
        return x.contiguous()

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Raw logits of model input (see :meth:`to_input`), computed under the lock."""
        with self.lock:
            return self.model(inputs)

    @property
    def precision(self) -> str:
        """``"float32"``, or ``"bf16"`` for the mixed-precision mode (:meth:`with_precision`)."""
        return "bf16" if self.model.autocast_dtype == torch.bfloat16 else "float32"

    def with_precision(self, precision: str) -> ModelBundle:
        """This model computing in ``precision``: ``"float32"`` or ``"bf16"`` (CUDA only).

        bf16 runs the network under autocast (matrix products and convolutions in bfloat16,
        logits returned as float32); inputs, attributions and the weights stay float32, and the
        weights and lock are shared with this bundle. Faster on tensor-core GPUs at the price
        of rounding: ``xai bench precision`` measures how close each method's maps stay.
        """
        wanted = str(precision).strip().lower()
        if wanted not in ("float32", "bf16"):
            raise ParameterError(f"precision must be 'float32' or 'bf16'; got {precision!r}.")
        if wanted == self.precision:
            return self
        if wanted == "bf16" and self.device.type != "cuda":
            raise ParameterError("The bf16 mode needs a CUDA GPU; on this device use float32.")
        old = self.model
        model = PixelSpaceModel(
            old.net, mean=old.mean.flatten().tolist(), std=old.std.flatten().tolist(), grayscale=old.grayscale
        ).to(self.device)  # a new wrapper around the same network
        model.eval()
        model.autocast_dtype = torch.bfloat16 if wanted == "bf16" else None
        base = self.name.removesuffix(" [bf16]")
        return replace(self, model=model, name=base + (" [bf16]" if wanted == "bf16" else ""))

    def private_copy(self) -> ModelBundle:
        """A deep copy with its own model and lock, for work that changes weights."""
        with self.lock:
            model = copy.deepcopy(self.model)
        return replace(self, model=model, lock=threading.RLock())
