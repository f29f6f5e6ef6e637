"""Names from files reach pages as text: no link, image, HTML or directive from a file name."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from dashboard.safe_text import plain
from tests.dashboard import apptest_support as support
from tests.dashboard.test_report_page import BUNDLE, W, _press_run

HOSTILE = "![x](http://127.0.0.1:9/beacon).png"


def test_plain_makes_markdown_and_html_inert_and_keeps_the_words() -> None:
    assert plain(HOSTILE) == "!\\[x\\](http\\:\u2060//127.0.0.1\\:9/beacon).png"
    assert plain("see www.example.org or me@example.org") == "see www\u2060.example.org or me@\u2060example.org"
    assert plain("<img src=x onerror=alert(1)>") == "\\<img src=x onerror=alert(1)\\>"
    assert plain(":red[alarm] $x^2$ **bold** `code` a_b #1 | & \\") == (
        "\\:red\\[alarm\\] \\$x^2\\$ \\*\\*bold\\*\\* \\`code\\` a\\_b \\#1 \\| \\& \\\\"
    )
    assert plain("two\nlines\r\n# heading") == "two lines \\# heading"
    assert plain("The file 'photo.png' is empty.") == "The file 'photo.png' is empty."


def test_a_hostile_upload_name_is_shown_escaped_in_the_error() -> None:
    at = support.upload_image(support.start(), HOSTILE, b"not an image at all")
    (message,) = support.errors(at)
    assert "\\[x\\](http\\:\u2060//127.0.0.1\\:9/beacon)" in message
    assert "[x](http://" not in message


def test_zip_entry_names_in_set_notices_are_escaped() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("circle/a.png", support.png_bytes(np.full((16, 16, 3), 90, np.uint8)))
        archive.writestr(f"circle/{HOSTILE}", b"not a png")
    at = support.use_model(support.start(), BUNDLE)
    at.session_state[W + "source"] = "Upload a zip"
    at.session_state[W + "methods"] = ["saliency"]
    at.session_state[W + "step"] = 0.25
    at = support.open_page(at, "pages/report.py")
    at.file_uploader(key="report.act.zip").set_value(("set.zip", buffer.getvalue(), "application/zip"))
    at = _press_run(at.run())
    notices = [c for c in support.captions(at) if "skipped" in c]
    assert len(notices) == 1 and "circle/!\\[x\\](http\\:\u2060//127.0.0.1\\:9/beacon).png" in notices[0]
    assert "[x](http://" not in notices[0]
