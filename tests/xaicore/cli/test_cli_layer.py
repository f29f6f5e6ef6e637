"""``--layer`` in the analysis commands and the CAM layers in ``xai models --show``."""

from __future__ import annotations

import pytest

from tests.helpers.explain_models import tiny_bundle
from xaicore.checks import discriminative, sanity
from xaicore.cli.main import main
from xaicore.explainers import api
from xaicore.models import loading

# the module each command's analysis is looked up in at run time, and its name there
ANALYSES = {
    "sanity": (sanity, "run_sanity"),
    "classes": (discriminative, "compare_classes"),
    "faithfulness": (api, "explain"),
}


class _Reached(Exception):
    pass


@pytest.fixture()
def tiny(monkeypatch):
    bundle = tiny_bundle(seed=2)
    monkeypatch.setattr(loading, "load_model", lambda name, **options: bundle)
    return bundle


@pytest.mark.parametrize("command", sorted(ANALYSES))
def test_the_analysis_gets_the_chosen_layer(command, tiny, monkeypatch, tmp_path) -> None:
    seen: list[str] = []

    def analysis(bundle, *args, **kwargs):
        seen.append(bundle.cam_layer)
        raise _Reached

    module, name = ANALYSES[command]
    monkeypatch.setattr(module, name, analysis)
    argv = [command, "shape: star", "--methods", "gradcam", "--out", str(tmp_path / "o")]
    with pytest.raises(_Reached):
        main([*argv, "--layer", "net.features.0"])
    with pytest.raises(_Reached):
        main(argv)
    assert seen == ["net.features.0", tiny.cam_layer]


@pytest.mark.parametrize("command", ["explain", *sorted(ANALYSES)])
def test_a_layer_that_cams_cannot_use_is_refused_with_the_choices(command, tiny, tmp_path, capsys) -> None:
    argv = [command, "shape: star", "--methods", "gradcam", "--out", str(tmp_path / "o"), "--layer", "net.head.0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'net.head.0' is not a layer CAM methods can use" in err
    assert "net.features.0, net.features.3." in err


def test_models_show_lists_the_cam_layers(capsys) -> None:
    assert main(["models", "--show", "default"]) == 0
    out = capsys.readouterr().out
    assert "  net.features.conv2  32x32x32\n" in out
    assert "  net.features.conv4  64x8x8  (default)\n" in out
