"""Parameters: NaN and infinities refused everywhere, whole numbers stay whole, caps named."""

from __future__ import annotations

import math

import pytest

from xaicore.cli.main import main
from xaicore.errors import ParameterError
from xaicore.explainers.registry import Param, get_method


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
def test_non_finite_numbers_are_refused_by_every_float_parameter(value) -> None:
    with pytest.raises(ParameterError, match="noise must be a finite number"):
        get_method("smoothgrad").resolve_params({"noise": value})


@pytest.mark.parametrize("value", [2.5, "2.5", math.nan, "inf", True, "many", None])
def test_whole_number_parameters_take_whole_numbers_only(value) -> None:
    with pytest.raises(ParameterError, match="steps must be a .*whole number"):
        get_method("integrated_gradients").resolve_params({"steps": value})


@pytest.mark.parametrize("value,expected", [(32, 32), (32.0, 32), ("32", 32), (" 8 ", 8)])
def test_whole_numbers_in_any_spelling_are_accepted(value, expected) -> None:
    assert get_method("integrated_gradients").resolve_params({"steps": value})["steps"] == expected


def test_every_cap_is_named_in_its_message() -> None:
    with pytest.raises(ParameterError, match=r"steps must be at most 1024; got 5000"):
        get_method("integrated_gradients").resolve_params({"steps": 5000})
    with pytest.raises(ParameterError, match=r"samples must be at most 1024; got 100000"):
        get_method("smoothgrad").resolve_params({"samples": 100000})
    with pytest.raises(ParameterError, match=r"noise must be at least 0.0; got -1"):
        get_method("smoothgrad").resolve_params({"noise": -1})
    assert Param("x", 0.5, "").validate("0.25") == 0.25


def test_every_registered_number_parameter_refuses_nan() -> None:
    from xaicore.explainers.registry import list_methods

    checked = 0
    for name in list_methods():
        for param in get_method(name).params:
            if type(param.default) in (int, float):
                with pytest.raises(ParameterError, match="finite"):
                    param.validate(math.nan)
                checked += 1
    assert checked >= 8


def test_cli_refuses_nan_and_fractional_steps_in_one_line(tmp_path, capsys) -> None:
    out = str(tmp_path / "o")
    assert (
        main(["explain", "shape: star", "--methods", "smoothgrad", "--param", "smoothgrad.noise=nan", "--out", out])
        == 2
    )
    assert capsys.readouterr().err == "error: noise must be a finite number, not nan.\n"
    assert (
        main(
            [
                "explain",
                "shape: star",
                "--methods",
                "integrated_gradients",
                "--param",
                "integrated_gradients.steps=2.5",
                "--out",
                out,
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == ("error: steps must be a whole number, not 2.5; it is not rounded for you.\n")


def test_cli_seeds_cap_is_stated(tmp_path, capsys) -> None:
    assert main(["sanity", "shape: star", "--seeds", "1000000", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "error: --seeds 1,000,000 is over the cap of 100 seeds; 5 to 10 already show the spread.\n"
    )


def test_library_seeds_cap_is_stated() -> None:
    import numpy as np

    from tests.helpers.explain_models import tiny_bundle
    from xaicore.checks.sanity import run_sanity

    image = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(ParameterError, match=r"1,000,000 seeds were asked for; a check takes at most 100 seeds"):
        run_sanity(tiny_bundle(seed=0), image, methods=["saliency"], seeds=range(1_000_000))
    with pytest.raises(ParameterError, match="Seeds must be whole numbers"):
        run_sanity(tiny_bundle(seed=0), image, methods=["saliency"], seeds=(0, 1.5))


@pytest.mark.parametrize(
    "argv,words",
    [
        (["faithfulness", "shape: star", "--step", "nan"], "step_fraction must be in (0, 1]"),
        (["gax", "shape: star", "--target-co", "nan"], "target_co must be a finite number"),
        (["gax", "shape: star", "--lr", "inf"], "lr must be a positive number"),
        (["sanity", "shape: star", "--threshold", "nan"], "The SSIM threshold must be in (0, 1]"),
    ],
)
def test_nan_in_other_commands_is_refused(argv, words, tmp_path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err
