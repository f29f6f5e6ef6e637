"""ModelBundle.resolve_targets: the one reading of a target argument for every analysis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.explain_models import tiny_bundle
from xaicore.errors import ParameterError


def test_one_class_for_all_images_by_index_label_or_numpy_number() -> None:
    bundle = tiny_bundle()
    label = bundle.labels[2]
    for target in (2, label, np.int64(2), torch.tensor(2), np.array(2), "2"):
        t = bundle.resolve_targets(target, n=3)
        assert t.dtype == torch.long and t.tolist() == [2, 2, 2]


def test_one_class_per_image_from_a_sequence_array_or_tensor() -> None:
    bundle = tiny_bundle()
    wanted = [0, 3, 1]
    for target in (wanted, tuple(wanted), np.array(wanted), torch.tensor(wanted), [bundle.labels[k] for k in wanted]):
        assert bundle.resolve_targets(target, n=3).tolist() == wanted
    assert bundle.resolve_targets([np.int32(1), torch.tensor(2)], n=2).tolist() == [1, 2]


def test_none_is_the_predicted_class_of_the_logits() -> None:
    bundle = tiny_bundle()
    logits = torch.tensor([[0.0, 2.0, 1.0, 0.0], [5.0, 0.0, 0.0, 1.0]])
    assert bundle.resolve_targets(None, n=2, logits=logits).tolist() == [1, 0]
    with pytest.raises(ParameterError, match="no predictions"):
        bundle.resolve_targets(None, n=2)


def test_wrong_counts_and_classes_are_refused() -> None:
    bundle = tiny_bundle()
    top = bundle.num_classes - 1
    with pytest.raises(ParameterError, match="one target class per image: 2 images but 3 targets"):
        bundle.resolve_targets([0, 1, 2], n=2)
    with pytest.raises(ParameterError, match="one target class per image: 2 images but 3 targets"):
        bundle.resolve_targets(torch.tensor([0, 1, 2]), n=2)
    for target in (top + 1, [0, top + 1], torch.tensor([0, top + 1]), np.array([-1, 0])):
        with pytest.raises(ParameterError, match=f"out of range: .* between 0 and {top}"):
            bundle.resolve_targets(target, n=2)
    with pytest.raises(ParameterError, match="not a class"):
        bundle.resolve_targets("no such class", n=2)
