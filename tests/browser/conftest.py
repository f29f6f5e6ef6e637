"""Fixtures for real-browser tests: the dashboard server and Debian's Chromium (Playwright).

- ``server``: the dashboard started the way ``xai-dashboard`` starts it (every option of
  ``.streamlit/config.toml`` as a flag) on a free loopback port; ready once ``/_stcore/health``
  answers; stopped on teardown. Its log goes to ``test-output/browser-server.log``; a test
  fails when the server logged a traceback while it ran.
- ``browser``: headless Chromium at ``/usr/bin/chromium``. Missing: the tests skip locally and
  fail when the environment variable ``CI`` is set (CI must really run them).
- ``app``: a fresh browser context on the app's Home page, wrapped in :class:`App`. On
  teardown it saves ``test-output/screenshots/<test>.png`` and fails the test on any browser
  console error, uncaught page error or Streamlit exception box.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dashboard import launch

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
START_TIMEOUT_S = 90
RUN_TIMEOUT_MS = 120_000  # longest wait for one script run (the machine may be shared and slow)


def _require_chromium() -> None:
    if CHROMIUM.is_file():
        return
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser tests.")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """The running dashboard: its address and its log file."""

    url: str
    port: int
    log: Path
    pid: int = 0  # the server process (``python -m dashboard.serve`` runs Streamlit in itself)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def started_server(log_name: str = "browser-server.log", *, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """A dashboard server started as ``xai-dashboard`` starts it (with ``env`` added to the
    environment), stopped on exit; a server the test killed itself is only reaped."""
    _require_chromium()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = OUTPUT / log_name
    plan = launch.build_command(["--server.address", "127.0.0.1", "--server.port", str(port)])
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            plan.argv,
            cwd=plan.cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard server did not start; see {log}") from None
                time.sleep(0.3)
        yield Server(url=f"http://127.0.0.1:{port}", port=port, log=log, pid=process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the test may have killed the server already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One server for the whole browser suite."""
    with started_server() as running:
        yield running


@pytest.fixture(scope="session")
def browser():
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class App:
    """One browser tab on the dashboard, with the few moves the tests need."""

    page: object
    server: Server
    problems: list[str] = field(default_factory=list)

    # --- waiting ---------------------------------------------------------------------------

    def wait_idle(self, *, settle_ms: int = 300) -> None:
        """Wait until the server has finished the script run the last action started."""
        self.page.wait_for_timeout(settle_ms)  # let a rerun request reach the server
        self.page.wait_for_selector(
            '[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=RUN_TIMEOUT_MS
        )
        self.page.wait_for_selector(
            '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=RUN_TIMEOUT_MS
        )

    # --- moving around -----------------------------------------------------------------------

    def nav_links(self) -> list[str]:
        """Titles of the pages in the sidebar's navigation, in menu order."""
        links = self.page.locator('[data-testid="stSidebarNav"] a [data-testid="stMarkdownContainer"]')
        return [text.strip() for text in links.all_inner_texts()]

    def open_page(self, title: str) -> None:
        """Click the navigation link ``title`` and wait for the page's title."""
        nav = self.page.locator('[data-testid="stSidebarNav"] a').filter(has=self.page.get_by_text(title, exact=True))
        nav.click()
        self.wait_idle()
        self.page.wait_for_selector("h1", timeout=RUN_TIMEOUT_MS)

    def sidebar(self):
        return self.page.locator('[data-testid="stSidebar"]')

    def main(self):
        return self.page.locator('[data-testid="stMain"]')

    def upload_image(self, path: Path) -> None:
        """Choose *Upload* in the sidebar (once) and send ``path`` through the real file input."""
        sidebar = self.sidebar()
        upload_input = sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]')
        if upload_input.count() == 0:
            sidebar.get_by_text("Upload", exact=True).click()
            self.wait_idle()
        upload_input.set_input_files(str(path))
        self.wait_idle(settle_ms=800)

    def number_input(self, label: str, value: str) -> None:
        """Type ``value`` into the number input labelled ``label`` and commit it with Enter."""
        box = self.page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        self.wait_idle()

    def run_waiting_methods(self) -> None:
        """On the Explain page: press Run when some methods wait for it (the page starts only
        what its estimate says is quick, and on a busy machine that may leave a slow one out)."""
        self.wait_idle()
        if self.main().get_by_text("wait for you").count():
            self.click_button("Run")

    def click_button(self, label: str) -> None:
        self.page.get_by_role("button", name=label, exact=True).click()
        self.wait_idle()

    # --- checks --------------------------------------------------------------------------

    def exception_boxes(self) -> list[str]:
        return self.page.locator('[data-testid="stException"]').all_inner_texts()

    def errors(self) -> list[str]:
        """Texts of the error boxes (st.error) on the page."""
        return [t.strip() for t in self.page.locator('[data-testid="stAlertContentError"]').all_inner_texts()]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_safe(name)}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


@pytest.fixture
def app(request, server: Server, browser) -> Iterator[App]:
    log_start = len(server.log_text())
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    tab = App(page=page, server=server)
    page.on(
        "console", lambda msg: tab.problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
    )
    page.on("pageerror", lambda exc: tab.problems.append(f"page error: {exc}"))
    missing: list[str] = []  # URLs answered 404
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    try:
        page.goto(server.url + "/")
        tab.wait_idle()
        page.wait_for_selector("h1", timeout=RUN_TIMEOUT_MS)
        yield tab
        tab.wait_idle()
        exceptions = tab.exception_boxes()
        assert exceptions == [], f"Streamlit exception box on the page: {exceptions}"
        problems = tab.problems
        if missing and all("/media/" in url for url in missing):
            # An image of a run that a newer run replaced (a page switch mid-run): Streamlit drops
            # its media file and the browser's late fetch of it 404s; the newer image is shown.
            problems = [p for p in problems if "status of 404" not in p and "Image source error" not in p]
        assert problems == [], f"browser console errors: {problems}, 404s: {missing}"
        logged = server.log_text()[log_start:]
        assert "Traceback" not in logged, f"the server logged an error:\n{logged[-3000:]}"
    finally:
        try:
            tab.screenshot(request.node.name)
        finally:
            context.close()
