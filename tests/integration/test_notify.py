"""Notifiers against real receivers: an aiosmtpd SMTP server (plain, STARTTLS, AUTH,
implicit TLS), an HTTP server for the SMS webhook, and the outbox table on SQLite.

The certificate is self-signed, made here with the `openssl` command.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Column, Integer, MetaData, Table, select

from resolvers.notify import (
    DeliveryFailed,
    Message,
    OutboxNotifier,
    SmtpNotifier,
    WebhookSmsNotifier,
    build_notifiers,
    mask_recipient,
)
from resolvers.services import Services
from resolvers.storage import create_engine
from tests.receivers import Hook, Mailbox, free_port, running_hook, start_smtp
from tests.receivers import SmtpServer as RunningSmtp

SECRET = "493817"
LINK = "https://app.example/verify?token=Zk3v9QmXw2LpT8sYbN4c"
TEXT = f"Grüße! Your code is {SECRET}; or open {LINK}"
SENDER = "Jetstack <no-reply@gateway.example>"
SMTP_USER = "mailer"
SMTP_PASSWORD = "p@ss word:42"
SMTP_PASSWORD_IN_URL = "p%40ss%20word%3A42"


def email_to(to: str = "jane@example.com") -> Message:
    return Message(channel="email", to=to, subject="Confirm your account", text=TEXT)


def sms_to(to: str = "+4917012345612") -> Message:
    return Message(channel="sms", to=to, subject=None, text=TEXT)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in (SECRET, LINK, SMTP_PASSWORD, "hook-pass"):
            assert secret not in text, text


def client_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What every logger but the test servers' own wrote at INFO and above.

    DEBUG is left out: aiosqlite logs every statement's parameters there, the outbox's too.
    """
    return [r.getMessage() for r in caplog.records if r.name != "mail.log"]


# --- a real SMTP server -----------------------------------------------------------------


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers a failure (535) itself.
    return AuthResult(success=ok, handled=ok, auth_data=auth_data)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = (
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
    )
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


SmtpServer = Callable[..., tuple[int, Mailbox]]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Start aiosmtpd servers with the given SMTP options; returns (port, mailbox)."""
    servers: list[RunningSmtp] = []

    def start(**options: Any) -> tuple[int, Mailbox]:
        servers.append(start_smtp(**options))
        return servers[-1].port, servers[-1].mailbox

    yield start
    for server in servers:
        server.stop()


# --- SMTP -------------------------------------------------------------------------------


async def test_smtp_plain_delivers_a_proper_message(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, mailbox = smtp_server()

    await SmtpNotifier(f"smtp://127.0.0.1:{port}", SENDER).send(email_to())

    [received] = mailbox.received
    assert received.mail_from == "no-reply@gateway.example"
    assert received.rcpt_tos == ["jane@example.com"]
    assert not received.tls
    mail = received.message()
    assert mail["From"] == SENDER
    assert mail["To"] == "jane@example.com"
    assert mail["Subject"] == "Confirm your account"
    assert mail["Message-ID"].endswith("@gateway.example>")
    sent = email.utils.parsedate_to_datetime(mail["Date"])
    assert abs(sent - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().rstrip() == TEXT
    assert any(
        r.levelno == logging.INFO and "j***@example.com" in r.getMessage() for r in caplog.records
    )
    assert_no_secrets(*client_records(caplog))


async def test_smtp_upgrades_with_starttls_when_offered(
    smtp_server: SmtpServer, certificate: Certificate
) -> None:
    port, mailbox = smtp_server(tls_context=certificate.server_context())
    notifier = SmtpNotifier(
        f"smtp://127.0.0.1:{port}", SENDER, tls_context=certificate.client_context()
    )

    await notifier.send(email_to())

    [received] = mailbox.received
    assert received.tls


async def test_smtp_refuses_an_untrusted_certificate(
    smtp_server: SmtpServer, certificate: Certificate
) -> None:
    port, mailbox = smtp_server(tls_context=certificate.server_context())

    with pytest.raises(DeliveryFailed, match=r"email delivery failed: TLS failed") as failed:
        await SmtpNotifier(f"smtp://127.0.0.1:{port}", SENDER).send(email_to())

    assert mailbox.received == []
    assert_no_secrets(str(failed.value))


async def test_smtp_authenticates(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, mailbox = smtp_server(authenticator=_authenticate, auth_require_tls=False)
    url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD_IN_URL}@127.0.0.1:{port}"

    await SmtpNotifier(url, SENDER).send(email_to())

    [received] = mailbox.received
    assert received.login == SMTP_USER.encode()
    assert_no_secrets(*client_records(caplog))


async def test_smtp_wrong_password_fails(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, mailbox = smtp_server(authenticator=_authenticate, auth_require_tls=False)
    url = f"smtp://{SMTP_USER}:hook-pass@127.0.0.1:{port}"

    with pytest.raises(DeliveryFailed, match=r"authentication failed \(535\)") as failed:
        await SmtpNotifier(url, SENDER, timeout=2).send(email_to())

    assert mailbox.received == []
    assert failed.value.channel == "email"
    assert_no_secrets(str(failed.value), *client_records(caplog))
    assert any(r.levelno == logging.WARNING and "535" in r.getMessage() for r in caplog.records)


async def test_smtps_speaks_tls_from_the_start(
    smtp_server: SmtpServer, certificate: Certificate
) -> None:
    port, mailbox = smtp_server(ssl_context=certificate.server_context())
    notifier = SmtpNotifier(
        f"smtps://127.0.0.1:{port}", SENDER, tls_context=certificate.client_context()
    )

    await notifier.send(email_to())

    [received] = mailbox.received
    assert received.tls
    assert received.message().get_content().rstrip() == TEXT


async def test_smtp_refused_recipient_fails(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, mailbox = smtp_server()

    with pytest.raises(DeliveryFailed, match=r"refused the recipient \(550\)") as failed:
        await SmtpNotifier(f"smtp://127.0.0.1:{port}", SENDER).send(
            email_to("nobody@refused.example")
        )

    assert mailbox.received == []
    assert "nobody@" not in str(failed.value)
    assert_no_secrets(str(failed.value), *client_records(caplog))
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and r.name != "mail.log"]
    assert "n***@refused.example" in warning.getMessage()


async def test_smtp_connection_refused_fails() -> None:
    notifier = SmtpNotifier(f"smtp://127.0.0.1:{free_port()}", SENDER)

    with pytest.raises(DeliveryFailed, match="connection failed"):
        await notifier.send(email_to())


async def test_smtp_silent_server_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        notifier = SmtpNotifier(f"smtp://127.0.0.1:{port}", SENDER, timeout=0.3)
        started = time.monotonic()

        with pytest.raises(DeliveryFailed, match="timed out"):
            await notifier.send(email_to())

    assert time.monotonic() - started < 3


# --- a real HTTP receiver for the SMS webhook -------------------------------------------


@pytest.fixture
def hook() -> Iterator[Hook]:
    with running_hook() as received:
        yield received


async def test_webhook_posts_to_and_text(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notifier = WebhookSmsNotifier(f"{hook.url}/sms")
    try:
        await notifier.send(sms_to())
        await notifier.send(sms_to("+15550001111"))
    finally:
        await notifier.aclose()

    first, second = hook.received
    assert first["path"] == "/sms"
    assert first["body"] == {"to": "+4917012345612", "text": TEXT}
    assert first["content_type"] == "application/json"
    assert first["authorization"] is None
    assert second["body"]["to"] == "+15550001111"
    assert first["peer"] == second["peer"], "one client, one kept-alive connection"
    assert any("+49*********12" in r.getMessage() for r in caplog.records)
    assert_no_secrets(*client_records(caplog))


async def test_webhook_sends_url_credentials_as_basic_auth(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = hook.url.replace("http://", "http://sms:hook-pass@") + "/sms"
    notifier = WebhookSmsNotifier(url)
    try:
        await notifier.send(sms_to())
    finally:
        await notifier.aclose()

    [received] = hook.received
    assert received["authorization"] == "Basic c21zOmhvb2stcGFzcw=="  # sms:hook-pass
    assert_no_secrets(*client_records(caplog))


async def test_webhook_works_again_after_aclose(hook: Hook) -> None:
    notifier = WebhookSmsNotifier(f"{hook.url}/sms")
    await notifier.send(sms_to())
    await notifier.aclose()
    await notifier.send(sms_to())
    await notifier.aclose()

    assert len(hook.received) == 2


async def test_webhook_error_status_fails(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notifier = WebhookSmsNotifier(f"{hook.url}/fail")
    try:
        with pytest.raises(DeliveryFailed, match="webhook answered 500") as failed:
            await notifier.send(sms_to())
    finally:
        await notifier.aclose()

    assert failed.value.channel == "sms"
    assert_no_secrets(str(failed.value), *client_records(caplog))  # the answer echoed the text


async def test_webhook_refused_connection_fails() -> None:
    notifier = WebhookSmsNotifier(f"http://127.0.0.1:{free_port()}/sms")
    try:
        with pytest.raises(DeliveryFailed, match="could not connect"):
            await notifier.send(sms_to())
    finally:
        await notifier.aclose()


async def test_webhook_timeout_fails(hook: Hook) -> None:
    notifier = WebhookSmsNotifier(f"{hook.url}/slow", timeout=0.3)
    try:
        with pytest.raises(DeliveryFailed, match="timed out"):
            await notifier.send(sms_to())
    finally:
        await notifier.aclose()


# --- the outbox -------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_outbox_stores_each_message(services: Services) -> None:
    table = services.schema.system.outbox
    notifier = OutboxNotifier(services.writer, table, lambda: NOW)

    await notifier.send(email_to())
    await notifier.send(sms_to())

    async with services.engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).all()
    assert [(r.created_on, r.channel, r.recipient, r.subject, r.body) for r in rows] == [
        (NOW, "email", "jane@example.com", "Confirm your account", TEXT),
        (NOW, "sms", "+4917012345612", None, TEXT),
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_outbox_failure_names_no_secret(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    empty = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no gw_outbox there
    notifier = OutboxNotifier(empty, services.schema.system.outbox, lambda: NOW)
    try:
        with pytest.raises(DeliveryFailed, match="outbox could not be written") as failed:
            await notifier.send(email_to())
    finally:
        await empty.dispose()

    assert_no_secrets(str(failed.value), *client_records(caplog))


# --- choosing notifiers -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_build_notifiers_falls_back_to_the_outbox(services: Services) -> None:
    notifiers = build_notifiers(
        smtp_url=None,
        smtp_sender=SENDER,
        sms_webhook_url=None,
        engine=services.writer,
        outbox_table=services.schema.system.outbox,
        clock=lambda: NOW,
    )
    assert isinstance(notifiers.email, OutboxNotifier)
    assert notifiers.sms is notifiers.email

    await notifiers.send(email_to())
    await notifiers.send(sms_to())
    await notifiers.aclose()

    table = services.schema.system.outbox
    async with services.engine.connect() as conn:
        channels = (await conn.execute(select(table.c.channel).order_by(table.c.id))).scalars()
        assert list(channels) == ["email", "sms"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_build_notifiers_uses_smtp_and_the_webhook_when_set(
    services: Services, smtp_server: SmtpServer, hook: Hook
) -> None:
    port, mailbox = smtp_server()
    notifiers = build_notifiers(
        smtp_url=f"smtp://127.0.0.1:{port}",
        smtp_sender=SENDER,
        sms_webhook_url=f"{hook.url}/sms",
        engine=services.writer,
        outbox_table=services.schema.system.outbox,
        clock=lambda: NOW,
    )
    assert isinstance(notifiers.email, SmtpNotifier)
    assert isinstance(notifiers.sms, WebhookSmsNotifier)

    try:
        await notifiers.send(email_to())
        await notifiers.send(sms_to())
    finally:
        await notifiers.aclose()

    assert [r.rcpt_tos for r in mailbox.received] == [["jane@example.com"]]
    assert [r["body"]["to"] for r in hook.received] == ["+4917012345612"]


@pytest.mark.parametrize(
    ("smtp_url", "sms_webhook_url", "complaint"),
    [
        ("http://mailer:hook-pass@mail.example", None, "SMTP URL: the scheme must be smtp"),
        ("mail.example:587", None, "SMTP URL: the scheme must be smtp"),
        ("smtp://", None, "SMTP URL: a host is needed"),
        ("smtp://mail.example:99999", None, "SMTP URL: the port"),
        (None, "ftp://sms:hook-pass@sms.example/send", "SMS webhook URL: the scheme must be http"),
        (None, "smtp://sms.example", "SMS webhook URL: the scheme must be http"),
        (None, "https:///send", "SMS webhook URL: a host is needed"),
    ],
)
def test_build_notifiers_refuses_bad_urls(
    smtp_url: str | None, sms_webhook_url: str | None, complaint: str
) -> None:
    engine = create_engine("sqlite+aiosqlite://")
    with pytest.raises(ValueError, match=complaint) as refused:
        build_notifiers(
            smtp_url=smtp_url,
            smtp_sender=SENDER,
            sms_webhook_url=sms_webhook_url,
            engine=engine,
            outbox_table=_unused_table(),
            clock=lambda: NOW,
        )
    assert "hook-pass" not in str(refused.value)


def test_smtp_sender_must_be_an_address() -> None:
    with pytest.raises(ValueError, match="SMTP sender"):
        SmtpNotifier("smtp://mail.example", "Jetstack Gateway")


def _unused_table() -> Table:
    return Table("gw_outbox", MetaData(), Column("id", Integer, primary_key=True))


@pytest.mark.parametrize(
    ("recipient", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("+4917012345612", "+49*********12"),
        ("+4912", "*****"),
        ("@example.com", "***@example.com"),
    ],
)
def test_mask_recipient(recipient: str, masked: str) -> None:
    assert mask_recipient(recipient) == masked
