"""``hard``: the named hard data set of the Improve methods, with fixed train and test seeds.

32x32 single-object shapes (:func:`xaicore.data.shapes.generate`) at difficulty
:data:`DIFFICULTY`: smaller objects, distractor blobs, an occluding bar on a fifth of the
images, pixel noise. The small CNN of :mod:`xaicore.improve.classifier` reaches about 64-76% on
its test set in half a minute on one CPU thread (64-69% over seeds 0-2 with the ``cpu``
preset's six epochs), which leaves room to improve.

The test set is fixed (``TEST_SEED``, ``TEST_SIZE`` images); the training images come from
their own seed, so no image is in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaicore.data.shapes import CLASSES, generate
from xaicore.errors import ParameterError, UnknownNameError

NAME = "hard"
SIZE = 32
DIFFICULTY = 0.2
TRAIN_SEED = 20_001
TEST_SEED = 20_002
TRAIN_SIZE = 6000
TEST_SIZE = 1000
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageSplit:
    """(N, 3, H, W) float32 pixel-space images in [0, 1] and (N,) int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> ImageSplit:
        """The first ``n`` images (all when ``n`` is larger)."""
        return ImageSplit(self.images[:n], self.labels[:n])


def load(name: str, split: str, *, n: int | None = None) -> ImageSplit:
    """Split ``split`` (``"train"`` or ``"test"``) of the named data set ``name`` (only ``"hard"``).

    ``n`` (default: the split's full size) takes the first ``n`` images of the same stream, so
    a smaller ``n`` is not a prefix of the full set (classes stay balanced), but is fixed too.
    """
    if name != NAME:
        raise UnknownNameError(f"There is no data set {name!r}; the Improve methods know {NAME!r}.")
    if split not in SPLITS:
        raise ParameterError(f"The split must be one of {', '.join(SPLITS)}; got {split!r}.")
    full = TRAIN_SIZE if split == "train" else TEST_SIZE
    count = full if n is None else int(n)
    if count < len(CLASSES):
        raise ParameterError(f"Ask for at least {len(CLASSES)} images (one per class); got {count}.")
    seed = TRAIN_SEED if split == "train" else TEST_SEED
    images, labels = generate(count, seed=seed, size=SIZE, difficulty=DIFFICULTY)
    return ImageSplit(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))
