"""Real receivers for delivered messages, shared by the notifier and account tests.

- `start_smtp()` / `running_smtp()`: an aiosmtpd SMTP server on 127.0.0.1 that records
  every message in its `Mailbox` (and refuses recipients at `refused.example`);
- `running_hook()`: an HTTP server standing in for the SMS webhook, recording each POST
  (`/fail` answers 500, `/slow` waits a second first).

Both run in threads of their own, so they serve whichever event loop the client is on.
A message is recorded before the server answers: once a send returned, it is there.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = [
    "Hook",
    "Mailbox",
    "Received",
    "SmtpServer",
    "free_port",
    "running_hook",
    "running_smtp",
    "start_smtp",
]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: bytes | None

    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    @property
    def text(self) -> str:
        """The decoded body, with the wire's CRLF line ends made plain newlines."""
        body = self.message().get_content()
        assert isinstance(body, str)
        return body.replace("\r\n", "\n")


@dataclass
class Mailbox:
    """An aiosmtpd handler: refuses recipients at refused.example, records the rest."""

    received: list[Received] = field(default_factory=list)

    def to(self, address: str) -> list[Received]:
        """The messages for `address`, oldest first."""
        return [r for r in self.received if address in r.rcpt_tos]

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert envelope.mail_from is not None
        assert isinstance(envelope.original_content, bytes)
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                tls=session.ssl is not None or _implicit_tls(server),  # STARTTLS or smtps
                login=session.login_data if session.authenticated else None,
            )
        )
        return "250 Message accepted"


def _implicit_tls(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    controller: Controller

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(*, port: int | None = None, **options: Any) -> SmtpServer:
    """Start a server with aiosmtpd's SMTP `options` (`tls_context`, `authenticator`, ...).

    `port` reuses a known port (a server that comes back); the caller stops the server.
    """
    mailbox = Mailbox()
    port = port or free_port()  # Controller(port=0) fails its own start-up check
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return SmtpServer(port=port, mailbox=mailbox, controller=controller)


@contextmanager
def running_smtp(**options: Any) -> Iterator[SmtpServer]:
    server = start_smtp(**options)
    try:
        yield server
    finally:
        server.stop()


# --- the SMS webhook --------------------------------------------------------------------


@dataclass
class Hook:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    """One entry per POST: path, body (decoded JSON), content_type, authorization, peer."""

    def texts_to(self, number: str) -> list[str]:
        """The texts sent to `number`, oldest first."""
        return [r["body"]["text"] for r in self.received if r["body"].get("to") == number]


class _HookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: shows whether the client is reused
    hook: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/slow":
            time.sleep(1.0)
        self.hook.received.append(
            {
                "path": self.path,
                "body": json.loads(body),
                "content_type": self.headers["Content-Type"],
                "authorization": self.headers["Authorization"],
                "peer": self.client_address,
            }
        )
        status, answer = (500, body) if self.path == "/fail" else (204, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_hook() -> Iterator[Hook]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
    port = server.server_address[1]
    hook = Hook(url=f"http://127.0.0.1:{port}")
    server.RequestHandlerClass = type("Handler", (_HookHandler,), {"hook": hook})
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
