"""``xai-dashboard --share`` for real on loopback: nginx with TLS and basic authentication in
front of the dashboard. Without the password every request is refused (401); with it the
app works in Chromium through the proxy (page, websocket, upload) under the headers it adds."""

from __future__ import annotations

import base64
import http.client
import ssl

import numpy as np
import pytest
from PIL import Image

from dashboard import launch, share
from tests.browser.conftest import OUTPUT, RUN_TIMEOUT_MS, SCREENSHOTS

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    if share.shutil.which("nginx") is None and not share.Path("/usr/sbin/nginx").is_file():
        pytest.fail("nginx is not installed (apt-get install nginx); CI installs it beside chromium.")
    secret = tmp_path_factory.mktemp("secret") / "password"
    secret.write_text(PASSWORD + "\n")
    plan = share.prepare(listen="127.0.0.1", port=share.free_port(), password_file=secret)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    running = share.start(plan, log=OUTPUT / "share-server.log")
    try:
        yield plan
    finally:
        running.stop()
        share.shutil.rmtree(plan.folder, ignore_errors=True)


def _get(plan, path: str, *, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is self-signed; it is checked below
    connection = http.client.HTTPSConnection("127.0.0.1", plan.port, timeout=15, context=context)
    headers = {} if auth is None else {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def _check_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "img-src 'self' data: blob:" in csp and "default-src 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/_stcore/health", "/_stcore/upload_file/x/y", "/_stcore/stream"])
def test_requests_without_the_password_are_refused(shared, path) -> None:
    status, headers, body = _get(shared, path)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="xai dashboard"'
    assert b"streamlit" not in body.lower()
    _check_headers(headers)
    assert _get(shared, path, auth="lab:wrong password")[0] == 401
    assert _get(shared, path, auth="someone:" + PASSWORD)[0] == 401


def test_with_the_password_the_app_answers_with_the_headers(shared) -> None:
    status, headers, body = _get(shared, "/_stcore/health", auth="lab:" + PASSWORD)
    assert (status, body) == (200, b"ok")
    _check_headers(headers)
    status, headers, body = _get(shared, "/", auth="lab:" + PASSWORD)
    assert status == 200 and b"<noscript>" in body
    _check_headers(headers)


def test_the_dashboard_itself_listens_on_loopback_only(shared) -> None:
    argv = shared.streamlit.argv
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert launch.config_options()["server.address"] == "127.0.0.1"
    assert "--server.address=127.0.0.1" in launch.build_command().argv
    certificate = ssl.get_server_certificate(("127.0.0.1", shared.port))
    assert certificate.startswith("-----BEGIN CERTIFICATE-----")


def test_the_app_works_in_a_browser_through_the_proxy(shared, browser, tmp_path) -> None:
    context = browser.new_context(
        ignore_https_errors=True,
        viewport={"width": 1400, "height": 1000},
        http_credentials={"username": "lab", "password": PASSWORD},
    )
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(f"https://127.0.0.1:{shared.port}/")
        page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]')
        page.wait_for_selector("h1")
        picture = tmp_path / "through-proxy.png"
        Image.fromarray(np.full((20, 20, 3), 150, np.uint8)).save(picture)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Upload", exact=True).click()
        upload = sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]')
        upload.wait_for(state="attached")
        upload.set_input_files(str(picture))
        page.wait_for_timeout(800)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
        sidebar.get_by_text("through-proxy.png").first.wait_for()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "share_through_proxy.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
        assert problems == []
    finally:
        context.close()
