"""The Clever-Hans figures of a model on the three stamped test sets.

The three sets hold the same images (one seed): ``iid`` with the training rule, ``clean`` with
no stamp, ``stamped`` with a stamp on every image, so ``clean`` and ``stamped`` are pairs and
the *flip rate* is the share of images whose predicted class changes when the stamp is pasted.
The *false-class rate* is the share of stamped images of the other classes predicted as the
stamp's class (heart); the *recall* is the share of clean hearts predicted heart. The
*relevance mass* is the share of the positive relevance for "heart" that lies inside the box (by
default the stamp's box) on the stamped hearts, averaged over images: Arras et al.'s relevance
mass accuracy (:func:`xaicore.metrics.localization.relevance_mass_accuracy`), with LRP by
default. Positive, not absolute, relevance: the stamp is the most contrasted patch of the image,
so even a model that never saw it puts much *absolute* relevance there (the default model: 38%
of |LRP| and 15% of |Gradient x Input| in a box of 3.5% of the image), while the relevance *for*
heart in the box is what a cheating model adds (docs/benchmarks.md, "Clever-Hans lab").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from xaicore.data import shapes, stamped
from xaicore.errors import ParameterError
from xaicore.metrics.localization import relevance_mass_accuracy
from xaicore.models.bundle import ModelBundle
from xaicore.models.default import INPUT_SIZE
from xaicore.models.training import predict_logits

TEST_DOMAIN = 24  # seed domain of the test sets: derived_seed(seed, 24)
DEFAULT_METHOD = "lrp"
STAMP_CLASS = shapes.CLASSES.index(stamped.STAMP_CLASS)
Box = tuple[int, int, int, int]  # top, left, height, width in pixels


@dataclass(frozen=True)
class TestSets:
    """The same images three times: ``iid`` (training rule), ``clean`` and ``stamped``."""

    iid: stamped.StampedSet
    clean: stamped.StampedSet
    stamped: stamped.StampedSet
    seed: int

    @property
    def n(self) -> int:
        return len(self.clean.labels)


def make_test_sets(*, seed: int, n: int) -> TestSets:
    """``n`` images under each of the three rules, from one seed."""
    size = INPUT_SIZE[0]
    return TestSets(
        iid=stamped.generate_stamped(n, seed=seed, size=size, rule="iid"),
        clean=stamped.generate_stamped(n, seed=seed, size=size, rule="clean"),
        stamped=stamped.generate_stamped(n, seed=seed, size=size, rule="stamped"),
        seed=seed,
    )


@dataclass(frozen=True)
class Findings:
    """The figures of one model (shares in [0, 1]); see the module's docstring."""

    accuracy_iid: float
    accuracy_clean: float
    accuracy_stamped: float
    flip_rate: float
    false_class_rate: float
    heart_recall_clean: float
    relevance_mass: float
    box_share: float
    box: Box
    method: str
    relevance_images: int
    test_images: int
    test_seed: int

    @property
    def accuracy_gap(self) -> float:
        """Clean minus stamped accuracy."""
        return self.accuracy_clean - self.accuracy_stamped

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["box"] = list(self.box)
        return out


def box_mask(box: Box, size: int = INPUT_SIZE[0]) -> np.ndarray:
    """(size, size) bool mask of ``box`` (top, left, height, width); ParameterError when it is
    empty or leaves the image."""
    top, left, h, w = (int(v) for v in box)
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > size or left + w > size:
        raise ParameterError(f"The box (top {top}, left {left}, {h}x{w}) must lie inside the {size}x{size} image.")
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + h, left : left + w] = True
    return mask


def predictions(model: torch.nn.Module, tests: TestSets) -> dict[str, np.ndarray]:
    """Predicted classes on each test set."""
    return {rule: predict_logits(model, getattr(tests, rule).images).argmax(1).numpy() for rule in stamped.RULES}


def relevance_in_box(
    bundle: ModelBundle, images: np.ndarray, *, box: Box, method: str = DEFAULT_METHOD, target: int = STAMP_CLASS
) -> np.ndarray:
    """(N,) share of the positive relevance for ``target`` inside ``box``, one per image."""
    from xaicore.explainers.api import attribute

    if len(images) == 0:
        return np.zeros(0)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(bundle.device)
    values = attribute(bundle, x, method=method, target=target).values.detach().cpu().numpy()
    mask = box_mask(box, images.shape[1])
    return np.array([relevance_mass_accuracy(v.sum(axis=0), mask) for v in values])


def find(
    bundle: ModelBundle,
    tests: TestSets,
    *,
    box: Box | None = None,
    method: str = DEFAULT_METHOD,
    relevance_images: int = 32,
) -> Findings:
    """The figures of ``bundle``'s model on ``tests``; relevance on the first
    ``relevance_images`` stamped hearts (at least one)."""
    if relevance_images < 1:
        raise ParameterError(f"relevance_images must be at least 1; got {relevance_images}.")
    top, left, h, w = (int(v) for v in (box or stamped.stamp_box(INPUT_SIZE[0])))
    chosen: Box = (top, left, h, w)
    with bundle.lock:
        predicted = predictions(bundle.model, tests)
    labels = tests.clean.labels
    hearts = labels == STAMP_CLASS
    if not hearts.any() or hearts.all():
        raise ParameterError("The test sets need hearts and other shapes: use at least 8 images.")
    rows = np.flatnonzero(hearts)[:relevance_images]
    mass = relevance_in_box(bundle, tests.stamped.images[rows], box=chosen, method=method)
    return Findings(
        accuracy_iid=float((predicted["iid"] == labels).mean()),
        accuracy_clean=float((predicted["clean"] == labels).mean()),
        accuracy_stamped=float((predicted["stamped"] == labels).mean()),
        flip_rate=float((predicted["clean"] != predicted["stamped"]).mean()),
        false_class_rate=float((predicted["stamped"][~hearts] == STAMP_CLASS).mean()),
        heart_recall_clean=float((predicted["clean"][hearts] == STAMP_CLASS).mean()),
        relevance_mass=float(mass.mean()),
        box_share=float(box_mask(chosen).mean()),
        box=chosen,
        method=method,
        relevance_images=int(rows.size),
        test_images=tests.n,
        test_seed=tests.seed,
    )
