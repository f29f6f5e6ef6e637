"""Image sets read only regular files: FIFOs, devices and links out of the folder are skipped and
listed; a FIFO never blocks `xai evaluate` or `xai co-scores`; zip bombs of tiny PNGs cost nothing."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.xaicore.data.test_image_budget import palette_png
from xaicore.data.imagesets import load_image_set
from xaicore.errors import ImageLoadError


def png(value: int = 120, side: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "set"
    (root / "circle").mkdir(parents=True)
    (root / "circle" / "a.png").write_bytes(png(10))
    (root / "square").mkdir()
    (root / "square" / "b.png").write_bytes(png(200))
    outside = tmp_path / "secret.png"
    outside.write_bytes(png(50))
    os.mkfifo(root / "circle" / "pipe.png")
    os.symlink(outside, root / "square" / "out.png")
    os.symlink(root / "circle" / "a.png", root / "square" / "inside.png")
    os.symlink(root / "square" / "nothing.png", root / "square" / "dangling.png")
    os.symlink(tmp_path, root / "loop")
    return root


@pytest.mark.timeout(60)
def test_only_regular_files_are_read_and_the_others_are_listed(folder) -> None:
    start = time.perf_counter()
    image_set = load_image_set(folder, class_names=["circle", "square"])
    assert time.perf_counter() - start < 10
    assert [item.name for item in image_set.items] == ["circle/a.png", "square/b.png", "square/inside.png"]
    assert image_set.notices == (
        "4 entries skipped because only regular files are read: 'loop' (a link to a folder), "
        "'circle/pipe.png' (a named pipe (FIFO)), 'square/dangling.png' (a link to nothing), "
        "'square/out.png' (a link that leads out of the folder).",
    )


@pytest.mark.timeout(60)
def test_an_entry_that_becomes_a_fifo_after_listing_is_refused_without_waiting(tmp_path) -> None:
    from xaicore.data.imagesets import _Folder

    (tmp_path / "x.png").write_bytes(png())
    archive = _Folder(tmp_path)
    assert archive.paths() == ["x.png"]
    (tmp_path / "x.png").unlink()
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(OSError, match="named pipe"):
        archive.read("x.png", 1000)


@pytest.mark.slow  # a fresh Python process per command: about 6 s each
@pytest.mark.parametrize("command", ["evaluate", "co-scores"])
def test_a_fifo_in_the_data_folder_does_not_hang_the_cli(command, folder, tmp_path) -> None:
    argv = [
        sys.executable,
        "-m",
        "xaicore.cli.main",
        command,
        str(folder),
        "--methods",
        "saliency",
        "--out",
        str(tmp_path / f"out-{command}"),
    ]
    if command == "evaluate":
        argv += ["--metrics", "runtime"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'circle/pipe.png' (a named pipe (FIFO))" in done.stdout + done.stderr


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def test_zip_entries_stored_as_links_or_devices_are_skipped_and_listed() -> None:
    data = _zip(
        [
            ("circle/a.png", png()),
            (_entry("circle/link.png", stat.S_IFLNK | 0o777), b"/etc/passwd"),
            (_entry("circle/fifo.png", stat.S_IFIFO | 0o644), b""),
            (_entry("circle/b.png", stat.S_IFREG | 0o644), png(30)),
        ]
    )
    image_set = load_image_set(data, class_names=["circle"])
    assert [item.name for item in image_set.items] == ["circle/a.png", "circle/b.png"]
    assert image_set.notices == (
        "2 entries skipped because only regular files are read: 'circle/link.png' (a link), "
        "'circle/fifo.png' (a named pipe (FIFO)).",
    )


def test_a_tiny_zip_of_palette_bombs_is_refused_quickly_with_each_reason() -> None:
    bomb = palette_png(6320, 6320)
    data = _zip([(f"bomb{i}.png", bomb) for i in range(3)])
    assert len(data) < 2000
    start = time.perf_counter()
    with pytest.raises(
        ImageLoadError,
        match=r"No readable image was found in the set\. The file 'bomb0\.png' "
        r"\(6320x6320, palette colours with transparency\) would take about",
    ):
        load_image_set(data)
    assert time.perf_counter() - start < 2.0
