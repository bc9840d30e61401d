"""Graceful shutdown (issue 9, item 6): SIGTERM to `gateway serve` lets a request in flight
finish, refuses new connections, closes the pool and Valkey, and exits 0.

The request in flight is a password reset whose text message is held by a webhook
receiver until the test lets it go, after the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ADMIN = ("operator", "an operator's long password")
BOUND = 30.0
"""Seconds any step may take at most before the test gives up (never a measured figure)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _HeldHook:
    """An SMS webhook that holds every POST until `release` is set."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.arrived.set()
                hook.release.wait(BOUND)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"


@contextmanager
def _held_hook() -> Iterator[_HeldHook]:
    hook = _HeldHook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        hook.server.shutdown()
        hook.server.server_close()


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_finishes_the_request_in_flight_then_exits(tmp_path: Path) -> None:
    port = _free_port()
    with _held_hook() as hook:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATA_DIR=str(tmp_path / "data"),
            GATEWAY_ADMIN_LOGIN=ADMIN[0],
            GATEWAY_ADMIN_PASSWORD=ADMIN[1],
            GATEWAY_PASSWORD_PROFILE="test",
            GATEWAY_SMS_WEBHOOK_URL=hook.url,
            GATEWAY_SHUTDOWN_GRACE="20",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + BOUND
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "not healthy in time"
                time.sleep(0.05)
            issued = httpx.post(
                f"{base}/api/v1/auth/keys",
                json={"login": ADMIN[0], "password": ADMIN[1], "name": "t"},
                timeout=BOUND,
            )
            admin = {"Authorization": f"Bearer {issued.json()['key']}"}
            created = httpx.post(
                f"{base}/api/v1/users",
                json={"login": "texted", "phone": "+420601123456", "password": "x" * 16},
                headers=admin,
                timeout=BOUND,
            )
            assert created.status_code == 201, created.text

            answer: list[httpx.Response] = []
            in_flight = threading.Thread(
                target=lambda: answer.append(
                    httpx.post(
                        f"{base}/api/v1/auth/password-reset",
                        json={"login": "texted", "methods": ["sms_code"]},
                        headers=admin,
                        timeout=BOUND,
                    )
                )
            )
            in_flight.start()
            assert hook.arrived.wait(BOUND), "the reset never reached the webhook"

            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + BOUND
            while not _refused(port):  # the listener goes first
                assert time.monotonic() < deadline, "still accepting connections"
                time.sleep(0.05)
            assert process.poll() is None  # ... while the request in flight is still held
            hook.release.set()
            in_flight.join(BOUND)
            assert answer, "the request in flight got no answer"
            assert answer[0].status_code == 200, answer[0].text
            output, _ = process.communicate(timeout=BOUND)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    assert "stopped: database pool and Valkey client closed" in output
    assert _refused(port)
