"""The server configuration and the ``xai-dashboard`` launcher (nothing is started)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from dashboard import launch

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".streamlit" / "config.toml"


@pytest.fixture(scope="module")
def config() -> dict:
    with CONFIG.open("rb") as handle:
        return tomllib.load(handle)


def test_xsrf_and_cors_protection_are_on(config):
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["enableCORS"] is True


def test_error_details_are_hidden(config):
    # "none" is the only value that shows neither traceback nor message; False means "stacktrace".
    assert config["client"]["showErrorDetails"] == "none"


def test_upload_size_is_capped(config):
    from dashboard import launch, uploads

    cap = config["server"]["maxUploadSize"]
    # One server cap that fits real checkpoints (VGG-16: 528 MB), and no larger.
    assert cap == uploads.SERVER_UPLOAD_MB == uploads.CHECKPOINT_UPLOAD_MB == 600
    assert launch.SECURE_DEFAULTS["server.maxUploadSize"] == cap
    assert uploads.IMAGE_UPLOAD_MB == 50  # images keep their own, smaller cap


def test_headless_without_usage_stats(config):
    assert config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False


def test_every_config_option_is_known_to_streamlit(config):
    from streamlit import config as st_config

    known = set(st_config._config_options_template)
    names = {f"{section}.{name}" for section, values in config.items() for name in values}
    assert names <= known, names - known


def test_fallback_defaults_agree_with_the_config_file():
    from_file = launch.config_options(CONFIG)
    for name, value in launch.SECURE_DEFAULTS.items():
        assert from_file[name] == value, name


def test_config_options_fall_back_when_the_file_is_missing(tmp_path):
    assert launch.config_options(tmp_path / "missing.toml") == launch.SECURE_DEFAULTS


def test_command_runs_the_app_with_every_config_option_as_a_flag():
    plan = launch.build_command(python="/py")
    argv = list(plan.argv)
    assert argv[:4] == ["/py", "-m", "dashboard.serve", "run"]
    app = Path(argv[4])
    assert app.is_absolute() and app == REPO / "dashboard" / "app.py" and app.is_file()
    assert plan.cwd == REPO
    flags = argv[5:]
    assert "--server.enableXsrfProtection=true" in flags
    assert "--server.enableCORS=true" in flags
    assert "--client.showErrorDetails=none" in flags
    assert "--browser.gatherUsageStats=false" in flags
    assert len(flags) == len(launch.config_options(CONFIG))


def test_extra_arguments_pass_through_and_replace_the_same_option():
    plan = launch.build_command(["--server.port", "8600", "--server.maxUploadSize=5"], python="/py")
    argv = list(plan.argv)
    assert argv[-3:] == ["--server.port", "8600", "--server.maxUploadSize=5"]
    assert not any(a.startswith("--server.maxUploadSize=50") for a in argv)
    assert "--server.enableXsrfProtection=true" in argv


def test_help_prints_usage_and_starts_nothing(capsys, monkeypatch):
    started = []
    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: started.append(a))
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--help"])
    assert exit_info.value.code == 0
    assert "xai-dashboard" in capsys.readouterr().out
    assert started == []


def test_dry_run_prints_the_command(capsys, monkeypatch):
    started = []
    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: started.append(a))
    assert launch.main(["--dry-run", "--server.port", "8601"]) == 0
    out = capsys.readouterr().out
    assert "dashboard.serve run" in out and str(REPO / "dashboard" / "app.py") in out and "8601" in out
    assert started == []


def test_main_runs_streamlit_from_the_repository_root(monkeypatch):
    calls = []

    class Done:
        returncode = 3

    def fake_run(argv, *, cwd, check):
        calls.append((argv, cwd))
        return Done()

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    assert launch.main(["--server.port", "8602"]) == 3
    ((argv, cwd),) = calls
    assert argv[0] == sys.executable and cwd == REPO and argv[-2:] == ("--server.port", "8602")


# --- the running server --------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The dashboard started the way ``xai-dashboard`` starts it, on a free loopback port."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    plan = launch.build_command(["--server.address", "127.0.0.1", "--server.port", str(port)])
    process = subprocess.Popen(
        plan.argv, cwd=plan.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the dashboard server did not start") from None
                time.sleep(0.3)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


_UPLOAD = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n"
)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Xsrftoken": "forged", "Cookie": "_streamlit_xsrf=other"}],
    ids=["no token", "forged token"],
)
def test_the_server_refuses_uploads_without_a_valid_xsrf_token(server, headers):
    status, body, _ = _request(
        server,
        "PUT",
        "/_stcore/upload_file/some-session/some-file",
        {"Content-Type": "multipart/form-data; boundary=b", **headers},
        _UPLOAD,
    )
    assert status == 403, body


def test_serve_turns_off_the_pages_folder_mode_before_streamlit_starts(monkeypatch):
    """Otherwise the first request of a fresh server for /explain would run that page alone
    under a menu of file names (Streamlit's pages-folder mode)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    from dashboard import serve

    seen = []
    monkeypatch.setattr(PagesManager, "uses_pages_directory", None)
    monkeypatch.setattr(cli, "main", lambda **kwargs: seen.append((PagesManager.uses_pages_directory, kwargs)))
    serve.main()
    assert seen == [(False, {"prog_name": "streamlit"})]


def test_the_server_does_not_allow_other_origins(server):
    evil = "http://evil.example"
    _, _, headers = _request(
        server,
        "OPTIONS",
        "/_stcore/upload_file/some-session/some-file",
        {"Origin": evil, "Access-Control-Request-Method": "PUT"},
    )
    allowed = {k.lower(): v for k, v in headers.items()}.get("access-control-allow-origin")
    assert allowed != evil and allowed != "*"
