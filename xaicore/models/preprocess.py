"""How an image becomes the model's input, and which part of it the model saw.

Every bundle carries one :class:`Preprocess` (``bundle.preprocess``); :meth:`ModelBundle.to_input`
applies it. Two rules exist:

``"resize"``
    The image is resized straight to the input size, so its proportions change when they
    differ from the input's. The embedded default model is trained on images made this way
    (64x64), and bundles built without a rule get it.
``"resize_crop"``
    The shorter side is resized to ``resize`` pixels (the other side keeps the proportions, as
    torchvision rounds it), then the centre ``input_size`` is cut out; where the resized image
    is smaller than the crop it is padded with black. This is what torchvision's weight
    transforms do (``weights.transforms()``: 256 then 224 for ResNet): torchvision models read
    the sizes and the interpolation from their weights' metadata (:meth:`Preprocess.from_weights`),
    random weights from the architecture's default weights. Uploaded state dicts use
    :meth:`Preprocess.for_checkpoint`: the shorter side to the input's longer side (the input
    size itself for square inputs), then the centre crop, the common rule for ImageNet-style
    classifiers.

Under both rules an image already at the input size is passed on unchanged: it is taken as
prepared for the model (generated images, data sets made for it). Resizing is bilinear (or the
weights' interpolation) with antialiasing by ``torchvision.transforms.v2.functional``; values are
clamped to [0, 1] afterwards. Normalization is not done here: it lives inside the model.

:meth:`Preprocess.frame` tells, without touching pixels, what happens to an image of a given
size (:class:`Framing`: resized size, the box of the original that was kept, whether it was
cropped, padded or stretched, a plain notice, and a JSON record); :meth:`Preprocess.apply_mask`
takes an object mask through the same geometry (nearest neighbour at pixel centres), so that
masks stay on the pixels their image's input keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaicore.errors import ParameterError

MODES = ("resize", "resize_crop")
INTERPOLATIONS = ("bilinear", "bicubic")
STRETCH_TOLERANCE = 0.01
"""Largest change of the aspect ratio (as ``|log|`` of the ratio of ratios) not called stretching."""


def _size_text(size: tuple[int, int]) -> str:
    """``"224x224"``: width x height, as people write picture sizes."""
    return f"{size[1]}x{size[0]}"


@dataclass(frozen=True)
class Preprocess:
    """The rule that turns an (H, W, 3) image in [0, 1] into the model's input.

    Attributes
    ----------
    input_size:
        (height, width) of the model input (the crop under ``"resize_crop"``).
    mode:
        ``"resize"`` (straight to ``input_size``) or ``"resize_crop"`` (shorter side to
        ``resize``, then the centre crop).
    resize:
        Length of the shorter side after resizing, ``"resize_crop"`` only (``None`` otherwise).
    interpolation:
        ``"bilinear"`` or ``"bicubic"``; always with antialiasing.
    origin:
        Where the rule comes from, in words (``"torchvision ResNet18_Weights.IMAGENET1K_V1.transforms()"``).
    """

    input_size: tuple[int, int]
    mode: str = "resize"
    resize: int | None = None
    interpolation: str = "bilinear"
    origin: str = ""

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.input_size)
        if len(size) != 2 or min(size) < 1:
            raise ParameterError(
                f"The input size must be (height, width) with both at least 1, not {self.input_size!r}."
            )
        object.__setattr__(self, "input_size", size)
        if self.mode not in MODES:
            raise ParameterError(f"Unknown preprocessing mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ParameterError(
                f"Unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}."
            )
        if self.mode == "resize_crop":
            if self.resize is None or int(self.resize) < 1:
                raise ParameterError("The resize_crop rule needs the length of the shorter side (resize, at least 1).")
            object.__setattr__(self, "resize", int(self.resize))
        elif self.resize is not None:
            raise ParameterError("Only the resize_crop rule takes a shorter-side length (resize).")

    # --- constructors ---------------------------------------------------------------------

    @classmethod
    def direct(cls, input_size: tuple[int, int], *, origin: str = "") -> Preprocess:
        """Resize straight to ``input_size`` (bilinear, antialiased)."""
        return cls(input_size=input_size, mode="resize", origin=origin)

    @classmethod
    def from_weights(
        cls, weights: Any, *, input_size: tuple[int, int] | None = None, random: bool = False
    ) -> Preprocess:
        """The rule of torchvision ``weights``, read from ``weights.transforms()`` (nothing is downloaded).

        ``resize_size``, ``crop_size`` and ``interpolation`` of the transform are used. When
        ``input_size`` differs from the crop, the shorter side keeps the weights' ratio of
        resize to crop (256/224 for ResNet), measured against the longer side of ``input_size``,
        so the crop never needs padding. ``random`` says the model has random weights, for
        the origin text.
        """
        transform = weights.transforms()
        crop_size = getattr(transform, "crop_size", None)
        resize_size = getattr(transform, "resize_size", None)
        if not crop_size or not resize_size:
            raise ParameterError(f"The transforms of {weights} do not say their resize and crop sizes.")
        crop = (int(crop_size[0]), int(crop_size[-1]))
        resize = int(resize_size[0])
        interpolation = getattr(getattr(transform, "interpolation", None), "value", "bilinear")
        if interpolation not in INTERPOLATIONS:
            interpolation = "bilinear"
        size = crop if input_size is None else (int(input_size[0]), int(input_size[1]))
        if size != crop:
            resize = max(max(size), int(round(resize * max(size) / max(crop))))
        origin = f"torchvision {weights}.transforms()"
        if random:
            origin += " (the architecture's default weights; this model has random weights)"
        if size != crop:
            origin += f", scaled to the input size {_size_text(size)}"
        return cls(input_size=size, mode="resize_crop", resize=resize, interpolation=interpolation, origin=origin)

    @classmethod
    def for_checkpoint(cls, input_size: tuple[int, int]) -> Preprocess:
        """The rule for an uploaded state dict: shorter side to the input's longer side, then the centre crop.

        For a square input of side s: resize the shorter side to s and cut the centre s x s,
        the common rule for classifiers trained on ImageNet-style crops.
        """
        size = (int(input_size[0]), int(input_size[1]))
        return cls(
            input_size=size,
            mode="resize_crop",
            resize=max(size),
            origin="uploaded state dict: shorter side resized to the input size, centre crop (the common rule)",
        )

    # --- geometry ---------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in words, e.g. ``"shorter side resized to 256 px, then centre-cropped to 224x224 (bilinear)"``."""
        if self.mode == "resize":
            text = f"resized straight to {_size_text(self.input_size)} ({self.interpolation})"
        else:
            text = (
                f"shorter side resized to {self.resize} px, then centre-cropped to "
                f"{_size_text(self.input_size)} ({self.interpolation})"
            )
        return text + "; an image already at the input size is used as it is"

    def record(self) -> dict[str, Any]:
        """The rule as JSON-ready data."""
        return {
            "mode": self.mode,
            "resize": self.resize,
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "antialias": True,
            "origin": self.origin,
            "rule": self.describe(),
        }

    def frame(self, height: int, width: int) -> Framing:
        """What this rule does to an image of ``height`` x ``width`` pixels (no pixels needed)."""
        h, w = int(height), int(width)
        if h < 1 or w < 1:
            raise ParameterError(f"An image must be at least 1x1 pixel, not {w}x{h}.")
        H, W = self.input_size
        if (h, w) == (H, W):
            return Framing(
                self,
                (h, w),
                (h, w),
                (0.0, 0.0, float(h), float(w)),
                cropped=False,
                padded=False,
                stretched=False,
                unchanged=True,
            )
        if self.mode == "resize":
            stretched = abs(math.log((h / w) / (H / W))) > STRETCH_TOLERANCE
            return Framing(
                self,
                (h, w),
                (H, W),
                (0.0, 0.0, float(h), float(w)),
                cropped=False,
                padded=False,
                stretched=stretched,
                unchanged=False,
            )
        resized = _shorter_side(h, w, int(self.resize))  # type: ignore[arg-type]
        rh, rw = resized
        top, left = int(round((rh - H) / 2.0)), int(round((rw - W) / 2.0))  # as torchvision's center_crop
        kept_top, kept_left = max(top, 0), max(left, 0)
        kept_bottom, kept_right = min(top + H, rh), min(left + W, rw)
        sy, sx = h / rh, w / rw
        box = (kept_top * sy, kept_left * sx, kept_bottom * sy, kept_right * sx)
        return Framing(
            self,
            (h, w),
            resized,
            box,
            cropped=rh > H or rw > W,
            padded=rh < H or rw < W,
            stretched=False,
            unchanged=False,
        )

    def frame_of(self, images: np.ndarray | torch.Tensor) -> Framing:
        """:meth:`frame` for the images of one call: (H, W, 3), (3, H, W), (N, H, W, 3) or (N, 3, H, W)."""
        shape = tuple(images.shape)
        if len(shape) == 3:
            shape = (1, *shape)
        if len(shape) != 4:
            raise ParameterError("Images must have shape (H, W, 3) or (N, H, W, 3).")
        height, width = shape[2:] if shape[1] == 3 or shape[-1] != 3 else shape[1:3]
        return self.frame(height, width)

    # --- pixels -----------------------------------------------------------------------------

    def apply_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) float images in [0, 1] -> (N, 3, H, W) model input, clamped to [0, 1]."""
        framing = self.frame(images.shape[-2], images.shape[-1])
        if framing.unchanged:
            return images
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        mode = InterpolationMode(self.interpolation)
        x = TF.resize(images, list(framing.resized_size), interpolation=mode, antialias=True)
        if self.mode == "resize_crop":
            x = TF.center_crop(x, list(self.input_size))
        return x.clamp(0.0, 1.0)

    def apply(self, image: np.ndarray) -> tuple[np.ndarray, Framing]:
        """One (H, W, 3) image in [0, 1] -> (the model input as (h, w, 3) float32, its :class:`Framing`)."""
        array = np.asarray(image, dtype=np.float32)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ParameterError("The image must have shape (height, width, 3).")
        framing = self.frame(array.shape[0], array.shape[1])
        x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)
        out = self.apply_tensor(x)[0].permute(1, 2, 0)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32), framing

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """An (h, w) object mask through the same resize and crop (nearest at pixel centres), (H, W) bool.

        Padding adds pixels outside the object (False).
        """
        from xaicore.data.images import resize_mask

        m = np.asarray(mask)
        if m.ndim != 2:
            raise ParameterError("An object mask must have shape (height, width).")
        framing = self.frame(m.shape[0], m.shape[1])
        if framing.unchanged:
            return m.astype(bool, copy=True)
        resized = resize_mask(m.astype(bool), framing.resized_size)
        if self.mode == "resize":
            return resized
        from torchvision.transforms.v2 import functional as TF

        cropped = TF.center_crop(torch.from_numpy(resized.astype(np.uint8))[None], list(self.input_size))[0]
        return np.ascontiguousarray(cropped.numpy() > 0)


def _shorter_side(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to ``side``, the longer side truncated as torchvision does."""
    if height <= width:
        return side, int(side * width / height)
    return int(side * height / width), side


@dataclass(frozen=True)
class Framing:
    """What one rule did to one image.

    Attributes
    ----------
    preprocess:
        The rule.
    source_size:
        (height, width) of the image given.
    resized_size:
        (height, width) after resizing, before any crop.
    box:
        (top, left, bottom, right) in the given image's pixels: the part the model input shows.
    cropped, padded:
        Whether parts of the image were cut off, or black borders added.
    stretched:
        Whether the image's proportions were changed (aspect ratio by more than 1%).
    unchanged:
        The image was already at the input size and passed on as it is.
    """

    preprocess: Preprocess
    source_size: tuple[int, int]
    resized_size: tuple[int, int]
    box: tuple[float, float, float, float]
    cropped: bool
    padded: bool
    stretched: bool
    unchanged: bool

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    def pixel_box(self) -> tuple[int, int, int, int]:
        """:attr:`box` rounded to whole pixels of the given image, (top, left, bottom, right)."""
        h, w = self.source_size
        top, left, bottom, right = self.box
        t, lf = min(max(int(round(top)), 0), h - 1), min(max(int(round(left)), 0), w - 1)
        return t, lf, max(min(int(round(bottom)), h), t + 1), max(min(int(round(right)), w), lf + 1)

    def notice(self) -> str:
        """A warning sentence when the model did not see the image as it is (cropped, padded,
        stretched); ``""`` otherwise."""
        size = _size_text(self.input_size)
        rule = self.preprocess
        if self.cropped and self.padded:
            return (
                f"The image was resized to {rule.resize} px on its shorter side, centre-cropped and padded with "
                f"black to {size}: the model did not see the parts outside the box, and the black border is not "
                "part of the image."
            )
        if self.cropped:
            return (
                f"The image was resized to {rule.resize} px on its shorter side and centre-cropped to {size}: "
                "the model did not see the parts outside the box."
            )
        if self.padded:
            return (
                f"The image was resized to {rule.resize} px on its shorter side and padded with black to {size}: "
                "the black border is not part of the image."
            )
        if self.stretched:
            return (
                f"The image ({_size_text(self.source_size)}) was resized to {size} without keeping its proportions, "
                "as this model expects: the model sees it stretched."
            )
        return ""

    def summary(self) -> str:
        """One short line: the input size and how it was made from the image."""
        size, source = _size_text(self.input_size), _size_text(self.source_size)
        if self.unchanged:
            return f"Model input {size}: the image as it is."
        if self.preprocess.mode == "resize":
            return f"Model input {size}: the {source} image resized to it."
        steps = [f"shorter side to {self.preprocess.resize} px"]
        if self.cropped:
            steps.append("centre crop")
        if self.padded:
            steps.append("black padding")
        return f"Model input {size}: the {source} image, {', '.join(steps)}."

    def record(self) -> dict[str, Any]:
        """The rule and what it did, JSON-ready: sizes as (height, width), the box as (top, left, bottom, right)."""
        return {
            **self.preprocess.record(),
            "source_size": list(self.source_size),
            "resized_size": list(self.resized_size),
            "box": [round(float(v), 3) for v in self.box],
            "cropped": self.cropped,
            "padded": self.padded,
            "stretched": self.stretched,
            "unchanged": self.unchanged,
            "notice": self.notice(),
        }
