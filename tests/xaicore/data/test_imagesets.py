"""Image sets from folders and zip archives (labels, masks, bad files, zip bombs) and generated sets."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaicore.data import shapes
from xaicore.data.imagesets import ImageSet, generated_test_set, load_image_set, resize_image
from xaicore.errors import ImageLoadError, ParameterError

CLASSES = ("circle", "golden retriever", "square")


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def pixels(seed: int, h: int = 6, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def layout() -> dict[str, bytes]:
    """Relative path -> file content of a small set with labels, a mask and one bad file."""
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[1, 1:3] = 255  # half resolution: resized to the image with nearest
    return {
        "circle/a.png": png(pixels(1)),
        "circle/a.mask.png": png(np.dstack([mask] * 3)),
        "circle/b.png": png(pixels(2)),
        "Golden_Retriever/c.png": png(pixels(3)),
        "2/d.png": png(pixels(4)),
        "dog/e.png": png(pixels(5)),
        "top.png": png(pixels(6)),
        "notes.txt": b"these are my pictures",
        ".hidden/x.png": png(pixels(7)),
        "circle/.DS_Store": b"\0\0\0\1Bud1",
    }


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    return buf.getvalue()


def check_layout_set(result: ImageSet) -> None:
    by_name = {item.name: item for item in result.items}
    assert list(by_name) == [
        "2/d.png",
        "circle/a.png",
        "circle/b.png",
        "dog/e.png",
        "Golden_Retriever/c.png",
        "top.png",
    ]
    assert [by_name[n].label for n in by_name] == [2, 0, 0, None, 1, None]
    np.testing.assert_array_equal(by_name["circle/b.png"].array, pixels(2) / np.float32(255))
    expected_mask = np.zeros((6, 8), dtype=bool)
    expected_mask[2:4, 2:6] = True
    np.testing.assert_array_equal(by_name["circle/a.png"].mask, expected_mask)
    assert by_name["circle/b.png"].mask is None
    assert result.class_names == CLASSES
    assert "The folder 'dog' matches no class of the model, so its image has no label." in result.notices
    skipped = [n for n in result.notices if "skipped" in n]
    assert len(skipped) == 1 and "notes.txt" in skipped[0] and "1 file skipped" in skipped[0]


def test_folder_with_labels_masks_and_a_bad_file(tmp_path):
    root = write_folder(tmp_path / "set", layout())
    check_layout_set(load_image_set(root, class_names=CLASSES))
    check_layout_set(load_image_set(str(root), class_names=CLASSES))


def test_zip_bytes_and_zip_path_give_the_same_set(tmp_path):
    data = zip_bytes(layout())
    check_layout_set(load_image_set(data, class_names=CLASSES))
    path = tmp_path / "set.zip"
    path.write_bytes(data)
    check_layout_set(load_image_set(path, class_names=CLASSES))


def test_without_class_names_the_folders_become_the_classes(tmp_path):
    root = write_folder(tmp_path, {"b/1.png": png(pixels(1)), "a/2.png": png(pixels(2)), "a/3.png": png(pixels(3))})
    result = load_image_set(root)
    assert result.class_names == ("a", "b")
    assert result.labels() == (0, 0, 1)
    assert result.notices == ()


def test_zip_path_traversal_entries_are_ignored():
    data = zip_bytes(
        {
            "circle/ok.png": png(pixels(1)),
            "../evil.png": png(pixels(2)),
            "/abs/evil.png": png(pixels(3)),
            "circle/../../evil2.png": png(pixels(4)),
        }
    )
    result = load_image_set(data, class_names=CLASSES)
    assert [item.name for item in result.items] == ["circle/ok.png"]
    notice = next(n for n in result.notices if "unsafe paths" in n)
    assert notice.startswith("3 archive entries") and "../evil.png" in notice


def test_zip_bomb_entry_is_never_read_past_the_byte_cap():
    bomb = b"\0" * (8 * 2**20)  # 8 MiB of zeros, about 8 KiB compressed
    data = zip_bytes({"circle/ok.png": png(pixels(1)), "circle/bomb.png": bomb})
    assert len(data) < 100_000
    result = load_image_set(data, class_names=CLASSES, max_bytes=50_000)
    assert [item.name for item in result.items] == ["circle/ok.png"]
    assert any("'circle/bomb.png' is larger than the" in n for n in result.notices)


def test_total_bytes_cap_stops_loading_with_a_notice(tmp_path):
    files = {f"circle/{i:02d}.png": png(pixels(i, 20, 20)) for i in range(10)}
    size = len(files["circle/00.png"])
    result = load_image_set(write_folder(tmp_path, files), class_names=CLASSES, max_total_bytes=3 * size)
    assert 3 <= len(result) < 10
    assert any("memory cap" in n for n in result.notices)


def test_total_pixel_cap_stops_loading_with_a_notice(tmp_path):
    files = {f"{i:02d}.png": png(pixels(i, 10, 10)) for i in range(6)}
    result = load_image_set(write_folder(tmp_path, files), max_total_pixels=250)
    assert len(result) == 3  # 100, 200, 300 pixels: the third crosses the cap, loading stops after it
    assert any("memory cap" in n for n in result.notices)


def test_limit_and_max_images(tmp_path):
    files = {f"circle/{i:02d}.png": png(pixels(i)) for i in range(5)}
    root = write_folder(tmp_path, files)
    limited = load_image_set(root, class_names=CLASSES, limit=2)
    assert [item.name for item in limited.items] == ["circle/00.png", "circle/01.png"]
    assert "Only the first 2 images loaded (the requested limit); 3 more files not read." in limited.notices
    capped = load_image_set(root, class_names=CLASSES, max_images=4)
    assert len(capped) == 4 and any("the cap on images per set" in n for n in capped.notices)
    assert len(load_image_set(root, class_names=CLASSES, limit=5)) == 5


def test_size_resizes_images_like_pillow_bilinear_and_masks_nearest(tmp_path):
    big = np.random.default_rng(11).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), dtype=np.uint8)
    mask[10:30, 5:20] = 255
    root = write_folder(tmp_path, {"circle/p.png": png(big), "circle/p.mask.png": png(mask)})
    item = load_image_set(root, class_names=CLASSES, size=(20, 30)).items[0]
    assert item.array.shape == (20, 30, 3) and item.mask.shape == (20, 30)
    unit = big.astype(np.float32) / 255
    reference = np.dstack(
        [np.asarray(Image.fromarray(unit[:, :, c], "F").resize((30, 20), Image.Resampling.BILINEAR)) for c in range(3)]
    )
    np.testing.assert_allclose(item.array, np.clip(reference, 0, 1), atol=1e-5)
    np.testing.assert_allclose(resize_image(unit, (20, 30)), item.array)
    rows = ((np.arange(20) + 0.5) * 37 / 20).astype(int)
    cols = ((np.arange(30) + 0.5) * 53 / 30).astype(int)
    np.testing.assert_array_equal(item.mask, mask[rows][:, cols] > 0)


def test_unreadable_mask_is_dropped_with_a_notice(tmp_path):
    root = write_folder(tmp_path, {"circle/a.png": png(pixels(1)), "circle/a.mask.png": b"not a png"})
    result = load_image_set(root, class_names=CLASSES)
    assert result.items[0].mask is None
    assert any("a.mask.png" in n and "mask ignored" in n for n in result.notices)


def test_many_bad_files_are_summarised(tmp_path):
    files = {f"junk{i:02d}.png": b"junk" for i in range(25)}
    files["circle/good.png"] = png(pixels(1))
    result = load_image_set(write_folder(tmp_path, files), class_names=CLASSES)
    assert len(result) == 1
    notice = next(n for n in result.notices if "skipped" in n)
    assert notice.startswith("25 files skipped") and notice.endswith("and 5 more.")


def test_bad_sources_raise_our_error(tmp_path):
    with pytest.raises(ImageLoadError, match="No folder or zip file"):
        load_image_set(tmp_path / "missing")
    text = tmp_path / "list.txt"
    text.write_text("a, b")
    with pytest.raises(ImageLoadError, match="not a readable zip archive"):
        load_image_set(text)
    with pytest.raises(ImageLoadError, match="not a readable zip archive"):
        load_image_set(b"PK\x03\x04 damaged")
    with pytest.raises(ImageLoadError, match="No readable image"):
        load_image_set(write_folder(tmp_path / "junk", {"a.png": b"junk"}))
    with pytest.raises(ImageLoadError, match="No readable image"):
        load_image_set(zip_bytes({}))


def test_bad_parameters(tmp_path):
    root = write_folder(tmp_path, {"a.png": png(pixels(1))})
    with pytest.raises(ParameterError, match="limit"):
        load_image_set(root, limit=0)
    with pytest.raises(ParameterError, match="size"):
        load_image_set(root, size=(0, 5))


def test_generated_test_set_matches_the_generator():
    result = generated_test_set(12, seed=5)
    images, labels = shapes.generate(12, seed=5, size=64)
    assert len(result) == 12
    assert result.class_names == tuple(shapes.CLASSES)
    assert result.labels() == tuple(int(v) for v in labels)
    for item, image in zip(result.items, images):
        np.testing.assert_array_equal(item.array, image)
        assert item.mask is None
    other = generated_test_set(12, seed=6)
    assert any(not np.array_equal(a.array, b.array) for a, b in zip(result.items, other.items))
    assert generated_test_set(3, seed=5, size=32).items[0].array.shape == (32, 32, 3)
