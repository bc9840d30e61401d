"""Delivery of account-challenge messages: SMTP for e-mail, an HTTP webhook for SMS, an outbox.

    Notifier          the protocol: `send(message)`, raising DeliveryFailed
    ├── SmtpNotifier        smtp:// (STARTTLS when offered) and smtps:// (implicit TLS)
    ├── WebhookSmsNotifier  POST {"to", "text"} as JSON; any non-2xx fails
    └── OutboxNotifier      a row in `gw_outbox`, printed by `gateway outbox`
    Notifiers         one notifier per channel, built by `build_notifiers` from the settings

A message's text holds secrets (codes, links): it is never logged nor put into an
exception. Logs name the channel and a masked recipient. Notifiers do not retry: the
challenge engine reports a failure to its caller, who retries.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
from sqlalchemy import Table, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DeliveryFailed",
    "Message",
    "Notifier",
    "Notifiers",
    "OutboxNotifier",
    "SmtpNotifier",
    "WebhookSmsNotifier",
    "build_notifiers",
    "mask_recipient",
]

_log = logging.getLogger("gateway.notify")

Channel = Literal["email", "sms"]


@dataclass(frozen=True, slots=True)
class Message:
    channel: Channel
    to: str
    """An e-mail address or a phone number."""
    subject: str | None
    """E-mail only; ignored for SMS."""
    text: str
    """Plain text; holds secrets."""


class DeliveryFailed(Exception):
    """A message could not be handed over; names the channel and the reason, never the text."""

    def __init__(self, channel: Channel, reason: str) -> None:
        super().__init__(f"{channel} delivery failed: {reason}")
        self.channel: Channel = channel
        self.reason = reason


class Notifier(Protocol):
    async def send(self, message: Message) -> None:
        """Hand the message over, or raise DeliveryFailed."""


@runtime_checkable
class _Closeable(Protocol):
    async def aclose(self) -> None: ...


def mask_recipient(recipient: str) -> str:
    """`jane@example.com` → `j***@example.com`; `+4917012345612` → `+49*********12`."""
    local, at, domain = recipient.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    if len(recipient) <= 5:
        return "*" * len(recipient)
    return recipient[:3] + "*" * (len(recipient) - 5) + recipient[-2:]


def _delivered(message: Message, via: str) -> None:
    _log.info("%s to %s handed over (%s)", message.channel, mask_recipient(message.to), via)


def _failed(message: Message, reason: str) -> DeliveryFailed:
    _log.warning("%s to %s not delivered: %s", message.channel, mask_recipient(message.to), reason)
    return DeliveryFailed(message.channel, reason)


class SmtpNotifier:
    """E-mail over SMTP, one connection per message.

    `smtp://user:pass@host:port` upgrades with STARTTLS when the server offers it (default
    port 587); `smtps://` speaks TLS from the start (default port 465). Certificates are
    verified against the system's trust store, or against `tls_context` when given.
    """

    def __init__(
        self,
        url: str,
        sender: str,
        timeout: float = 10.0,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"smtp", "smtps"}:
            raise ValueError(f"SMTP URL: the scheme must be smtp or smtps, not {scheme!r}")
        if not parts.hostname:
            raise ValueError("SMTP URL: a host is needed (smtp://user:pass@host:port)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP URL: the port must be a number from 1 to 65535") from None
        address = email.utils.parseaddr(sender)[1]
        if "@" not in address:
            raise ValueError(f"SMTP sender: an e-mail address is needed, not {sender!r}")
        self._implicit_tls = scheme == "smtps"
        self._host = parts.hostname
        self._port = port or (465 if self._implicit_tls else 587)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password is not None else None
        self._sender = sender
        self._envelope_sender = address
        self._domain = address.rpartition("@")[2]
        self._timeout = timeout
        self._tls_context = tls_context

    def _email(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
        mail["Message-ID"] = email.utils.make_msgid(domain=self._domain)
        mail.set_content(message.text, charset="utf-8")
        return mail

    async def send(self, message: Message) -> None:
        try:
            mail = self._email(message)
        except ValueError:
            raise _failed(message, "the recipient or subject is not a valid header") from None
        try:
            await aiosmtplib.send(
                mail,
                sender=self._envelope_sender,
                recipients=[message.to],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._implicit_tls,
                start_tls=False if self._implicit_tls else None,
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _failed(message, _smtp_reason(exc)) from None
        _delivered(message, f"smtp {self._host}:{self._port}")


def _smtp_reason(exc: BaseException) -> str:
    # Server replies are reduced to their codes: a refusal may echo the address.
    match exc:
        case aiosmtplib.SMTPRecipientsRefused(recipients=[refused, *_]):
            return f"the server refused the recipient ({refused.code})"
        case aiosmtplib.SMTPRecipientRefused(code=code):
            return f"the server refused the recipient ({code})"
        case aiosmtplib.SMTPSenderRefused(code=code):
            return f"the server refused the sender ({code})"
        case aiosmtplib.SMTPAuthenticationError(code=code):
            return f"authentication failed ({code})"
        case aiosmtplib.SMTPDataError(code=code):
            return f"the server refused the message ({code})"
        case aiosmtplib.SMTPResponseException(code=code):
            return f"the server answered {code}"
        case TimeoutError():
            return "timed out"
        case ssl.SSLError():
            return f"TLS failed ({exc.__class__.__name__})"
        case aiosmtplib.SMTPConnectError() | aiosmtplib.SMTPServerDisconnected():
            return f"connection failed ({exc})"
        case aiosmtplib.SMTPException():
            return str(exc)
        case _:
            return f"connection failed ({exc.__class__.__name__}: {exc})"


class WebhookSmsNotifier:
    """SMS through an HTTP webhook: POST `{"to": ..., "text": ...}`; any 2xx is success.

    Credentials in the URL's user part are sent as Basic auth. One client is reused
    (created on first use) until `aclose()`.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in {"http", "https"}:
            raise ValueError(
                f"SMS webhook URL: the scheme must be http or https, not {parsed.scheme!r}"
            )
        if not parsed.host:
            raise ValueError("SMS webhook URL: a host is needed")
        self._auth = (
            httpx.BasicAuth(unquote(parsed.username), unquote(parsed.password))
            if parsed.username or parsed.password
            else None
        )
        self._url = parsed.copy_with(username=None, password=None)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def send(self, message: Message) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, auth=self._auth)
        try:
            response = await self._client.post(
                self._url, json={"to": message.to, "text": message.text}
            )
        except httpx.TimeoutException:
            raise _failed(message, "the webhook timed out") from None
        except httpx.ConnectError as exc:
            raise _failed(message, f"could not connect to the webhook ({exc})") from None
        except httpx.HTTPError as exc:
            raise _failed(message, f"the webhook failed ({exc.__class__.__name__})") from None
        if not response.is_success:
            raise _failed(message, f"the webhook answered {response.status_code}")
        _delivered(message, f"webhook {self._url.host}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class OutboxNotifier:
    """The embedded default's delivery: a row in `gw_outbox` per message, in its own transaction.

    Pass the writing engine (`Services.writer`), so that SQLite takes its write lock up front.
    """

    def __init__(self, engine: AsyncEngine, table: Table, clock: Callable[[], dt.datetime]) -> None:
        self._engine = engine
        self._table = table
        self._clock = clock

    async def send(self, message: Message) -> None:
        row = {
            "created_on": self._clock(),
            "channel": message.channel,
            "recipient": message.to,
            "subject": message.subject,
            "body": message.text,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(self._table).values(row))
        except SQLAlchemyError as exc:
            # The error's own text would carry the statement's parameters: the body.
            cause = getattr(exc, "orig", None) or exc
            raise _failed(
                message, f"the outbox could not be written ({cause.__class__.__name__})"
            ) from None
        _delivered(message, "outbox")


@dataclass(frozen=True, slots=True)
class Notifiers:
    """The notifier for each channel; `observe(channel, outcome)` hears every send's outcome
    (`delivered` or `failed`)."""

    email: Notifier
    sms: Notifier
    observe: Callable[[str, str], None] | None = None

    async def send(self, message: Message) -> None:
        """Send through the message's channel; raises DeliveryFailed."""
        notifier = self.email if message.channel == "email" else self.sms
        try:
            await notifier.send(message)
        except DeliveryFailed:
            if self.observe is not None:
                self.observe(message.channel, "failed")
            raise
        if self.observe is not None:
            self.observe(message.channel, "delivered")

    async def aclose(self) -> None:
        """Release what the notifiers hold (the webhook's HTTP client)."""
        for notifier in {id(n): n for n in (self.email, self.sms)}.values():
            if isinstance(notifier, _Closeable):
                await notifier.aclose()


def build_notifiers(
    *,
    smtp_url: str | None,
    smtp_sender: str,
    sms_webhook_url: str | None,
    engine: AsyncEngine,
    outbox_table: Table,
    clock: Callable[[], dt.datetime],
    observe: Callable[[str, str], None] | None = None,
) -> Notifiers:
    """SMTP and the webhook where their URLs are set; the outbox for a channel without one.

    Raises ValueError for a URL of the wrong scheme or without a host.
    """
    outbox = OutboxNotifier(engine, outbox_table, clock)
    return Notifiers(
        email=SmtpNotifier(smtp_url, smtp_sender) if smtp_url else outbox,
        sms=WebhookSmsNotifier(sms_webhook_url) if sms_webhook_url else outbox,
        observe=observe,
    )
