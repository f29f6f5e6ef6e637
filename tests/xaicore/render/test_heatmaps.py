"""Heatmap rendering: views, scalings, colour maps, degenerate maps, overlay, the PNG grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xaicore.errors import ParameterError
from xaicore.explainers.results import ExplainResult, MethodResult, Prediction, Status
from xaicore.render.heatmaps import (
    DEFAULT_PERCENTILE,
    DIVERGING,
    HEAT,
    HOT,
    NEUTRAL_GREY,
    blend,
    channel_sum,
    channel_view,
    clip_value,
    colorbar,
    colorbar_labels,
    colorize,
    dimmed_grey,
    grid_image,
    heatmap_tile,
    overlay,
    render_map,
    robust_scale,
    scale_map,
    shared_clip,
    tinted_share,
    to_uint8,
    view_status,
)
from xaicore.runtime.provenance import Provenance

ATTR = np.stack([np.arange(12.0).reshape(3, 4) - 5, np.ones((3, 4)), -2 * np.ones((3, 4))]).astype(np.float32)


def test_channel_views() -> None:
    np.testing.assert_array_equal(channel_sum(ATTR), ATTR[0] + ATTR[1] + ATTR[2])
    np.testing.assert_array_equal(channel_view(ATTR, "G"), ATTR[1])
    np.testing.assert_array_equal(channel_view(ATTR, "B"), ATTR[2])
    with pytest.raises(ParameterError):
        channel_view(ATTR, "alpha")
    with pytest.raises(ParameterError, match=r"\(3, H, W\)"):
        channel_sum(np.zeros((4, 4, 3)))


def test_scalings() -> None:
    m = np.array([[-4.0, 2.0], [1.0, 0.0]])
    np.testing.assert_array_equal(scale_map(m, mode="all"), [[-1.0, 0.5], [0.25, 0.0]])
    np.testing.assert_array_equal(scale_map(m, mode="positive"), [[0.0, 1.0], [0.5, 0.0]])
    np.testing.assert_array_equal(scale_map(m, mode="absolute"), [[1.0, 0.5], [0.25, 0.0]])
    with pytest.raises(ParameterError):
        scale_map(m, mode="log")


@pytest.mark.parametrize(
    "m,mode,status",
    [
        (np.zeros((3, 3)), "all", Status.NO_SIGNAL),
        (-np.ones((3, 3)), "positive", Status.NO_SIGNAL),  # nothing positive to show
        (-np.ones((3, 3)), "absolute", Status.OK),
        (np.array([[1.0, np.nan]]), "all", Status.NUMERICAL_ERROR),
        (np.array([[1.0, np.nan]]), "positive", Status.NUMERICAL_ERROR),
        (np.array([[1.0, -np.inf]]), "positive", Status.NUMERICAL_ERROR),
        (np.array([[1e-30, 0.0]]), "all", Status.OK),
    ],
)
def test_degenerate_maps_are_named_and_never_scaled(m: np.ndarray, mode: str, status: Status) -> None:
    assert view_status(m, mode=mode) is status
    if status is Status.OK:
        assert np.abs(scale_map(m, mode=mode)).max() == 1.0
    else:
        with pytest.raises(ParameterError, match="cannot be scaled"):
            scale_map(m, mode=mode)


def test_colour_maps_hit_their_anchors_and_interpolate_linearly() -> None:
    rgb = colorize(np.array([-1.0, 0.0, 1.0, 2.0]), cmap="diverging")
    np.testing.assert_allclose(rgb[0], DIVERGING.colors[0])
    np.testing.assert_allclose(rgb[1], DIVERGING.colors[3])  # white-ish middle for zero
    np.testing.assert_allclose(rgb[2], DIVERGING.colors[-1])
    np.testing.assert_allclose(rgb[3], DIVERGING.colors[-1])  # clipped
    assert rgb[2, 0] > rgb[2, 2] and rgb[0, 2] > rgb[0, 0]  # positive red, negative blue
    mid = colorize(np.array([0.125]), cmap="heat")[0]
    np.testing.assert_allclose(mid, (np.array(HEAT.colors[0]) + np.array(HEAT.colors[1])) / 2)
    with pytest.raises(ParameterError):
        colorize(np.zeros(2), cmap="jet")


def test_overlay() -> None:
    img = np.full((2, 2, 3), 0.2)
    heat = np.full((2, 2, 3), 1.0)
    np.testing.assert_allclose(overlay(img, heat, alpha=0.0), img)
    np.testing.assert_allclose(overlay(img, heat, alpha=1.0), heat)
    np.testing.assert_allclose(overlay(img, heat, alpha=0.5), np.full((2, 2, 3), 0.6))
    weighted = overlay(img, heat, alpha=1.0, weight=np.array([[0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(weighted[..., 0], [[0.2, 1.0], [0.6, 0.6]])
    with pytest.raises(ParameterError):
        overlay(img, heat, alpha=1.5)
    with pytest.raises(ParameterError):
        overlay(img, np.ones((3, 3, 3)), alpha=0.5)


def test_tiles() -> None:
    tile = heatmap_tile(ATTR, mode="all")
    assert tile.status is Status.OK and tile.rgb.dtype == np.uint8 and tile.rgb.shape == (3, 4, 3)
    scaled, clip = robust_scale(channel_sum(ATTR), mode="all", percentile=DEFAULT_PERCENTILE)
    np.testing.assert_array_equal(tile.rgb, to_uint8(blend(scaled, cmap="diverging", alpha=0.8)))  # over white
    assert tile.clip == clip and tile.percentile == DEFAULT_PERCENTILE and tile.mode == "all"
    grey = heatmap_tile(np.zeros((3, 5, 6), np.float32), mode="all")
    assert grey.status is Status.NO_SIGNAL and grey.caption == "no signal"
    assert (grey.rgb == NEUTRAL_GREY).all() and grey.rgb.shape == (5, 6, 3)
    bad = ATTR.copy()
    bad[0, 0, 0] = np.inf
    assert heatmap_tile(bad).caption == "numerical error"
    over = heatmap_tile(ATTR, mode="positive", image=np.zeros((3, 4, 3)), alpha=1.0)
    # zero weight where the map is not positive: the dimmed grey copy of the black image shows
    assert over.rgb[0, 0].tolist() == [51, 51, 51]


@settings(max_examples=40, deadline=None)
# subnormal values are left out: dividing one by the map's maximum may underflow to zero, and
# the sign test below would then fail for a reason that has nothing to do with the scaling
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )
)
def test_scaled_maps_stay_in_range_and_keep_order(m: np.ndarray) -> None:
    for mode, low in (("all", -1.0), ("positive", 0.0), ("absolute", 0.0)):
        if view_status(m, mode=mode) is not Status.OK:
            continue
        s = scale_map(m, mode=mode)
        assert s.min() >= low and s.max() <= 1.0 and np.isclose(np.abs(s).max(), 1.0)
        if mode == "all":
            assert np.array_equal(np.sign(s), np.sign(m))
            flat_m, flat_s = m.ravel(), s.ravel()
            order = np.argsort(flat_m, kind="stable")
            assert np.all(np.diff(flat_s[order]) >= 0)


def _result() -> ExplainResult:
    rng = np.random.default_rng(0)
    ok = MethodResult("saliency", "Saliency", Status.OK, rng.random((3, 8, 8)).astype(np.float32), 1, {}, 0.01)
    zero = MethodResult("gradcam", "Grad-CAM", Status.NO_SIGNAL, np.zeros((3, 8, 8), np.float32), 1, {}, 0.01)
    missing = MethodResult("lrp", "LRP", Status.UNAVAILABLE, None, 1, {}, 0.0, reason="no rule")
    return ExplainResult(
        image=rng.random((8, 8, 3)).astype(np.float32),
        image_hash="x",
        target=1,
        target_label="square",
        predictions=(Prediction(1, "square", 0.9),),
        methods=(ok, zero, missing),
        baseline="black",
        provenance=Provenance(model_name="m", model_fingerprint="f", seed=0, device="cpu"),
    )


def test_grid_image_has_one_tile_per_method_plus_the_input() -> None:
    result = _result()
    grid = grid_image(result, tile=40, columns=2)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[1] == 2 * (40 + 6) + 6
    heights = grid_image(result, tile=40, columns=4).shape[0]
    assert grid.shape[0] > heights  # two rows instead of one
    # the grey tiles of the degenerate and the unavailable method are in the picture
    assert (grid == NEUTRAL_GREY).all(axis=-1).sum() >= 2 * 40 * 40
    # the one map with a scale has its colour bar under its tile (second column), and only it
    overlaid = grid_image(result, tile=40, columns=2, overlay_image=True)
    bar = colorbar(heatmap_tile(result.methods[0].attribution, image=result.image).clip, width=40)
    hits = [
        r
        for r in range(overlaid.shape[0] - bar.shape[0] + 1)
        if np.array_equal(overlaid[r : r + bar.shape[0], 52:92], bar)
    ]
    assert len(hits) == 1
    with pytest.raises(ParameterError):
        grid_image(result, columns=0)


# ------------------------------------------------------------------ robust scale, blend, bar


def _blob(size: int = 48, *, outlier: float = 50.0) -> np.ndarray:
    """A smooth positive blob, a weaker negative one, low noise and one outlier pixel."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    m = np.exp(-((yy - 0.4) ** 2 + (xx - 0.4) ** 2) / 0.02) - 0.5 * np.exp(-((yy - 0.75) ** 2 + (xx - 0.7) ** 2) / 0.01)
    m = m + 0.01 * rng.normal(size=m.shape)
    m[5, 5] = outlier
    return np.stack([m / 3] * 3)


@pytest.mark.parametrize("percentile", [90.0, 95.5, 99.0, 100.0])
def test_clip_value_is_numpys_percentile_of_the_magnitudes(percentile: float) -> None:
    attr = _blob()
    summed = attr.sum(axis=0, dtype=np.float64)
    assert clip_value(summed, percentile=percentile) == np.percentile(np.abs(summed), percentile)
    assert heatmap_tile(attr, percentile=percentile).clip == np.percentile(np.abs(summed), percentile)
    assert clip_value(summed, mode="positive", percentile=percentile) == np.percentile(
        np.maximum(summed, 0), percentile
    )
    assert clip_value(summed, percentile=100.0) == np.abs(summed).max() == 50.0


def test_sparse_maps_clip_at_the_percentile_of_their_non_zero_values() -> None:
    m = np.zeros((20, 20))
    m[3, 4], m[7, 7], m[9, 1] = 2.0, -4.0, 8.0  # 99% of zeros
    assert np.percentile(np.abs(m), 99) == 0.0
    assert clip_value(m, percentile=99.0) == np.percentile([2.0, 4.0, 8.0], 99.0)
    with pytest.raises(ParameterError, match="percentile"):
        clip_value(m, percentile=0.0)
    with pytest.raises(ParameterError, match="percentile"):
        clip_value(m, percentile=101.0)


def test_values_beyond_the_clip_saturate_and_keep_their_sign() -> None:
    summed = channel_sum(_blob())
    scaled, clip = robust_scale(summed, percentile=99.0)
    assert scaled.min() >= -1.0 and scaled.max() == 1.0
    np.testing.assert_array_equal(scaled[np.abs(summed) >= clip], np.sign(summed[np.abs(summed) >= clip]))
    inside = np.abs(summed) < clip
    np.testing.assert_allclose(scaled[inside], summed[inside] / clip)


def test_one_outlier_no_longer_hides_the_map() -> None:
    """Dividing by the maximum lets one pixel wash out the map; the 99th-percentile clip and the
    square-root opacity tint most of the blob, visibly (over 10/255) against the dimmed image."""
    attr = _blob()
    image = np.random.default_rng(4).random((48, 48, 3)) * 0.3 + 0.35
    base = to_uint8(dimmed_grey(image))
    robust = heatmap_tile(attr, image=image)
    by_max = heatmap_tile(attr, image=image, percentile=100.0)
    blob = np.abs(channel_sum(attr)) > 0.1 * np.percentile(np.abs(channel_sum(attr)), 99)
    share_robust = tinted_share(robust.rgb[blob], base[blob])
    share_by_max = tinted_share(by_max.rgb[blob], base[blob])
    assert share_robust > 0.95 and share_by_max < 0.5 * share_robust
    # and over the whole tile, far more than the 10% the dashboard promises
    assert tinted_share(robust.rgb, base) > 0.3


def test_blend_opacity_grows_as_the_square_root_of_the_value() -> None:
    image = np.full((1, 4, 3), 0.5)
    scaled = np.array([[0.0, 0.01, 0.25, 1.0]])
    out = blend(scaled, cmap="hot", image=image, alpha=0.8)
    base = dimmed_grey(image)
    np.testing.assert_allclose(out[0, 0], base[0, 0])  # no value, no colour
    heat = HOT(scaled)
    for k, weight in ((1, 0.08), (2, 0.4), (3, 0.8)):
        np.testing.assert_allclose(out[0, k], (1 - weight) * base[0, k] + weight * heat[0, k])
    # signed maps: a weak value takes a light shade of its sign's colour, not white
    weak = blend(np.array([[0.05, -0.05]]), cmap="diverging", alpha=1.0)
    assert weak[0, 0, 0] > weak[0, 0, 2] and weak[0, 1, 2] > weak[0, 1, 0]
    with pytest.raises(ParameterError):
        blend(scaled, cmap="hot", alpha=1.5)


def test_the_sequential_map_starts_pale_not_black() -> None:
    assert min(HOT(np.array([0.0]))[0]) > 0.6  # pale yellow
    assert HOT(np.array([1.0]))[0].tolist()[0] > 0.4 and HOT(np.array([1.0]))[0].tolist()[2] < 0.2  # dark red


def test_colour_bar_numbers_and_colours() -> None:
    assert colorbar_labels(0.0123) == ("-0.0123", "0", "+0.0123")
    assert colorbar_labels(2.5e-5, mode="positive") == ("0", "+1.25e-05", "+2.5e-05")
    bar = colorbar(0.0123, width=200)
    assert bar.dtype == np.uint8 and bar.shape[1] == 200
    top = bar[2].astype(int)
    assert top[1][2] > top[1][0] + 40  # blue (against the class) at the left end
    assert top[-2][0] > top[-2][2] + 40  # red (evidence for it) at the right end
    text = bar[bar.shape[0] // 2 + 4 :]
    assert (text < 100).any(axis=-1).sum() > 30  # the numbers are written under the colours
    assert colorbar(0.0123, width=200).tobytes() != colorbar(0.5, width=200).tobytes()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError):
            colorbar(bad)


@pytest.mark.parametrize(
    ("m", "status"),
    [
        (np.zeros((6, 6)), Status.NO_SIGNAL),
        (np.full((6, 6), np.nan), Status.NUMERICAL_ERROR),
        (np.where(np.eye(6) > 0, np.inf, 1.0), Status.NUMERICAL_ERROR),
    ],
)
def test_degenerate_maps_render_grey_with_no_scale(m: np.ndarray, status: Status) -> None:
    image = np.random.default_rng(0).random((6, 6, 3))
    for percentile in (90.0, 99.0, 100.0):
        tile = render_map(m, image=image, percentile=percentile)
        assert tile.status is status and (tile.rgb == NEUTRAL_GREY).all() and np.isnan(tile.clip)
        assert tile.caption == ("no signal" if status is Status.NO_SIGNAL else "numerical error")
    assert np.isnan(shared_clip([m, m]))
    with pytest.raises(ParameterError):
        clip_value(m)


def test_a_shared_clip_draws_maps_on_one_scale() -> None:
    strong, weak = channel_sum(_blob(outlier=1.0)), 0.1 * channel_sum(_blob(outlier=1.0))
    clip = shared_clip([strong, weak, np.zeros_like(strong)])
    assert clip == np.percentile(np.abs(np.concatenate([strong.ravel(), weak.ravel()])), 99.0)
    a, b = render_map(strong, clip=clip), render_map(weak, clip=clip)
    assert a.clip == b.clip == clip
    assert np.abs(255 - b.rgb.astype(int)).sum() < np.abs(255 - a.rgb.astype(int)).sum()  # the weak map is fainter
