"""explain(): predictions, statuses, seeding, shared passes, error handling, saved files."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.explain_models import TinyConvNet, hooks_left, images, make_bundle, tiny_bundle
from xaicore.errors import ParameterError, UnknownNameError
from xaicore.explainers.api import attribute, attribute_many, explain, method_seed
from xaicore.explainers.registry import list_methods, single_pass_methods
from xaicore.explainers.results import Status
from xaicore.models.bundle import fingerprint

FAST = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "deeplift_shap": {"references": 2},
    "gradient_shap": {"samples": 3},
    "occlusion": {"window": 4, "stride": 4},
}


def _image(seed: int = 0, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).random((*size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(seed=21, unavailable={"deconvolution": "Deconvolution would be wrong here: functional ReLU."})


@pytest.fixture(scope="module")
def full(bundle):
    return explain(bundle, _image(), params=FAST, seed=3)


def test_predictions_are_the_top5_softmax_and_target_defaults_to_the_best(bundle, full) -> None:
    x = bundle.to_input(_image())
    probs = torch.softmax(bundle.logits(x)[0], dim=0)
    order = torch.argsort(probs, descending=True)
    assert [p.index for p in full.predictions] == order[:4].tolist()  # 4 classes: top-5 is all of them
    assert [p.probability for p in full.predictions] == pytest.approx(probs[order].tolist())
    assert full.target == int(order[0]) and full.target_label == bundle.labels[full.target]
    assert full.image.shape == (16, 16, 3)
    np.testing.assert_array_equal(full.image, x[0].permute(1, 2, 0).numpy())


def test_predictions_the_caller_has_save_the_forward_pass_and_are_kept(bundle, full) -> None:
    plain: list[int] = []  # forward passes made for no gradient

    def forward(_module, inputs, _output) -> None:
        if not inputs[0].requires_grad:
            plain.append(int(inputs[0].shape[0]))

    handle = bundle.model.register_forward_hook(forward)
    try:
        given = explain(bundle, _image(), methods=["saliency"], target=full.target, predictions=full.predictions)
        assert plain == [] and given.predictions == full.predictions
        again = explain(bundle, _image(), methods=["saliency"], predictions=full.predictions)  # no target: argmax
        assert plain == [1] and again.target == full.target and again.predictions == full.predictions
        alone = explain(bundle, _image(), methods=["saliency"], target=full.target)
        assert plain == [1, 1] and alone.predictions == full.predictions
        np.testing.assert_array_equal(given.methods[0].attribution, alone.methods[0].attribution)
    finally:
        handle.remove()


def test_every_method_gets_a_result_and_unavailable_ones_say_why(bundle, full) -> None:
    assert [m.method for m in full.methods] == list_methods()
    by = full.by_method()
    assert by["deconvolution"].status is Status.UNAVAILABLE
    assert by["deconvolution"].attribution is None and "functional ReLU" in by["deconvolution"].reason
    # this model's CAM layer is a convolution before its ReLU, mostly negative here: Score-CAM's
    # positive combination of it (weights summing to 1) is negative everywhere, as torchcam's is
    assert by["scorecam"].status is Status.NO_SIGNAL
    for m in full.methods:
        if m.method not in ("deconvolution", "scorecam"):
            assert m.status is Status.OK, (m.method, m.reason)
            assert m.attribution.shape == (3, 16, 16) and m.attribution.dtype == np.float32
            assert m.runtime_s >= 0 and m.target == full.target
    assert by["integrated_gradients"].params == {"steps": 4}
    assert by["deeplift"].delta is not None and by["saliency"].delta is None
    assert hooks_left(bundle.model) == []
    assert fingerprint(bundle.model) == bundle.fingerprint


def test_explain_equals_attribute(bundle, full) -> None:
    x = bundle.to_input(_image())
    for name in ("smoothgrad", "occlusion", "deeplift"):
        single = attribute(bundle, x, method=name, target=full.target, seed=3, params=FAST.get(name))
        np.testing.assert_array_equal(full.by_method()[name].attribution, single.values[0].numpy())


def test_shared_passes_equal_separate_computations(bundle) -> None:
    names = ["saliency", "input_x_gradient", "gradcam", "guided_backprop", "guided_gradcam"]
    together = explain(bundle, _image(1), methods=names, target=2).by_method()
    assert set(together["saliency"].shared_with) == {"input_x_gradient", "gradcam", "guided_backprop", "guided_gradcam"}
    assert "guided_backprop" in together["guided_gradcam"].shared_with
    for name in names:
        alone = explain(bundle, _image(1), methods=[name], target=2).by_method()[name]
        assert alone.shared_with == ()
        np.testing.assert_allclose(together[name].attribution, alone.attribution, rtol=1e-5, atol=1e-7)
    # two members of the family are enough to share; Guided Grad-CAM reuses the pass's CAM map
    pair = explain(bundle, _image(1), methods=["guided_gradcam", "input_x_gradient"], target=2).by_method()
    assert pair["guided_gradcam"].shared_with == ("input_x_gradient",)
    np.testing.assert_allclose(
        pair["guided_gradcam"].attribution, together["guided_gradcam"].attribution, rtol=1e-5, atol=1e-7
    )


def test_attribute_many_shares_and_matches_attribute(bundle) -> None:
    x = images(3, (16, 16), seed=4)
    target = torch.tensor([0, 1, 2])
    many = attribute_many(bundle, x, methods=["saliency", "gradcam", "Input x Gradient"], target=target)
    assert list(many) == ["saliency", "gradcam", "input_x_gradient"]
    for name, result in many.items():
        torch.testing.assert_close(result.values, attribute(bundle, x, method=name, target=target).values)


def test_a_method_result_does_not_depend_on_the_other_methods(bundle) -> None:
    alone = explain(bundle, _image(2), methods=["gradient_shap"], params=FAST, seed=9).by_method()
    mixed = explain(bundle, _image(2), methods=["smoothgrad", "gradient_shap"], params=FAST, seed=9).by_method()
    np.testing.assert_array_equal(alone["gradient_shap"].attribution, mixed["gradient_shap"].attribution)
    assert method_seed(9, "smoothgrad") != method_seed(9, "gradient_shap")


def test_bad_requests_fail_before_any_work(bundle) -> None:
    calls: list[tuple] = []

    def progress(*args) -> None:
        calls.append(args)

    with pytest.raises(ParameterError, match="out of range"):
        explain(bundle, _image(), methods=["saliency"], target=7, progress=progress)
    with pytest.raises(UnknownNameError, match="No explanation method named 'sailency'"):
        explain(bundle, _image(), methods=["sailency"], progress=progress)
    with pytest.raises(ParameterError, match="steps"):
        explain(
            bundle,
            _image(),
            methods=["integrated_gradients"],
            params={"integrated_gradients": {"steps": -1}},
            progress=progress,
        )
    with pytest.raises(ParameterError, match="not an explanation method"):
        explain(bundle, _image(), methods=["saliency"], params={"saliencyy": {}}, progress=progress)
    with pytest.raises(ParameterError, match="baseline"):
        explain(bundle, _image(), methods=["saliency"], baseline="white", progress=progress)
    assert calls == []


def test_target_by_label(bundle) -> None:
    assert explain(bundle, _image(), methods=["saliency"], target="class 2").target == 2


def test_a_failing_method_is_reported_and_the_others_still_run(bundle) -> None:
    result = explain(bundle, _image(), methods=["occlusion", "saliency"], params={"occlusion": {"window": 40}})
    by = result.by_method()
    assert by["occlusion"].status is Status.FAILED and by["occlusion"].attribution is None
    assert "larger than the image" in by["occlusion"].reason
    assert by["saliency"].status is Status.OK


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("kaboom")
        return x


def test_an_unexpected_exception_becomes_failed_with_a_plain_reason() -> None:
    net = TinyConvNet(seed=1)
    net.features.insert(0, _Boom())
    bundle = make_bundle(net, input_size=(16, 16), cam_layer="net.features.4")
    by = explain(bundle, _image(), methods=["saliency", "gradcam", "occlusion"], params=FAST).by_method()
    assert by["saliency"].status is Status.FAILED and by["saliency"].reason == "Saliency failed: RuntimeError: kaboom"
    assert by["gradcam"].status is Status.FAILED
    assert by["occlusion"].status is Status.OK  # forward passes only
    assert hooks_left(bundle.model) == []


def test_all_zero_attributions_are_no_signal() -> None:
    net = TinyConvNet(seed=2)
    with torch.no_grad():
        net.head[2].weight.zero_()  # every logit is its bias: nothing depends on the image
    bundle = make_bundle(net, input_size=(16, 16), cam_layer="net.features.3")
    result = explain(bundle, _image(), params=FAST)
    for m in result.methods:
        assert m.status is Status.NO_SIGNAL, m.method
        assert "zero" in m.reason and not m.attribution.any()


class _Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)  # finite forward, infinite gradient at black pixels


def test_non_finite_attributions_are_numerical_errors() -> None:
    net = TinyConvNet(seed=3)
    net.features.insert(0, _Sqrt())
    bundle = make_bundle(net, input_size=(16, 16), cam_layer="net.features.4")
    image = _image(3, (16, 16))
    image[4:8, 4:8] = 0.0
    by = explain(bundle, image, methods=["saliency", "input_x_gradient", "occlusion"], params=FAST).by_method()
    assert by["saliency"].status is Status.NUMERICAL_ERROR and "NaN or infinite" in by["saliency"].reason
    assert by["occlusion"].status is Status.OK


def test_progress_is_reported_before_each_method(bundle) -> None:
    seen: list[tuple[int, int, str]] = []
    explain(
        bundle,
        _image(),
        methods=["occlusion", "deeplift", "deconvolution"],
        params=FAST,
        progress=lambda d, t, title: seen.append((d, t, title)),
    )
    # Deconvolution is unavailable (counted at once); then the cheapest first: DeepLift (3 passes)
    # before Occlusion (a forward pass per patch position).
    assert seen == [(1, 3, "DeepLift"), (2, 3, "Occlusion"), (3, 3, "")]


def test_each_method_is_handed_over_as_it_finishes_cheapest_first(bundle, full) -> None:
    handed: list = []
    result = explain(bundle, _image(), params=FAST, seed=3, on_result=handed.append)
    names = [h.methods[0].method for h in handed]
    assert sorted(names) == sorted(list_methods()) and all(len(h.methods) == 1 for h in handed)
    assert names[0] == "deconvolution"  # unavailable: reported before any work
    # the shared gradient pass first (its available users), the rest in order of their work
    shared = {n for n in single_pass_methods() if n not in bundle.unavailable}
    assert len(shared) == 8 and set(names[1 : 1 + len(shared)]) == shared
    assert names.index("occlusion") > names.index("integrated_gradients") > names.index("saliency")
    assert [m.method for m in result.methods] == list_methods()  # the result keeps the asked order
    times = [h.total_runtime_s for h in handed]
    assert times == sorted(times) and times[-1] <= result.total_runtime_s
    for part in handed:
        item = part.methods[0]
        final, alone = result.by_method()[item.method], full.by_method()[item.method]
        assert item.status == final.status == alone.status
        if item.attribution is not None:
            np.testing.assert_array_equal(item.attribution, final.attribution)
            np.testing.assert_array_equal(item.attribution, alone.attribution)
        assert part.image_hash == result.image_hash and part.target == result.target
        assert part.predictions == result.predictions and part.provenance == result.provenance


class _Stop(Exception):
    pass


def test_a_callback_that_raises_stops_the_run_and_leaves_the_model_as_it_was(bundle) -> None:
    handed: list[str] = []

    def stop_after_three(part) -> None:
        handed.append(part.methods[0].method)
        if len(handed) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        explain(bundle, _image(), params=FAST, on_result=stop_after_three)
    assert len(handed) == 3 and "occlusion" not in handed
    assert hooks_left(bundle.model) == []
    acquired = []
    worker = threading.Thread(target=lambda: acquired.append(bundle.lock.acquire(timeout=5)) or bundle.lock.release())
    worker.start()
    worker.join()
    assert acquired == [True]  # the model's lock was released on the way out


class _CheckedLock:
    """An RLock that records whether it is held; the model checks it on every forward."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.depth = 0

    def __enter__(self):
        self._lock.acquire()
        self.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self.depth -= 1
        self._lock.release()


class _NeedsLock(nn.Module):
    def __init__(self, lock: _CheckedLock) -> None:
        super().__init__()
        self.lock = lock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lock.depth == 0:
            raise RuntimeError("the shared model ran without its lock")
        return x


def test_the_shared_model_runs_under_the_bundle_lock() -> None:
    lock = _CheckedLock()
    net = TinyConvNet(seed=4)
    net.features.insert(0, _NeedsLock(lock))
    with lock:
        bundle = make_bundle(net, input_size=(16, 16), cam_layer="net.features.4", lock=lock)
    methods = [m for m in list_methods() if m != "lrp"]  # LRP runs on a throw-away copy, not the shared model
    result = explain(bundle, _image(), methods=methods, params=FAST)
    assert all(m.status is Status.OK for m in result.methods), [(m.method, m.reason) for m in result.methods]


def test_save_writes_the_documented_files(bundle, full, tmp_path) -> None:
    npz_path, json_path = full.save(tmp_path / "out")
    with np.load(npz_path) as npz:
        assert sorted(npz.files) == sorted(m for m in list_methods() if m != "deconvolution")
        np.testing.assert_array_equal(npz["gradcam"], full.by_method()["gradcam"].attribution)
    record = json.loads(json_path.read_text())
    assert {"image_hash", "target", "target_label", "baseline", "predictions", "methods", "provenance"} <= set(record)
    assert record["provenance"]["model_fingerprint"] == bundle.fingerprint
    assert record["provenance"]["seed"] == 3
    methods = {m["method"]: m for m in record["methods"]}
    assert methods["deconvolution"]["status"] == "unavailable"
    assert methods["smoothgrad"]["params"] == {"samples": 3, "noise": 0.15}
    assert {"runtime_s", "convergence_delta", "reason", "shared_with"} <= set(methods["saliency"])
