"""attribution_status: the one reading of "ok", "no signal" and "numerical error", per map of a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaicore.explainers.results import Status, attribution_flags, attribution_status, classify_attribution


def _stack() -> torch.Tensor:
    maps = torch.zeros(2, 3, 3, 4, 4)  # (methods, images, C, H, W)
    maps[0, 0, 1, 2, 3] = 0.5  # ok
    maps[0, 2, 0, 0, 0] = float("nan")  # numerical error
    maps[1, 1, 2, 1, 1] = float("-inf")  # numerical error
    maps[1, 2] = torch.rand(3, 4, 4) - 0.5  # ok; [0, 1] and [1, 0] stay all zero: no signal
    return maps


EXPECTED = [["ok", "no signal", "numerical error"], ["no signal", "numerical error", "ok"]]


@pytest.mark.parametrize("as_numpy", [False, True])
def test_every_map_of_a_stack_gets_its_status(as_numpy: bool) -> None:
    raw = _stack().numpy() if as_numpy else _stack()
    assert attribution_status(raw, batch_dims=2).tolist() == EXPECTED
    assert attribution_status(raw[1]).tolist() == EXPECTED[1]
    no_signal, numerical = attribution_flags(raw, batch_dims=2)
    assert isinstance(no_signal, np.ndarray if as_numpy else torch.Tensor)
    assert np.asarray(no_signal).tolist() == [[False, True, False], [True, False, False]]
    assert np.asarray(numerical).tolist() == [[False, False, True], [False, True, False]]


def test_one_map_and_an_empty_batch() -> None:
    maps = _stack()
    for j, row in enumerate(EXPECTED):
        for i, status in enumerate(row):
            assert classify_attribution(maps[j, i]) is Status(status)
            assert classify_attribution(maps[j, i].numpy()) is Status(status)
    assert attribution_status(torch.zeros(0, 3, 4, 4)).shape == (0,)
    assert attribution_status(np.zeros((0, 3, 4, 4))).shape == (0,)
