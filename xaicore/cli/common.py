"""Helpers shared by the ``xai`` sub-commands: reading an image argument and method lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SINGLE_PASS = ("saliency", "input_x_gradient", "deconvolution", "guided_backprop", "gradcam", "guided_gradcam")


@dataclass(frozen=True)
class ImageArg:
    """An image named on the command line, with its ground-truth masks when it has any."""

    array: np.ndarray
    name: str
    masks: np.ndarray | None = None
    mask_labels: tuple[int, ...] | None = None


def read_image_arg(source: str) -> ImageArg:
    """Load ``source``: an image file when such a file exists, otherwise a sample by name."""
    from xaicore.data.images import load_image
    from xaicore.data.samples import list_samples, load_sample
    from xaicore.errors import ImageLoadError

    path = Path(source)
    if path.is_file():
        loaded = load_image(path)
        return ImageArg(array=loaded.array, name=path.name)
    if source in list_samples():
        sample = load_sample(source)
        masks = sample.masks if sample.masks is not None and sample.mask_labels else None
        return ImageArg(array=sample.image, name=source, masks=masks, mask_labels=sample.mask_labels if masks is not None else None)
    raise ImageLoadError(f"{source!r} is neither an image file nor a sample name; check the path.")


def parse_methods(text: str) -> list[str]:
    """Method names from a comma-separated list; ``all`` means every registered method."""
    from xaicore.errors import ParameterError
    from xaicore.explainers.registry import list_methods

    if text.strip().lower() == "all":
        return list_methods()
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ParameterError("--methods needs at least one method name.")
    return names


def methods_for(text: str, unavailable: Mapping[str, str]) -> list[str]:
    """Method names from ``--methods``; ``all`` leaves out the ones this model cannot run."""
    methods = parse_methods(text)
    if text.strip().lower() == "all":
        methods = [m for m in methods if m not in unavailable]
    return methods
