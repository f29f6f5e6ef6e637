"""Looking at PDF pages in tests: pdftoppm turns them into pictures, and the review report's
layout says where each map lies on a page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaicore.review.report import tile_box


def page_count(pdf: bytes) -> int:
    """How many pages a PDF has (its ``/Type /Page`` objects)."""
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def rendered_pages(pdf: Path, folder: Path, *, dpi: int = 60) -> list[np.ndarray]:
    """Every page of ``pdf`` as an RGB array (pdftoppm); skips the test without poppler-utils."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (apt-get install poppler-utils) is needed to look at the PDF pages")
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(folder / "page")], check=True)
    return [np.asarray(Image.open(p).convert("RGB")).astype(int) for p in sorted(folder.glob("page*.png"))]


def map_area(page: np.ndarray, k: int, cells: int) -> np.ndarray:
    """The inner part of the ``k``-th picture on a rendered report page of ``cells`` pictures."""
    height, width = page.shape[:2]
    left, bottom, side, tall = tile_box(k, cells)
    x0, x1 = int((left + 0.1 * side) * width), int((left + 0.9 * side) * width)
    y0, y1 = int((1 - bottom - 0.9 * tall) * height), int((1 - bottom - 0.1 * tall) * height)
    return page[y0:y1, x0:x1]


def is_visible_map(area: np.ndarray) -> bool:
    """A drawn heatmap, not a flat or grey box: many distinct colours, some of them strongly tinted."""
    tinted = np.abs(area[:, :, 0] - area[:, :, 2]) > 30
    return bool(tinted.mean() > 0.05 and len(np.unique(area.reshape(-1, 3), axis=0)) > 40)
