"""Checkpoints that cost far more than their size: each is refused quickly, with a sentence,
before the network is built or any value is read; safetensors loads; every torchvision
classifier's state dict is described on the meta device."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from xaicore.errors import CheckpointError
from xaicore.models import checkpoint, zoo
from xaicore.models.loading import load_model

SMALL = "squeezenet1_1"  # 1.2 M parameters: a real network that builds in well under a second


def _saved(obj: object, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    net = torchvision.models.get_model(SMALL, num_classes=3).eval()
    return {k: v.clone() for k, v in net.state_dict().items()}


def stride_zero_checkpoint(side: int = 40000) -> bytes:
    """About 1.5 kB: four numbers seen as a side x side matrix through stride (0, 0)."""
    return _saved({"fc.weight": torch.arange(4.0).as_strided((side, side), (0, 0)), "fc.bias": torch.zeros(side)[:1]})


# ----------------------------------------------------------------- the files


@pytest.mark.slow  # a fresh Python process that imports torch: about 3 s
def test_stride_zero_view_is_refused_in_a_second_without_allocating_it() -> None:
    """Run in a fresh process, so that its peak memory (VmHWM) belongs to this refusal alone."""
    script = textwrap.dedent(
        """
        import io, time, torch
        from xaicore.errors import CheckpointError
        from xaicore.models.loading import load_model
        buffer = io.BytesIO()
        torch.save({"fc.weight": torch.arange(4.0).as_strided((40000, 40000), (0, 0))}, buffer)
        data = buffer.getvalue()
        start = time.perf_counter()
        try:
            load_model(data, arch="resnet18", device="cpu")
        except CheckpointError as exc:
            message = str(exc)
        elapsed = time.perf_counter() - start
        hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
        print(len(data), elapsed, hwm * 1024, message, sep="\\n")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    size, elapsed, peak, message = done.stdout.strip().split("\n", 3)
    assert int(size) < 2000
    assert float(elapsed) < 1.0
    assert int(peak) < 1.0e9  # the full array would be 6.4 GB
    assert message.startswith("The weights 'fc.weight' are a view of shape (40000, 40000) with stride (0, 0)")
    assert "repeats the same few numbers" in message


def test_a_tiny_file_naming_a_huge_architecture_is_refused_before_building_it(monkeypatch) -> None:
    data = _saved({"conv_proj.weight": torch.zeros(2, 2), "heads.head.weight": torch.zeros(3, 4)})
    assert len(data) < 2500

    def forbidden(*args, **kwargs):
        raise AssertionError("the real network was built")

    monkeypatch.setattr(zoo, "build_net", forbidden)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="does not fit the vit_h_14 architecture: missing keys") as info:
        load_model(data, arch="vit_h_14", device="cpu")
    assert time.perf_counter() - start < 5.0  # describing ViT-H/14 on the meta device
    assert "conv_proj.weight (2, 2) instead of (1280, 3, 14, 14)" in str(info.value)


@pytest.mark.slow  # writing the file takes torch.save about 10 s; refusing it takes milliseconds
def test_two_hundred_thousand_keys_are_refused_before_they_are_rebuilt() -> None:
    base = torch.zeros(200_000)
    data = _saved({f"layer{i}.weight": base[i : i + 1] for i in range(200_000)})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="far more than a state dict of a supported architecture needs"):
        load_model(data, arch="resnet18", device="cpu")
    assert time.perf_counter() - start < 1.0


def test_many_stored_tensors_are_counted_from_the_zip_directory() -> None:
    data = _saved({f"layer{i}.weight": torch.zeros(1) for i in range(6000)})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"This file holds 6,00\d entries, more than the 5,000"):
        checkpoint.read_state_dict(data)
    assert time.perf_counter() - start < 1.0


def test_many_keys_in_a_legacy_file_are_refused_before_they_are_rebuilt() -> None:
    base = torch.zeros(20_000)
    data = _saved({f"k{i}": base[i : i + 1] for i in range(20_000)}, _use_new_zipfile_serialization=False)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="This file holds more than 5,000 tensors"):
        checkpoint.read_state_dict(data)
    assert time.perf_counter() - start < 1.0  # rebuilding them took the safe loader 1.2 s


# ----------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "tensor,words",
    [
        (torch.arange(20.0).as_strided((10, 10), (1, 1)), "whose elements overlap"),
        (torch.arange(40.0).as_strided((10, 10), (3, 1)), "whose elements overlap"),
        (torch.zeros(3).as_strided((5, 3), (0, 1)), "with stride (0, 1)"),
        (torch.zeros(10, 10).to_sparse(), "are stored as a sparse coo tensor, which is not supported"),
        (torch.zeros(4, 4).to_sparse_csr(), "are stored as a sparse csr tensor"),
        (torch.zeros(4, dtype=torch.complex64), "have the type complex64, not a floating-point or integer type"),
        (torch.zeros(4, dtype=torch.bool), "have the type bool"),
        (torch.quantize_per_tensor(torch.zeros(4), 0.1, 0, torch.qint8), "are quantized"),
    ],
)
def test_layouts_that_are_not_a_saved_weight_are_refused_in_a_sentence(tensor, words) -> None:
    with pytest.raises(CheckpointError) as info:
        checkpoint.read_state_dict(_saved({"fc.weight": tensor}))
    assert words in str(info.value) and str(info.value).startswith("The weights 'fc.weight' ")


def test_a_view_past_its_storage_is_refused() -> None:
    beyond = torch.empty(4, device="meta").as_strided((400,), (1,))
    with pytest.raises(CheckpointError, match=r"reach past the end of their data \(400 elements needed, 4 stored\)"):
        checkpoint.check_layout({"fc.weight": beyond})


def test_dense_views_load_channels_last_transposed_and_sliced(small_state) -> None:
    state = dict(small_state)
    key = "features.0.weight"
    state[key] = small_state[key].to(memory_format=torch.channels_last)
    wide = torch.zeros(small_state["classifier.1.bias"].numel() + 5)
    wide[2:5] = small_state["classifier.1.bias"]
    state["classifier.1.bias"] = wide[2:5]
    checkpoint.check_layout({**state, "t": torch.zeros(3, 5).t()})
    bundle = load_model(_saved(state), arch=SMALL, num_classes=3, input_size=64, device="cpu")
    assert bundle.num_classes == 3


def test_too_many_numbers_for_the_architecture_are_refused() -> None:
    with pytest.raises(CheckpointError, match=r"holds 2,000,000 numbers, more than the [\d,]+ of the squeezenet1_1"):
        checkpoint.check_total_elements({"w": torch.zeros(2_000_000)}, limit=1_235_496, arch=SMALL)


def test_whole_numbers_where_weights_belong_are_refused(small_state) -> None:
    state = dict(small_state)
    state["features.0.bias"] = torch.zeros(small_state["features.0.bias"].shape, dtype=torch.int64)
    with pytest.raises(CheckpointError, match="whole numbers where the squeezenet1_1 architecture has weights"):
        load_model(_saved(state), arch=SMALL, num_classes=3, device="cpu")


def test_non_finite_weights_are_checked_after_the_keys(small_state) -> None:
    state = dict(small_state)
    state["features.0.bias"] = torch.full_like(small_state["features.0.bias"], float("nan"))
    with pytest.raises(CheckpointError, match="'features.0.bias' contain NaN"):
        load_model(_saved(state), arch=SMALL, num_classes=3, device="cpu")


# ----------------------------------------------------------------- safetensors


def test_safetensors_is_a_first_class_format(small_state, tmp_path) -> None:
    data = save_safetensors(small_state, metadata={"format": "pt"})
    path = tmp_path / "mine.safetensors"
    path.write_bytes(data)
    from_pt = load_model(_saved(small_state), arch=SMALL, num_classes=3, input_size=64, device="cpu")
    from_bytes = load_model(data, arch=SMALL, num_classes=3, input_size=64, device="cpu")
    from_file = load_model(str(path), arch=SMALL, num_classes=3, input_size=64, device="cpu")
    assert from_pt.fingerprint == from_bytes.fingerprint == from_file.fingerprint
    assert from_file.name == "squeezenet1_1 from mine.safetensors"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(from_file.model(x), from_pt.model(x), rtol=0, atol=0)


def _safetensors_with_header(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + payload


@pytest.mark.parametrize(
    "data,words",
    [
        (
            _safetensors_with_header(
                {f"k{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(200_000)},
                bytes(800_000),
            ),
            "far more than a state dict",
        ),
        (
            _safetensors_with_header({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)),
            "have the type 'C64'",
        ),
        (
            _safetensors_with_header(
                {"w": {"dtype": "F32", "shape": [40000, 40000], "data_offsets": [0, 16]}}, bytes(16)
            ),
            "safetensors file is damaged or incomplete",
        ),
        (
            _safetensors_with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
            "safetensors file is damaged or incomplete",
        ),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "header is not valid JSON"),
    ],
)
def test_bad_safetensors_files_are_refused_in_a_sentence(data, words) -> None:
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=words):
        checkpoint.read_state_dict(data)
    assert time.perf_counter() - start < 2.0


# ----------------------------------------------------------------- every architecture


@pytest.mark.parametrize("arch", zoo.torchvision_names())
def test_every_architecture_is_described_on_the_meta_device_and_a_fitting_state_passes(arch) -> None:
    """A state dict of the expected shapes (meta tensors: nothing allocated) passes every check."""
    expected = zoo.expected_state(arch, num_classes=7)
    head = zoo.head_key(arch)
    assert head is None or expected[head].shape[0] == 7
    fake = {k: torch.empty(spec.shape, dtype=spec.dtype, device="meta") for k, spec in expected.items()}
    checkpoint.check_layout(fake)
    checkpoint.check_total_elements(fake, limit=sum(s.numel for s in expected.values()), arch=arch)
    checkpoint.match_architecture(fake, expected, arch=arch)
    assert checkpoint.resolve_num_classes(fake, head_key=head, num_classes=None, arch=arch) == (7 if head else None)


@pytest.mark.parametrize(
    "arch",
    ["regnet_x_400mf", "regnet_y_400mf", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5"],
)
def test_small_architectures_of_each_kind_load_a_real_state_dict(arch) -> None:
    """RegNets (their meta description used to fail: stage widths via tolist()), SqueezeNet (a
    convolution as classifier: its class count is read from it) and MNASNet (needs its module
    versions, which a state dict loses when unwrapped) included."""
    torch.manual_seed(1)
    net = torchvision.models.get_model(arch, num_classes=4).eval()
    expected = zoo.expected_state(arch, num_classes=4)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: s.shape for k, s in expected.items()}
    bundle = load_model(_saved(net.state_dict()), arch=arch, input_size=64, device="cpu")
    assert bundle.num_classes == 4
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = net(
            (x - torch.tensor(checkpoint_mean()).view(1, 3, 1, 1)) / torch.tensor(checkpoint_std()).view(1, 3, 1, 1)
        )
        torch.testing.assert_close(bundle.model(x), reference, rtol=1e-4, atol=1e-4)


def checkpoint_mean():
    from xaicore.models.loading import IMAGENET_MEAN

    return IMAGENET_MEAN


def checkpoint_std():
    from xaicore.models.loading import IMAGENET_STD

    return IMAGENET_STD


# ----------------------------------------------------------------- fuzz


@st.composite
def damaged_checkpoints(draw, state):
    fmt = draw(st.sampled_from(["zip", "legacy", "safetensors"]))
    if fmt == "safetensors":
        data = bytearray(save_safetensors(state))
    else:
        data = bytearray(_saved(state, _use_new_zipfile_serialization=fmt == "zip"))
    for where, value in draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8)):
        data[int(where * len(data))] = value
    keep = draw(st.one_of(st.none(), st.floats(0, 1)))
    if keep is not None:
        data = data[: int(keep * len(data))]
    return bytes(data)


FUZZ_STATE = {
    "0.weight": torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)),
    "0.bias": torch.zeros(4),
    "2.running_mean": torch.zeros(4),
    "2.num_batches_tracked": torch.tensor(3),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_checkpoints(FUZZ_STATE))
def test_fuzz_damaged_checkpoints_load_or_raise_our_error_only(data) -> None:
    start = time.perf_counter()
    try:
        state = checkpoint.read_state_dict(data)
    except CheckpointError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
    else:
        for value in state.values():  # whatever was accepted is a small, ordinary tensor
            assert value.layout == torch.strided and value.numel() <= 4 * 3 * 3 * 3
    assert time.perf_counter() - start < 2.0


def test_architectures_too_large_for_the_checkpoint_cap_are_not_offered() -> None:
    offered = zoo.checkpoint_architectures(max_bytes=checkpoint.DEFAULT_MAX_BYTES)
    assert sorted(set(zoo.torchvision_names()) - set(offered)) == [
        "convnext_large",
        "regnet_y_128gf",
        "vit_h_14",
        "vit_l_16",
        "vit_l_32",
    ]
    assert zoo.state_dict_bytes("resnet18") == sum(
        v.numel() * v.element_size() for v in torchvision.models.resnet18().state_dict().values()
    )
    assert all(zoo.state_dict_bytes(name) <= checkpoint.DEFAULT_MAX_BYTES for name in offered)
    from dashboard import sidebar

    menu = {"default": "Default", "resnet18": "ResNet-18", sidebar.UPLOAD_MODEL: sidebar.UPLOAD_MODEL}
    choices = sidebar._architectures(menu)
    assert choices[0] == "resnet18" and sorted(choices) == sorted(offered)
