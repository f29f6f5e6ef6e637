"""Intervals of the report card against SciPy's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from xaicore.errors import ParameterError
from xaicore.metrics.intervals import Interval, paired_differences, t_interval, welch_interval, wilson_interval

VALUES = [0.61, 0.42, 0.55, 0.73, 0.38, 0.5, 0.66]


def test_t_interval_equals_scipy():
    iv = t_interval(VALUES)
    x = np.array(VALUES)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert iv.n == 7 and iv.kind == "t"
    assert iv.mean == pytest.approx(x.mean(), abs=1e-15)
    assert iv.std == pytest.approx(x.std(ddof=1), abs=1e-15)
    assert (iv.low, iv.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_t_interval_other_level_and_hand_value():
    # n = 2, values 0 and 2: mean 1, s = sqrt(2), t(0.95, 1) = 6.313751514675041
    iv = t_interval([0.0, 2.0], level=0.9)
    half = 6.313751514675041 * math.sqrt(2) / math.sqrt(2)
    assert (iv.low, iv.high) == (pytest.approx(1 - half), pytest.approx(1 + half))


def test_t_interval_leaves_out_missing_and_non_finite_values():
    assert t_interval([1.0, None, float("nan"), 3.0, float("inf")]) == t_interval([1.0, 3.0])


def test_t_interval_small_samples():
    assert t_interval([]) == Interval(0, None, None, None, None, "t")
    one = t_interval([0.25])
    assert one.mean == 0.25 and one.low is None and not one.defined and one.text() == "0.250 (n=1)"
    flat = t_interval([0.5, 0.5, 0.5])
    assert flat.low == flat.high == 0.5 and flat.std == 0.0


def test_wilson_equals_scipy():
    hits = [True, False, True, True, False, False, True, True, True, False]
    iv = wilson_interval(hits)
    ci = stats.binomtest(6, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert iv.mean == pytest.approx(0.6)
    assert (iv.low, iv.high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))


def test_wilson_does_not_collapse_when_every_image_is_a_hit():
    iv = wilson_interval([1, 1, 1, 1])
    ci = stats.binomtest(4, 4).proportion_ci(method="wilson")
    assert iv.mean == 1.0 and iv.high == pytest.approx(1.0) and iv.low == pytest.approx(ci.low) and iv.low < 0.6


def test_wilson_refuses_values_that_are_not_hits():
    with pytest.raises(ParameterError):
        wilson_interval([0.0, 0.5])


def test_welch_equals_scipy():
    a = [3.1, 2.4, 5.0, 4.2, 3.3]
    b = [1.0, 2.2, 0.4, 1.9]
    iv = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert iv.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (iv.low, iv.high) == (pytest.approx(ci.low, abs=1e-10), pytest.approx(ci.high, abs=1e-10))
    assert iv.n == 9 and iv.kind == "welch"


def test_welch_needs_two_values_per_group():
    assert welch_interval([1.0, 2.0], []).mean is None
    partial = welch_interval([1.0, 2.0], [0.5])
    assert partial.mean == pytest.approx(1.0) and not partial.defined


def test_paired_differences_equal_scipy_paired_interval():
    a = [0.5, 0.7, 0.2, 0.9, 0.4]
    b = [0.3, 0.6, 0.25, 0.5, 0.1]
    iv = t_interval(paired_differences(a, b))
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (iv.low, iv.high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert paired_differences([1.0, None, 2.0], [0.5, 1.0, float("nan")]) == [0.5, None, None]
    with pytest.raises(ParameterError):
        paired_differences([1.0], [1.0, 2.0])


def test_side_of_zero():
    assert Interval(3, 1.0, 0.5, 1.5, 0.1, "t").side() == "above"
    assert Interval(3, -1.0, -1.5, -0.5, 0.1, "t").side() == "below"
    assert Interval(3, 0.1, -0.5, 0.7, 0.1, "t").side() == "overlaps"
    assert Interval(1, 0.1, None, None, None, "t").side() == "unknown"


def test_level_is_checked():
    with pytest.raises(ParameterError):
        t_interval([1.0, 2.0], level=95)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=30))
def test_t_interval_contains_its_mean_and_matches_scipy(values):
    iv = t_interval(values)
    x = np.array(values)
    assert iv.low <= iv.mean <= iv.high
    if x.std(ddof=1) > 1e-9:
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert iv.low == pytest.approx(low, rel=1e-9, abs=1e-9)
        assert iv.high == pytest.approx(high, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.data())
def test_wilson_stays_in_unit_interval_and_matches_scipy(n, data):
    k = data.draw(st.integers(0, n))
    iv = wilson_interval([1] * k + [0] * (n - k))
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert 0.0 <= iv.low <= iv.mean <= iv.high <= 1.0
    assert iv.low == pytest.approx(ci.low, abs=1e-12) and iv.high == pytest.approx(ci.high, abs=1e-12)
