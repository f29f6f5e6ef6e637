"""Image sets for data-set evaluation, named by one string (the ``DATA`` of ``xai evaluate``).

* ``generated:N[:SEED]`` -- ``N`` generated shapes with labels (no masks), seed 0 by default;
* ``generated-hard:N[:SEED]`` -- the same with harder images (smaller objects, clutter, an
  occluding bar, noise; difficulty :data:`~xaicore.data.imagesets.HARD_DIFFICULTY`), on which the
  default model gets some wrong: for measurements that compare right and wrong predictions;
* ``scenes:N[:SEED]`` -- ``N`` generated two-object scenes; each scene gives *two* items, one
  per object, labelled with that object's class and carrying its mask, so localization asks
  "does the map of this class fall on this object?";
* ``samples`` -- the sample images (shapes with labels, scenes split as above, photographs
  without label or mask);
* anything else -- a folder or zip file read by :func:`~xaicore.data.imagesets.load_image_set`
  (labels from sub-folder names, ``<stem>.mask.png`` masks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xaicore.data.imagesets import HARD_DIFFICULTY, ImageItem, ImageSet, generated_test_set, load_image_set
from xaicore.errors import ParameterError

if TYPE_CHECKING:
    from xaicore.models.preprocess import Preprocess

_GENERATED = re.compile(r"^(generated|generated-hard|scenes):(\d+)(?::(-?\d+))?$")
MAX_GENERATED = 10_000


def scene_set(n: int, *, seed: int, size: int = 64) -> ImageSet:
    """``n`` generated scenes as ``2 n`` items, one per object, each with its class and mask."""
    from xaicore.data import shapes

    if n < 1:
        raise ParameterError("Ask for at least one scene.")
    items = []
    for index, scene in enumerate(shapes.generate_scenes(n, seed=seed, size=size)):
        image = np.array(scene.image, dtype=np.float32)
        for label, mask in zip(scene.labels, scene.masks, strict=True):
            name = f"scene-{index:05d}/{shapes.CLASSES[label]}"
            items.append(ImageItem(name=name, array=image, label=int(label), mask=np.array(mask, dtype=bool)))
    return ImageSet(items=tuple(items), class_names=tuple(shapes.CLASSES))


def sample_set(names: Sequence[str] | None = None) -> ImageSet:
    """The sample images (all, or ``names``) as items; a scene gives one item per object."""
    from xaicore.data import samples, shapes

    chosen = list(samples.list_samples()) if names is None else list(names)
    if not chosen:
        raise ParameterError("Choose at least one sample image.")
    items = []
    for name in chosen:
        sample = samples.load_sample(name)
        image = np.array(sample.image, dtype=np.float32)
        if sample.masks is not None and sample.mask_labels:
            for label, mask in zip(sample.mask_labels, sample.masks, strict=True):
                items.append(
                    ImageItem(
                        name=f"{name}/{shapes.CLASSES[label]}",
                        array=image,
                        label=int(label),
                        mask=np.array(mask, dtype=bool),
                    )
                )
        else:
            items.append(ImageItem(name=name, array=image, label=sample.label))
    return ImageSet(items=tuple(items), class_names=tuple(shapes.CLASSES))


def parse_data(
    spec: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    limit: int | None = None,
    preprocess: Preprocess | None = None,
) -> ImageSet:
    """The image set named by ``spec`` (see the module docstring).

    ``class_names`` (the model's) turn folder names into labels; ``size`` resizes folder and
    zip images as they load, or ``preprocess`` (``bundle.preprocess``) brings them to the model's
    input as :meth:`ModelBundle.to_input` does; ``limit`` keeps the first images only.
    """
    text = str(spec).strip()
    match = _GENERATED.match(text)
    if match:
        kind, count, seed = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if not 1 <= count <= MAX_GENERATED:
            raise ParameterError(f"Ask for between 1 and {MAX_GENERATED} generated images; got {count}.")
        if kind == "scenes":
            image_set = scene_set(count, seed=seed)
        else:
            image_set = generated_test_set(
                count, seed=seed, difficulty=HARD_DIFFICULTY if kind == "generated-hard" else 0.0
            )
    elif text.lower() == "samples":
        image_set = sample_set()
    elif text.split(":", 1)[0] in ("generated", "generated-hard", "scenes"):
        raise ParameterError(
            f"{text!r} is not understood; write generated:N or generated:N:SEED (generated-hard and scenes likewise)."
        )
    else:
        return load_image_set(text, class_names=class_names, limit=limit, size=size, preprocess=preprocess)
    if limit is not None:
        if limit < 1:
            raise ParameterError("limit must be at least 1 image (or None for all).")
        image_set = ImageSet(
            items=image_set.items[:limit], class_names=image_set.class_names, notices=image_set.notices
        )
    return image_set
