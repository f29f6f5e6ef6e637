"""The running server refuses uploads that lack the XSRF token of a real browser session.

``tests/dashboard/test_config.py`` already sends made-up session and file ids; here the ids
are those of a real upload made by Chromium through the file input, and the same request is
replayed with and without the browser's XSRF cookie and header. Accepted with both, refused
(403) with either missing: the refusal is the token's doing, not an unknown session's.
"""

from __future__ import annotations

import http.client

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

UPLOAD_PATH = "/_stcore/upload_file/"
BOUNDARY = "xaiTestBoundary7MA4YWxk"


@pytest.fixture
def captured_upload(app, tmp_path):
    """The browser's own upload request: (path, headers, body)."""
    picture = tmp_path / "tiny.png"
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(picture)
    with app.page.expect_request(lambda r: UPLOAD_PATH in r.url and r.method == "PUT") as info:
        app.upload_image(picture)
    request = info.value
    assert request.response().status in (200, 204)  # the browser's upload was accepted
    path = request.url.split(f"127.0.0.1:{app.server.port}", 1)[1]
    return path, request.all_headers(), _multipart(picture.read_bytes())


def _multipart(data: bytes) -> bytes:
    """The form body the browser sends (Playwright does not expose file-upload bodies)."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="tiny.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _replay(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _without(headers: dict[str, str], *names: str) -> dict[str, str]:
    """The browser's headers less ``names``, with our own body's framing."""
    drop = {n.lower() for n in names} | {"content-type", "content-length", "connection"}
    kept = {k: v for k, v in headers.items() if k.lower() not in drop and not k.startswith(":")}
    return {**kept, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_the_browser_session_upload_needs_its_xsrf_token(app, captured_upload):
    path, headers, body = captured_upload
    assert "_streamlit_xsrf=" in headers.get("cookie", "") and headers.get("x-xsrftoken")
    port = app.server.port
    assert _replay(port, "PUT", path, _without(headers), body) in (200, 204)  # the real request, again
    assert _replay(port, "PUT", path, _without(headers, "cookie", "x-xsrftoken"), body) == 403
    assert _replay(port, "PUT", path, _without(headers, "x-xsrftoken"), body) == 403
    assert _replay(port, "PUT", path, _without(headers, "cookie"), body) == 403
    assert _replay(port, "DELETE", path, _without(headers, "cookie", "x-xsrftoken"), None) == 403


def test_a_token_from_another_browser_does_not_open_this_session(app, captured_upload, browser):
    """A second browser context gets its own token; it is no key to the first session."""
    path, headers, body = captured_upload
    other = browser.new_context()
    try:
        page = other.new_page()
        page.goto(app.server.url + "/")
        page.wait_for_selector("h1")
        cookies = {c["name"]: c["value"] for c in other.cookies()}
    finally:
        other.close()
    foreign = cookies["_streamlit_xsrf"]
    forged = {**_without(headers, "cookie", "x-xsrftoken"), "cookie": headers["cookie"], "x-xsrftoken": foreign}
    assert foreign not in headers["cookie"]
    assert _replay(app.server.port, "PUT", path, forged, body) == 403
