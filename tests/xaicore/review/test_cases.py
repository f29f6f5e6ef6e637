"""Case lists from folders and zips: which files are cases, in which order, read safely."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaicore.data.images import LoadedImage, load_image
from xaicore.errors import ImageLoadError, ParameterError
from xaicore.review import cases as cases_module
from xaicore.review.cases import case_folders, folder_within, natural_key, open_cases, register_decoder


def _png(value: int, size: tuple[int, int] = (6, 5)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "cases"
    (root / "ward").mkdir(parents=True)
    (root / "case-10.png").write_bytes(_png(10))
    (root / "case-2.png").write_bytes(_png(20))
    (root / "ward" / "case-1.png").write_bytes(_png(30))
    (root / "case-2.mask.png").write_bytes(_png(255))  # a mask, not a case
    (root / "README.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(_png(40))
    return root


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_folder_lists_its_images_in_natural_order(folder):
    listed = open_cases(folder)
    assert [c.name for c in listed.cases] == ["case-2.png", "case-10.png", "ward/case-1.png"]
    assert [c.index for c in listed.cases] == [0, 1, 2] and {c.kind for c in listed.cases} == {"image"}
    assert listed.source == str(folder.resolve())
    assert any("README.txt" in n and "1 file" in n for n in listed.notices), listed.notices


def test_a_loaded_case_is_the_decoded_image_and_the_hash_of_its_bytes(folder):
    listed = open_cases(folder)
    loaded = listed.load(1)
    data = (folder / "case-10.png").read_bytes()
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert np.array_equal(loaded.image.array, load_image(data).array)
    assert loaded.image.array[0, 0, 0] == pytest.approx(10 / 255)
    assert (loaded.ref.source, loaded.ref.name, loaded.ref.sha256) == (listed.source, "case-10.png", loaded.sha256)
    with pytest.raises(ParameterError, match="no case 4"):
        listed.load(3)


def test_a_zip_lists_the_same_cases_and_ignores_unsafe_paths(folder):
    entries = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    entries["../escape.png"] = _png(1)
    entries["/etc/absolute.png"] = _png(2)
    entries["__MACOSX/._case-2.png"] = _png(3)
    listed = open_cases(_zip(entries), name="ward.zip")
    assert [c.name for c in listed.cases] == ["case-2.png", "case-10.png", "ward/case-1.png"]
    assert listed.source == "zip:ward.zip"
    assert any("unsafe paths" in n and "../escape.png" in n for n in listed.notices), listed.notices
    assert listed.load(2).image.array[0, 0, 0] == pytest.approx(30 / 255)


def test_a_zip_bomb_is_read_no_further_than_the_cap(tmp_path):
    bomb = _png(0)[:40] + bytes(8 * 2**20)  # a PNG signature then 8 MB of zeros (deflates to ~8 KB)
    data = _zip({"bomb.png": bomb, "fine.png": _png(9)})
    assert len(data) < 100_000
    listed = open_cases(data, name="b.zip", max_bytes=2**20)
    assert [c.name for c in listed.cases] == ["bomb.png", "fine.png"]
    with pytest.raises(ImageLoadError, match="larger than the 1 MB limit"):
        listed.load(0)
    assert listed.load(1).image.array.shape == (5, 6, 3)


def test_a_zip_with_too_many_entries_is_refused_before_its_directory_is_read(tmp_path):
    data = _zip({f"e{k}.png": b"x" for k in range(30)})
    with pytest.raises(ImageLoadError, match="30 entries, over the limit of 20"):
        open_cases(data, name="many.zip", max_entries=20)
    path = tmp_path / "many.zip"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match="30 entries"):
        open_cases(path, max_entries=20)


def test_links_out_of_the_folder_are_not_followed(tmp_path, folder):
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png(99))
    os.symlink(outside, folder / "link.png")
    listed = open_cases(folder)
    assert "link.png" not in [c.name for c in listed.cases]
    assert any("link.png" in n and "leads out" in n for n in listed.notices), listed.notices


def test_no_case_and_no_archive_are_plain_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(ImageLoadError, match="holds no case"):
        open_cases(tmp_path / "empty")
    with pytest.raises(ImageLoadError, match="not a readable zip"):
        open_cases(b"this is not a zip", name="x.zip")
    with pytest.raises(ImageLoadError, match="No folder or zip"):
        open_cases(tmp_path / "missing")


def test_a_case_changed_on_disk_since_listing_gets_its_new_hash(folder):
    listed = open_cases(folder)
    before = listed.load(0).sha256
    (folder / "case-2.png").write_bytes(_png(21))
    after = listed.load(0)
    assert after.sha256 != before and after.image.array[0, 0, 0] == pytest.approx(21 / 255)
    (folder / "case-2.png").unlink()
    with pytest.raises(ImageLoadError, match="case-2.png"):
        listed.load(0)


class _Fake:
    """A decoder of files starting with b'FAKE', each a gray image of its fifth byte's value."""

    name = "fake"

    def accepts(self, head: bytes) -> bool:
        return head.startswith(b"FAKE")

    def decode(self, data: bytes, *, name: str, max_pixels: int, max_bytes: int) -> LoadedImage:
        array = np.full((2, 3, 3), data[4] / 255, np.float32)
        return LoadedImage(array=array, format="FAKE", original_size=(3, 2), name=name)


def test_another_decoder_plugs_in(monkeypatch, folder):
    monkeypatch.setattr(cases_module, "_DECODERS", list(cases_module._DECODERS))
    (folder / "scan.fake").write_bytes(b"FAKE\x80rest")
    assert "scan.fake" not in [c.name for c in open_cases(folder).cases]
    register_decoder(_Fake())
    listed = open_cases(folder)
    index = listed.index_of("scan.fake")
    assert index is not None and listed.cases[index].kind == "fake"
    assert listed.load(index).image.array[0, 0, 0] == pytest.approx(128 / 255)


def test_folders_offered_stay_inside_the_root(folder):
    (folder / "ward" / "deep" / "deeper").mkdir(parents=True)
    (folder / ".git").mkdir()
    assert case_folders(folder) == (".", "ward", "ward/deep")
    assert folder_within(folder, "ward") == (folder / "ward").resolve()
    with pytest.raises(ParameterError, match="outside"):
        folder_within(folder, "../..")
    os.symlink("/", folder / "root-link")
    with pytest.raises(ParameterError, match="outside"):
        folder_within(folder, "root-link")


def test_natural_order_compares_numbers_as_numbers():
    names = ["b10", "B2", "a1", "b1"]
    assert sorted(names, key=natural_key) == ["a1", "b1", "B2", "b10"]
