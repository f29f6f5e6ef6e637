"""What the model saw: the preprocessing rules of the bundles, checked against torchvision's own
weight transforms (reference: ``ResNet18_Weights.DEFAULT.transforms()``, undone normalization),
the old straight resize, and the geometry of the kept box; masks and records follow the crop."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata
from torchvision.models import ResNet18_Weights

from tests.helpers.explain_models import tiny_bundle
from xaicore.checks.discriminative import compare_classes
from xaicore.data.imagesets import load_image_set
from xaicore.errors import ParameterError
from xaicore.explainers.api import explain
from xaicore.models import zoo
from xaicore.models.loading import load_model
from xaicore.models.preprocess import Preprocess
from xaicore.render.input_view import input_view, mark_box, upscale_nearest


def photo(height: int = 200, width: int = 300) -> np.ndarray:
    """A natural photo (scikit-image's chelsea, 451x300) cut to ``width`` x ``height``, float32 in [0, 1]."""
    cat = skdata.chelsea().astype(np.float32) / 255.0
    top, left = (cat.shape[0] - height) // 2, (cat.shape[1] - width) // 2
    return np.ascontiguousarray(cat[top : top + height, left : left + width])


@pytest.fixture(scope="module")
def resnet():
    return load_model("resnet18", weights=None, device="cpu")


@pytest.fixture(scope="module")
def default():
    return load_model("default", device="cpu")


def torchvision_pixels(image: np.ndarray) -> np.ndarray:
    """torchvision's own ResNet-18 transform of ``image``, with its normalization undone."""
    transform = ResNet18_Weights.DEFAULT.transforms()
    out = transform(torch.from_numpy(image).permute(2, 0, 1).contiguous())
    mean = torch.tensor(transform.mean).view(3, 1, 1)
    std = torch.tensor(transform.std).view(3, 1, 1)
    return (out * std + mean).permute(1, 2, 0).numpy()


def test_resnet18_rule_is_read_from_its_weights(resnet):
    rule = resnet.preprocess
    assert (rule.mode, rule.resize, rule.input_size, rule.interpolation) == ("resize_crop", 256, (224, 224), "bilinear")
    assert "ResNet18_Weights.IMAGENET1K_V1.transforms()" in rule.origin and "random weights" in rule.origin


def test_resnet18_photo_matches_torchvision_transform(resnet):
    image = photo(200, 300)
    x = resnet.to_input(image)
    assert tuple(x.shape) == (1, 3, 224, 224)
    ours = x[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, torchvision_pixels(image), atol=1e-6, rtol=0)
    portrait = photo(300, 200)
    np.testing.assert_allclose(resnet.preprocess.apply(portrait)[0], torchvision_pixels(portrait), atol=1e-6, rtol=0)


def test_crop_box_of_a_300x200_photo(resnet):
    framing = resnet.preprocess.frame(200, 300)
    # shorter side 200 -> 256, so 300 -> 384; the centre 224x224 starts at row (256 - 224) / 2 = 16 and
    # column (384 - 224) / 2 = 80, which are 16 * 200 / 256 = 12.5 and 80 * 300 / 384 = 62.5 in the photo
    assert framing.resized_size == (256, 384)
    assert framing.box == pytest.approx((12.5, 62.5, 187.5, 237.5))
    assert (framing.cropped, framing.padded, framing.stretched, framing.unchanged) == (True, False, False, False)
    assert framing.pixel_box() == (12, 62, 188, 238)


def test_mask_follows_the_crop(resnet):
    inside = np.zeros((200, 300), dtype=bool)
    inside[13:187, 64:236] = True  # within the kept rows 12.5 .. 187.5 and columns 62.5 .. 237.5
    assert resnet.preprocess.apply_mask(inside)[2:-2, 2:-2].all()
    outside = np.zeros((200, 300), dtype=bool)
    outside[:, :60] = True
    outside[:, 240:] = True
    outside[:11] = True
    assert not resnet.preprocess.apply_mask(outside).any()
    # the image's pixels follow the same geometry: a bright stripe left of the box is cut away
    image = np.zeros((200, 300, 3), dtype=np.float32)
    image[:, :60] = 1.0
    assert resnet.to_input(image).max() == 0.0


def test_default_model_keeps_its_straight_resize(default):
    image = photo(200, 300)
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    old = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    assert torch.equal(default.to_input(image), old.contiguous())
    framing = default.preprocess.frame(200, 300)
    assert (framing.cropped, framing.padded, framing.stretched) == (False, False, True)
    assert framing.box == (0.0, 0.0, 200.0, 300.0)


@pytest.mark.parametrize("which", ["resnet", "default"])
def test_an_image_at_the_input_size_is_used_bit_for_bit(which, resnet, default):
    bundle = resnet if which == "resnet" else default
    h, w = bundle.input_size
    image = np.random.default_rng(3).random((h, w, 3), dtype=np.float32)
    x = bundle.to_input(image)
    assert torch.equal(x[0].permute(1, 2, 0), torch.from_numpy(image))
    batch = np.stack([image, image[::-1]])
    assert torch.equal(bundle.to_input(batch), torch.from_numpy(batch).permute(0, 3, 1, 2))
    framing = bundle.preprocess.frame(h, w)
    assert framing.unchanged and framing.notice() == ""


def test_notice_says_cropped_only_when_it_was(resnet, default):
    cropped = resnet.preprocess.frame(300, 451).notice()
    assert cropped == (
        "The image was resized to 256 px on its shorter side and centre-cropped to 224x224: "
        "the model did not see the parts outside the box."
    )
    assert resnet.preprocess.frame(224, 224).notice() == ""
    stretched = default.preprocess.frame(300, 451).notice()
    assert "crop" not in stretched and "without keeping its proportions" in stretched
    assert default.preprocess.frame(128, 128).notice() == ""  # square, only resized
    assert default.preprocess.frame(128, 128).summary() == "Model input 64x64: the 128x128 image resized to it."


def test_padding_is_reported_and_the_box_is_the_whole_side():
    rule = Preprocess(input_size=(224, 448), mode="resize_crop", resize=224, origin="test")
    framing = rule.frame(300, 300)  # resized to 224x224, padded to 448 wide
    assert (framing.cropped, framing.padded) == (False, True)
    assert framing.box == (0.0, 0.0, 300.0, 300.0)
    assert "padded with black to 448x224" in framing.notice() and "crop" not in framing.notice()
    out, _ = rule.apply(np.ones((300, 300, 3), dtype=np.float32))
    assert out.shape == (224, 448, 3) and out[:, :112].max() == 0.0 and out[:, 112:336].min() > 0.999


def test_checkpoint_rule_and_a_loaded_checkpoint(tmp_path):
    rule = Preprocess.for_checkpoint((96, 96))
    framing = rule.frame(100, 200)
    assert (rule.mode, rule.resize, framing.resized_size, framing.cropped) == ("resize_crop", 96, (96, 192), True)
    net = zoo.build_net("mobilenet_v3_small", num_classes=3)
    path = tmp_path / "mine.pt"
    torch.save(net.state_dict(), path)
    bundle = load_model(path, arch="mobilenet_v3_small", input_size=96, device="cpu")
    assert bundle.preprocess == Preprocess.for_checkpoint((96, 96))
    assert tuple(bundle.to_input(photo(100, 200)).shape) == (1, 3, 96, 96)


def test_torchvision_rule_scales_with_another_input_size():
    rule = Preprocess.from_weights(ResNet18_Weights.DEFAULT, input_size=(112, 112))
    assert (rule.input_size, rule.resize) == ((112, 112), 128)
    assert "scaled to the input size 112x112" in rule.origin


def test_bundle_refuses_a_rule_of_another_size():
    bundle = tiny_bundle()
    assert bundle.preprocess == Preprocess.direct((16, 16))
    with pytest.raises(ParameterError, match="preprocessing makes"):
        dataclasses.replace(bundle, preprocess=Preprocess.direct((32, 32)))


def cropping_tiny():
    return dataclasses.replace(tiny_bundle(), preprocess=Preprocess.for_checkpoint((16, 16)))


def test_explain_draws_over_the_model_input_and_records_the_crop():
    bundle = cropping_tiny()
    image = np.random.default_rng(0).random((20, 40, 3), dtype=np.float32)
    result = explain(bundle, image, methods=["saliency"], target=0)
    np.testing.assert_array_equal(result.image, bundle.to_input(image)[0].permute(1, 2, 0).numpy())
    record = json.loads(json.dumps(result.record()))
    pre = record["provenance"]["preprocessing"]
    assert pre["mode"] == "resize_crop" and pre["cropped"] is True and pre["source_size"] == [20, 40]
    assert pre["box"] == [0.0, 10.0, 20.0, 30.0]  # 20x40 -> 16x32, centre 16 columns = original 10..30
    assert "centre-cropped to 16x16" in pre["notice"]


def test_class_comparison_masks_follow_the_crop():
    bundle = cropping_tiny()
    image = np.random.default_rng(1).random((20, 40, 3), dtype=np.float32)
    masks = np.zeros((2, 20, 40), dtype=bool)
    masks[0, :, :10] = True  # left of the kept box: nothing of it is seen
    masks[1, 5:15, 12:28] = True
    result = compare_classes(bundle, image, methods=("saliency",), classes=(0, 1), masks=masks, mask_labels=(0, 1))
    assert result.masks.shape == (2, 16, 16)
    assert not result.masks[0].any()
    np.testing.assert_array_equal(result.masks[1], bundle.preprocess.apply_mask(masks[1]))
    assert result.provenance.preprocessing["cropped"] is True


def test_image_sets_load_through_the_same_rule(resnet):
    image = photo(200, 300)
    mask = np.zeros((200, 300), dtype=bool)
    mask[:, :60] = True
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, array in (
            ("cat/a.png", (image * 255).round().astype(np.uint8)),
            ("cat/a.mask.png", mask.astype(np.uint8) * 255),
        ):
            encoded = io.BytesIO()
            Image.fromarray(array).save(encoded, format="PNG")
            zf.writestr(name, encoded.getvalue())
    loaded = load_image_set(buffer.getvalue(), class_names=("cat",), preprocess=resnet.preprocess)
    item = loaded.items[0]
    assert item.array.shape == (224, 224, 3)
    original = np.asarray(Image.open(io.BytesIO(zipfile.ZipFile(buffer).read("cat/a.png"))), dtype=np.float32) / 255
    np.testing.assert_array_equal(item.array, resnet.to_input(original)[0].permute(1, 2, 0).numpy())
    assert item.mask is not None and not item.mask.any()  # the masked stripe lies outside the crop
    with pytest.raises(ParameterError, match="size or preprocess"):
        load_image_set(buffer.getvalue(), size=(224, 224), preprocess=resnet.preprocess)


def test_input_view_tile_and_marked_original(resnet, default):
    image = photo(300, 451)
    view = input_view(resnet, image)
    assert view.scale == 2 and view.tile.shape == (448, 448, 3)
    np.testing.assert_array_equal(view.tile[::2, ::2], np.round(view.model_input * 255).astype(np.uint8))
    assert view.notice.startswith("The image was resized to 256 px")
    assert view.caption == "Model input 224x224: the 451x300 image, shorter side to 256 px, centre crop."
    top, left, bottom, right = view.framing.pixel_box()
    assert (top, bottom) == (19, 281) and left == 94 and right == 357
    assert view.original[150, 30].max() < 0.5 * (image[150, 30].max() * 255)  # dimmed outside the box
    assert np.array_equal(view.original[150, 200], np.round(image[150, 200] * 255).astype(np.uint8))
    square = input_view(default, photo(64, 64))
    assert square.scale == 4 and square.notice == "" and "as it is" in square.caption


def test_upscale_and_mark_box_helpers():
    tile = upscale_nearest(np.arange(4, dtype=np.uint8).reshape(2, 2, 1), 3)
    assert tile.shape == (6, 6, 1) and (tile[:3, :3] == 0).all() and (tile[3:, 3:] == 3).all()
    marked = mark_box(np.full((10, 10, 3), 200, np.uint8), (2, 2, 8, 8), line=1)
    assert tuple(marked[1, 5]) == (255, 196, 0) and marked[5, 5, 0] == 200 and marked[0, 0, 0] == 80
    with pytest.raises(ParameterError):
        upscale_nearest(tile, 0)
