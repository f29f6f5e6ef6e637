"""A zip entry named like a Markdown image, uploaded through the real file input of the AX / CO
page: the notice shows the name as text and the browser never requests the address in it."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser


def test_a_markdown_image_in_a_zip_entry_name_is_shown_as_text_and_never_fetched(app, tmp_path) -> None:
    beacon = f"http://127.0.0.1:{app.server.port}/beacon-from-a-file-name.png"
    hostile = f"circle/![x]({beacon}) <b>bold</b> :red[alarm].png"
    picture = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(picture, "PNG")
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("circle/a.png", picture.getvalue())
        bundle.writestr(hostile, b"not an image")
    requested: list[str] = []
    app.page.on("request", lambda request: requested.append(request.url))
    app.open_page("AX / CO scores")
    app.main().get_by_text("Upload a zip", exact=True).click()
    app.wait_idle()
    app.main().locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(archive))
    app.wait_idle(settle_ms=800)
    notice = app.main().locator('[data-testid="stCaptionContainer"]').filter(has_text="skipped")
    notice.first.wait_for()
    text = notice.first.inner_text().replace("\u2060", "")  # the invisible joiner that stops autolinks
    assert f"![x]({beacon}) <b>bold</b> :red[alarm].png" in text
    assert notice.first.locator("a").count() == 0  # not even a link
    assert app.main().locator("img[src*='beacon']").count() == 0
    assert app.main().locator("b", has_text="bold").count() == 0
    app.page.wait_for_timeout(500)
    assert [url for url in requested if "beacon" in url] == []
    app.screenshot("hostile_zip_entry_name_shown_as_text")
