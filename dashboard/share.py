"""``xai-dashboard --share``: the dashboard for a lab network, behind a password and TLS.

Streamlit itself has no login and speaks plain HTTP, so the dashboard always listens on
127.0.0.1 only, and for sharing Debian's nginx is put in front of it:

* **TLS** with a self-signed certificate made at start (``openssl req -x509``), unless
  ``--cert``/``--key`` name real ones; browsers ask once to trust the self-signed one;
* **HTTP basic authentication** for every request, the page, its websocket and uploads alike
  (``auth_basic``); the password file holds a salted SHA-512 crypt hash (``openssl passwd -6``)
  of a password given in ``XAI_DASHBOARD_PASSWORD`` or ``--password-file``, or, when neither is
  given, a random one printed once at start;
* the **headers Streamlit lacks**, on every answer including the 401:
  ``Content-Security-Policy`` (only the app's own scripts, styles, fonts and websocket; images
  only from the app itself, ``data:`` and ``blob:``, so no page can make a browser fetch another
  address; ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: no-referrer`` and ``Strict-Transport-Security``;
* request bodies capped at the upload cap, and the websocket forwarded with its upgrade.

:func:`prepare` writes the certificate, password file and ``nginx.conf`` into a private
folder; :func:`run` starts Streamlit (loopback, a free port) and nginx (``daemon off``), and
stops both when either ends. Nothing here needs the network.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dashboard import launch

PASSWORD_ENV = "XAI_DASHBOARD_PASSWORD"
DEFAULT_USER = "lab"
DEFAULT_PORT = 8443
NGINX = "nginx"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'; "  # Streamlit's bundle and Plotly need both
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "font-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src 'self' blob:; "
    "frame-src 'self'; "
    "object-src 'none'; "
    "base-uri 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
}


class ShareError(RuntimeError):
    """The shared server cannot be set up (a missing program, a bad certificate path)."""


@dataclass(frozen=True)
class SharePlan:
    """Everything :func:`run` starts: the folder with the files, and the two command lines."""

    folder: Path
    config: Path
    listen: str
    port: int
    upstream_port: int
    user: str
    password: str | None  # set only when it was generated, so that it can be printed once
    streamlit: launch.LaunchPlan
    nginx_argv: tuple[str, ...]


def _program(name: str, package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else None)
    if found is None:
        raise ShareError(f"`{name}` is not installed; install it with `apt-get install {package}` and try again.")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _password(password_file: Path | None) -> tuple[str, bool]:
    if password_file is not None:
        text = Path(password_file).read_text(encoding="utf-8").strip()
        if not text:
            raise ShareError(f"The password file {password_file} is empty.")
        return text, False
    given = os.environ.get(PASSWORD_ENV, "").strip()
    if given:
        return given, False
    return secrets.token_urlsafe(12), True


def _hash(password: str) -> str:
    done = subprocess.run(
        [_program("openssl", "openssl"), "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = sorted({host, "localhost", "127.0.0.1", socket.gethostname()})
    san = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
    subprocess.run(
        [
            _program("openssl", "openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
    )
    os.chmod(key, 0o600)
    return cert, key


def nginx_config(
    *,
    folder: Path,
    listen: str,
    port: int,
    upstream_port: int,
    cert: Path,
    key: Path,
    max_upload_mb: int,
    run_as_root: bool,
) -> str:
    """The text of ``nginx.conf`` for :func:`prepare` (see the module docstring)."""
    headers = "\n".join(f'        add_header {name} "{value}" always;' for name, value in SECURITY_HEADERS.items())
    user = "user nobody nogroup;\n" if run_as_root else ""
    return f"""# Written by `xai-dashboard --share`: TLS, basic authentication and security headers in
# front of the dashboard, which listens on 127.0.0.1:{upstream_port} only.
{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/tmp/body;
    proxy_temp_path {folder}/tmp/proxy;
    fastcgi_temp_path {folder}/tmp/fastcgi;
    uwsgi_temp_path {folder}/tmp/uwsgi;
    scgi_temp_path {folder}/tmp/scgi;
    server_tokens off;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen {listen}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size {max_upload_mb + 1}m;
        auth_basic "xai dashboard";
        auth_basic_user_file {folder}/htpasswd;
{headers}
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header Authorization "";
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1d;
            proxy_buffering off;
        }}
    }}
}}
"""


def prepare(
    *,
    folder: Path | None = None,
    listen: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    user: str = DEFAULT_USER,
    password_file: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    extra: Sequence[str] = (),
) -> SharePlan:
    """Write the certificate, password file and nginx configuration; nothing is started."""
    nginx = _program(NGINX, "nginx")
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="xai-share-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o711)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if (cert is None) != (key is None):
        raise ShareError("Give both --cert and --key, or neither for a self-signed certificate.")
    if cert is None:
        cert, key = _self_signed(folder, listen if listen not in ("0.0.0.0", "::") else socket.gethostname())
    if key is None:  # not reached: both or neither were given (checked above)
        raise ShareError("Give both --cert and --key, or neither for a self-signed certificate.")
    password, generated = _password(password_file)
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{user}:{_hash(password)}\n", encoding="utf-8")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if root:  # workers run as nobody and read the password file and temp folders at request time
        import pwd

        nobody = pwd.getpwnam("nobody")
        closed = [p for p in folder.resolve().parents if not os.stat(p).st_mode & 0o001]
        if closed:
            raise ShareError(
                f"nginx's workers (user nobody) cannot reach {folder}: {closed[0]} is closed to other users; "
                "use a folder under /tmp (the default)."
            )
        os.chmod(htpasswd, 0o600)
        for path in (htpasswd, *(folder / "tmp").rglob("*"), folder / "tmp"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    else:
        os.chmod(htpasswd, 0o600)
    upstream = free_port()
    options = launch.config_options()
    config = folder / "nginx.conf"
    config.write_text(
        nginx_config(
            folder=folder,
            listen=listen,
            port=port,
            upstream_port=upstream,
            cert=Path(cert),
            key=Path(key),
            max_upload_mb=int(options.get("server.maxUploadSize", 50)),
            run_as_root=root,
        ),
        encoding="utf-8",
    )
    streamlit = launch.build_command(
        [
            *extra,
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(upstream),
            "--server.enableCORS",
            "true",
            "--server.enableXsrfProtection",
            "true",
        ]
    )
    return SharePlan(
        folder=folder,
        config=config,
        listen=listen,
        port=port,
        upstream_port=upstream,
        user=user,
        password=password if generated else None,
        streamlit=streamlit,
        nginx_argv=(nginx, "-p", str(folder), "-c", str(config)),
    )


@dataclass
class Running:
    """The two processes of a shared dashboard; :meth:`stop` ends both."""

    plan: SharePlan
    streamlit: subprocess.Popen
    nginx: subprocess.Popen

    def stop(self) -> None:
        for process in (self.nginx, self.streamlit):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (self.nginx, self.streamlit):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def start(plan: SharePlan, *, log: Path | None = None, timeout_s: float = 90.0) -> Running:
    """Start Streamlit and nginx for ``plan``; returns once both answer (the app's health check)."""
    sink = open(log, "w", encoding="utf-8") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    streamlit = subprocess.Popen(
        plan.streamlit.argv, cwd=plan.streamlit.cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
    )
    nginx = subprocess.Popen(plan.nginx_argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    running = Running(plan=plan, streamlit=streamlit, nginx=nginx)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{plan.upstream_port}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok" and _listening(plan.port):
                    return running
        except OSError:
            pass
        if streamlit.poll() is not None or nginx.poll() is not None or time.monotonic() > deadline:
            running.stop()
            error = plan.folder / "error.log"
            detail = error.read_text(errors="replace")[-400:] if error.is_file() else ""
            raise ShareError(f"The shared dashboard did not start. {detail}".strip())
        time.sleep(0.3)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def run(argv: Sequence[str]) -> int:
    """``xai-dashboard --share [--share-port N] ...``: serve until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(prog="xai-dashboard --share")
    parser.add_argument("--share-port", type=int, default=DEFAULT_PORT, help=f"HTTPS port (default {DEFAULT_PORT})")
    parser.add_argument("--share-address", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--user", default=DEFAULT_USER, help=f"user name of the login (default {DEFAULT_USER})")
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help=f"file holding the password (default: ${PASSWORD_ENV}, else a random one)",
    )
    parser.add_argument("--cert", type=Path, default=None, help="TLS certificate (default: a self-signed one)")
    parser.add_argument("--key", type=Path, default=None, help="its private key")
    args, extra = parser.parse_known_args(list(argv))
    try:
        plan = prepare(
            listen=args.share_address,
            port=args.share_port,
            user=args.user,
            password_file=args.password_file,
            cert=args.cert,
            key=args.key,
            extra=extra,
        )
        running = start(plan)
    except (ShareError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host = socket.gethostname() if args.share_address in ("0.0.0.0", "::") else args.share_address
    print(f"Sharing the dashboard at https://{host}:{args.share_port}/ (user {args.user!r}).")
    if plan.password is not None:
        print(f"Password (shown once; set {PASSWORD_ENV} to choose one): {plan.password}")
    try:
        while running.streamlit.poll() is None and running.nginx.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        shutil.rmtree(plan.folder, ignore_errors=True)  # the key, the password hash, the logs
    return 0
