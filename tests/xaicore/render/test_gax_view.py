"""Pictures of a GAX history: shared-scale channel tiles, degenerate views, the animated GIF."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers.gax_models import conv_bundle, one_thread  # noqa: F401 (autouse)
from xaicore.confidence.gax import run_gax
from xaicore.errors import ParameterError
from xaicore.explainers.results import Status
from xaicore.render import heatmaps
from xaicore.render.gax_view import (
    channel_tiles,
    colorbar_text,
    diverging_rgb,
    evolution_gif,
    frame_indices,
    gif_frame_count,
)
from xaicore.render.gax_view import colorbar as gax_colorbar


def reference_rgb(values: np.ndarray) -> np.ndarray:
    return heatmaps.to_uint8(heatmaps.colorize(np.clip(values, -1.0, 1.0)))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), spread=st.floats(0.1, 3.0))
def test_lookup_colours_match_the_diverging_map_within_one_level(seed, spread):
    values = np.random.default_rng(seed).normal(0.0, spread, (17, 13))
    drawn = diverging_rgb(values).astype(int)
    assert drawn.shape == (17, 13, 3)
    assert np.abs(drawn - reference_rgb(values).astype(int)).max() <= 1


def test_channels_share_one_scale():
    values = np.zeros((3, 2, 2))
    values[0, 0, 0] = 0.25
    values[1, 1, 1] = -0.5  # the absolute maximum, in G
    values[2, 0, 1] = 0.5
    drawn = channel_tiles(values)
    assert drawn.status is Status.OK and drawn.scale == 0.5
    np.testing.assert_array_equal(drawn.tiles[0], diverging_rgb(values[0] / 0.5))

    # only the shared maximum reaches the end of the colour map; R's 0.25 sits half way
    def near(pixel: np.ndarray, value: float) -> bool:
        return int(np.abs(pixel.astype(int) - reference_rgb(np.array(value)).astype(int)).max()) <= 1

    assert near(drawn.tiles[1][1, 1], -1.0) and near(drawn.tiles[0][0, 0], 0.5) and near(drawn.tiles[0][1, 1], 0.0)
    assert not near(drawn.tiles[0][0, 0], 1.0)
    fixed = channel_tiles(values, scale=1.0)
    assert fixed.scale == 1.0
    assert np.abs(fixed.tiles[2].astype(int) - reference_rgb(values[2]).astype(int)).max() <= 1


def test_zero_and_non_finite_maps_are_grey_with_their_status():
    zero = channel_tiles(np.zeros((3, 4, 4)))
    assert zero.status is Status.NO_SIGNAL
    assert all(np.all(t == heatmaps.NEUTRAL_GREY) for t in zero.tiles)
    bad = np.zeros((3, 4, 4))
    bad[1, 2, 2] = np.nan
    broken = channel_tiles(bad)
    assert broken.status is Status.NUMERICAL_ERROR and math.isnan(broken.scale)
    assert all(np.all(t == heatmaps.NEUTRAL_GREY) for t in broken.tiles)
    with pytest.raises(ParameterError):
        channel_tiles(np.zeros((2, 4, 4)))
    with pytest.raises(ParameterError):
        channel_tiles(np.ones((3, 4, 4)), scale=0.0)


@settings(max_examples=50, deadline=None)
@given(count=st.integers(1, 2000), max_frames=st.integers(2, 300))
def test_frame_indices_are_spread_and_keep_both_ends(count, max_frames):
    picked = frame_indices(count, max_frames=max_frames)
    assert picked[0] == 0 and picked[-1] == count - 1
    assert len(picked) <= max_frames and picked == sorted(set(picked))
    if count <= max_frames:
        assert picked == list(range(count))


def test_gif_has_one_frame_per_stored_step_and_shows_the_heatmap():
    bundle = conv_bundle(size=8, num_classes=4, seed=0, dtype=torch.float32)
    image = np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    result = run_gax(bundle, image, target_co=math.inf, max_steps=9)[0]
    data = evolution_gif(result, upscale=2)
    assert gif_frame_count(data) == 10
    short = evolution_gif(result, upscale=1, max_frames=4)
    assert gif_frame_count(short) == 4
    with Image.open(io.BytesIO(data)) as gif:
        gif.seek(9)
        last = np.asarray(gif.convert("RGB"))
    expected = channel_tiles(result.history.heatmap(9), scale=1.0).tiles[0]
    # red channel, upscaled 2x below the 16-pixel caption strip; palette quantization costs a few levels
    drawn = last[16::2, 0:16:2][: expected.shape[0], : expected.shape[1]].astype(int)
    assert np.abs(drawn - expected.astype(int)).max() <= 12


def test_channel_rows_have_a_colour_bar_at_their_shared_scale():
    values = np.zeros((3, 4, 4))
    values[0, 0, 0], values[2, 1, 1] = 0.25, -0.5
    drawn = channel_tiles(values)
    bar = gax_colorbar(drawn, width=120)
    assert bar is not None and bar.shape[1] == 120
    np.testing.assert_array_equal(bar, heatmaps.colorbar(0.5, mode="all", width=120, cmap="diverging", plain=True))
    assert colorbar_text(drawn).startswith("colour bar: -0.5 \u2026 0 \u2026 +0.5")
    assert bar[2, 1, 2] > bar[2, 1, 0] + 40 and bar[2, -2, 0] > bar[2, -2, 2] + 40  # blue - ... red +
    assert gax_colorbar(channel_tiles(np.zeros((3, 4, 4)))) is None  # no signal: no scale to show
    assert gax_colorbar(channel_tiles(np.full((3, 4, 4), np.nan))) is None
