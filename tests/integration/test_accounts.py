"""Accounts over REST: register with challenges, answer them, and what bounds registering.

Messages are read where a person would find them: from a real SMTP server and a real
HTTP receiver standing in for the SMS webhook (`tests.receivers`), or, on the embedded
default without either URL, from the outbox table. `Desk` is the harness the other
`test_accounts_*` modules share: an app whose integration holds `registerUsers` and
`resetPasswords`, a clock the test moves, and the messages each user received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from gateway.settings import Settings
from resolvers.services import Services
from tests.conftest import USER_PASSWORD, Api, start_api
from tests.receivers import Hook, SmtpServer, free_port, running_hook, running_smtp, start_smtp

REGISTER = "/api/v1/auth/register"
CHALLENGE = "/api/v1/auth/challenge"
LINK = "/api/v1/auth/challenge/link"
RETRY = "/api/v1/auth/challenge/retry"
RESET = "/api/v1/auth/password-reset"
RESET_COMPLETE = "/api/v1/auth/password-reset/complete"
KEYS = "/api/v1/auth/keys"
CURRENT = "/api/v1/auth/keys/current"

ORIGIN = "https://app.example"
LINK_URL = f"{ORIGIN}/verify?token={{token}}"
PUBLIC_URL = "https://gateway.example"
DESK = "desk"
"""The integration: roles `registrar` (registerUsers, resetPasswords) and `integration`."""

Delivery = Literal["receivers", "outbox"]
running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)

_CODE = re.compile(r"(?:^ {4}|code to [a-z ]+: )(\d{6,10})\b", re.MULTILINE)
_LINK = re.compile(r"^(https?://\S+)$", re.MULTILINE)


class Clock:
    """The app's `Services.clock`, moved by the test."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def phone_of(login: str) -> str:
    return "+420" + str(int(hashlib.sha256(login.encode()).hexdigest(), 16) % 10**9).zfill(9)


def email_of(login: str) -> str:
    return f"{login}@example.com"


@dataclass
class Desk:
    """An app with an integration key, a controlled clock and the users' inboxes."""

    api: Api
    key: str
    clock: Clock
    smtp: SmtpServer | None
    hook: Hook | None

    @property
    def client(self) -> httpx.AsyncClient:
        return self.api.client

    async def post(self, path: str, body: object, key: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.api.auth(key or self.key))

    async def register(
        self,
        login: str,
        methods: tuple[str, ...] | None = ("email_code",),
        *,
        link_url: str | None = None,
        key: str | None = None,
        **user: object,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "user": {
                "login": login,
                "password": USER_PASSWORD,
                "email": email_of(login),
                "phone": phone_of(login),
                "roles": ["integration"],
                **user,
            }
        }
        if methods is not None:
            body["challenge"] = {"methods": list(methods)}
            if link_url is not None:
                body["challenge"]["link_url"] = link_url
        return await self.post(REGISTER, body, key)

    async def registered(self, login: str, methods: tuple[str, ...], **options: Any) -> str:
        """Register with a challenge; its id."""
        response = await self.register(login, methods, **options)
        assert response.status_code == 201, response.text
        challenge_id: str = response.json()["challenge_id"]
        return challenge_id

    async def answer(self, challenge_id: str, method: str, code: str) -> httpx.Response:
        return await self.post(
            CHALLENGE, {"challenge_id": challenge_id, "method": method, "code": code}
        )

    async def retry(self, **which: str) -> httpx.Response:
        return await self.post(RETRY, which)

    async def messages(self, login: str, channel: Literal["email", "sms"]) -> list[str]:
        """The texts `login` received on `channel`, oldest first."""
        if channel == "email" and self.smtp is not None:
            return [r.text for r in self.smtp.mailbox.to(email_of(login))]
        if channel == "sms" and self.hook is not None:
            return self.hook.texts_to(phone_of(login))
        async with self.api.db() as db:
            return await outbox_texts(
                db, channel, email_of(login) if channel == "email" else phone_of(login)
            )

    async def codes(self, login: str, method: Literal["email_code", "sms_code"]) -> list[str]:
        """Every code sent to `login` for `method`, oldest first."""
        channel: Literal["email", "sms"] = "sms" if method == "sms_code" else "email"
        texts = await self.messages(login, channel)
        return [m.group(1) for t in texts if (m := _CODE.search(t)) and "link" not in t]

    async def code(self, login: str, method: Literal["email_code", "sms_code"]) -> str:
        return (await self.codes(login, method))[-1]

    async def links(self, login: str) -> list[str]:
        """Every link e-mailed to `login`, oldest first."""
        return [m.group(1) for t in await self.messages(login, "email") if (m := _LINK.search(t))]

    async def token(self, login: str) -> str:
        return token_of((await self.links(login))[-1])

    async def can_log_in(self, login: str, password: str = USER_PASSWORD) -> bool:
        body = {"login": login, "password": password, "name": "test"}
        response = await self.client.post(KEYS, json=body)
        assert response.status_code in {201, 401}, response.text
        return response.status_code == 201

    def burst(self, requests: list[tuple[str, object]]) -> list[httpx.Response]:
        """POST all `requests` at once on the app's own event loop.

        The test client hands requests to the app one by one; an ASGI transport in its
        portal, next to the app, sends them together.
        """

        async def send() -> list[httpx.Response]:
            app: Any = self.api.app  # Litestar's ASGI types are narrower than httpx's
            transport = httpx.ASGITransport(app=app)
            headers = self.api.auth(self.key)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return list(
                    await asyncio.gather(*(c.post(p, json=b, headers=headers) for p, b in requests))
                )

        answers: list[httpx.Response] = self.api.client.blocking_portal.call(send)
        return answers


async def outbox_texts(db: Services, channel: str, recipient: str) -> list[str]:
    table = db.schema.system.outbox
    async with db.engine.connect() as conn:
        rows = await conn.scalars(
            select(table.c.body)
            .where(table.c.channel == channel, table.c.recipient == recipient)
            .order_by(table.c.id)
        )
        return list(rows)


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def gateway_path(link: str) -> str:
    """A link to the gateway's own page, as a path the test client can GET."""
    assert link.startswith(f"{PUBLIC_URL}{LINK}?token="), link
    return link.removeprefix(PUBLIC_URL)


def with_accounts(settings: Settings, **changes: Any) -> Settings:
    accounts = dataclasses.replace(
        settings.accounts,
        **{"challenge_link_origins": (ORIGIN,), "public_url": PUBLIC_URL, **changes},
    )
    return dataclasses.replace(settings, accounts=accounts)


@asynccontextmanager
async def open_desk(
    settings: Settings, delivery: Delivery = "receivers", **accounts: Any
) -> AsyncIterator[Desk]:
    """The app on `settings` with `GATEWAY_CHALLENGE_*` etc. changed by `accounts`.

    `receivers` points SMTP and the SMS webhook at real servers started here (unless
    `accounts` names its own URLs); `outbox` leaves both unset (the embedded default).
    """
    with ExitStack() as stack:
        smtp = hook = None
        if delivery == "receivers":
            if "smtp_url" not in accounts:
                smtp = stack.enter_context(running_smtp())
                accounts["smtp_url"] = smtp.url
            if "sms_webhook_url" not in accounts:
                hook = stack.enter_context(running_hook())
                accounts["sms_webhook_url"] = hook.url
        async with running_api(with_accounts(settings, **accounts)) as api:
            await api.create_user(DESK, roles=["registrar", "integration"])
            key = await api.login(DESK)
            clock = Clock()
            api.app.state.services = dataclasses.replace(api.app_services, clock=clock)
            yield Desk(api=api, key=key, clock=clock, smtp=smtp, hook=hook)


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """Run on SQLite only: `reason` says why PostgreSQL would add nothing."""
    del reason
    return pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def problem_fields(response: httpx.Response) -> set[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return {e["field"] for e in response.json().get("errors", [])}


# --- every method, alone and combined -------------------------------------------------

COMBINATIONS: list[tuple[str, tuple[str, ...], str | None]] = [
    ("ecode", ("email_code",), None),
    ("scode", ("sms_code",), None),
    ("elink", ("email_link",), LINK_URL),
    ("glink", ("email_link",), None),  # the gateway's own page
    ("all3", ("email_link", "email_code", "sms_code"), None),
    ("both", ("email_code", "sms_code"), LINK_URL),
]


@pytest.mark.parametrize("delivery", ["receivers", "outbox"])
async def test_every_method_alone_and_combined_activates_only_when_all_are_answered(
    settings: Settings, delivery: Delivery
) -> None:
    async with open_desk(settings, delivery) as desk:
        for login, methods, link_url in COMBINATIONS:
            response = await desk.register(login, methods, link_url=link_url)
            assert response.status_code == 201, response.text
            body = response.json()
            assert set(body) == {"user_id", "challenge_id", "methods", "expires_at"}
            assert re.fullmatch(r"[0-9a-f]{32}", body["challenge_id"])
            assert body["methods"] == list(methods)
            expires_at = dt.datetime.fromisoformat(body["expires_at"])
            assert expires_at == desk.clock.now + dt.timedelta(seconds=600)
            challenge_id = body["challenge_id"]

            pending = list(methods)
            for method in methods:
                assert not await desk.can_log_in(login), (login, method)
                if method == "email_link":
                    [link] = await desk.links(login)
                    if link_url is None:
                        page = await desk.client.get(gateway_path(link))
                        assert page.status_code == 200, page.text
                        assert page.headers["content-type"].startswith("text/html")
                        assert page.headers["cache-control"] == "no-store"
                        pending.remove(method)
                        done = "Your account is confirmed" if not pending else "Still to confirm"
                        assert done in page.text
                        continue
                    assert link.startswith(f"{ORIGIN}/verify?token=")
                    answered = await desk.post(CHALLENGE, {"token": token_of(link)})
                else:
                    [code] = await desk.codes(login, method)  # type: ignore[arg-type]
                    assert len(code) == 6
                    answered = await desk.answer(challenge_id, method, code)
                assert answered.status_code == 200, answered.text
                pending.remove(method)
                assert answered.json() == {
                    "challenge_id": challenge_id,
                    "satisfied": [m for m in methods if m not in pending],
                    "pending": pending,
                    "activated": not pending,
                }
            assert await desk.can_log_in(login)

        if delivery == "receivers":
            assert desk.smtp is not None
            assert desk.hook is not None
            [mail] = desk.smtp.mailbox.to(email_of("ecode"))
            message = mail.message()
            assert message["Subject"] == "Confirm your account"
            assert message["To"] == email_of("ecode")
            assert "valid until" in mail.text
            [sms] = [r for r in desk.hook.received if r["body"]["to"] == phone_of("scode")]
            assert sms["content_type"] == "application/json"
            assert set(sms["body"]) == {"to", "text"}
        else:
            async with desk.api.db() as db:  # nothing left the gateway but the outbox
                assert await outbox_texts(db, "sms", phone_of("all3"))


@sqlite_only("one app, no database behaviour beyond the first test")
async def test_a_link_answers_once_and_the_page_says_so(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        challenge_id = await desk.registered("carol", ("email_link", "sms_code"))
        [link] = await desk.links("carol")
        first = await desk.client.get(gateway_path(link))
        assert first.status_code == 200
        assert "Still to confirm: sms code." in first.text
        again = await desk.client.get(gateway_path(link))
        assert again.status_code == 410
        assert "This link does not work" in again.text
        assert (await desk.post(CHALLENGE, {"token": token_of(link)})).status_code == 410
        unknown = await desk.client.get(f"{LINK}?token=not-a-token-we-sent")
        assert unknown.status_code == 410

        sms = await desk.answer(challenge_id, "sms_code", await desk.code("carol", "sms_code"))
        assert sms.json()["activated"] is True
        done = await desk.client.get(gateway_path(link))
        assert done.status_code == 200
        assert "already" in done.text
        # A key is not needed to follow a link, and nothing but a link works without one.
        bare = await desk.client.post(CHALLENGE, json={"token": token_of(link)})
        assert bare.status_code == 401


# --- validation -------------------------------------------------------------------------


@sqlite_only("validation happens before any SQL")
async def test_link_url_must_carry_a_token_and_an_allowed_origin(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        refused = {
            "https://evil.example/verify?token={token}": "not allowed",
            "https://app.example@evil.example/verify?token={token}": "not allowed",
            "http://app.example/verify?token={token}": "not allowed",
            "https://app.example.evil.example/?t={token}": "not allowed",
            "https://app.example/verify": "{token}",
            "https://app.example/verify?a={token}&b={token}": "{token}",
            "javascript:alert(1)//{token}": "not allowed",
        }
        for link_url, message in refused.items():
            response = await desk.register("carol", ("email_link",), link_url=link_url)
            assert response.status_code == 422, (link_url, response.text)
            [error] = response.json()["errors"]
            assert error["field"] == "challenge.link_url"
            assert message in error["message"], error

        allowed = await desk.register(
            "carol", ("email_link",), link_url="https://APP.example/v/{token}?x=1"
        )
        assert allowed.status_code == 201, allowed.text
        [link] = await desk.links("carol")
        assert link.startswith("https://APP.example/v/")
        assert link.endswith("?x=1")


@sqlite_only("validation happens before any SQL")
async def test_each_method_needs_its_address(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        no_email = await desk.register("carol", ("email_code", "sms_code"), email=None)
        assert no_email.status_code == 422
        assert problem_fields(no_email) == {"user.email"}
        no_phone = await desk.register("carol", ("sms_code", "email_link"), phone=None)
        assert problem_fields(no_phone) == {"user.phone"}
        neither = await desk.register("carol", ("email_link", "sms_code"), email=None, phone=None)
        assert problem_fields(neither) == {"user.email", "user.phone"}
        for methods in ([], ["email_code", "email_code"], ["carrier_pigeon"]):
            body = {
                "user": {"login": "carol", "password": USER_PASSWORD},
                "challenge": {"methods": methods},
            }
            bad = await desk.post(REGISTER, body)
            assert problem_fields(bad) == {"challenge.methods"}, (methods, bad.text)
        chosen_active = await desk.register("carol", ("email_code",), active=True)
        assert problem_fields(chosen_active) == {"user.active"}

        # Nothing was created on the way: the login is still free.
        assert (await desk.register("carol", ("sms_code",), email=None)).status_code == 201


# --- what bounds registering -----------------------------------------------------------


@sqlite_only("permission checks are in memory")
async def test_register_grants_no_more_than_the_integration_holds(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        over = await desk.register("carol", None, roles=["operator"])
        assert over.status_code == 403
        assert "operator" in over.json()["detail"]
        by_group = await desk.register("carol", None, roles=[], groups=["Reporting"])
        assert by_group.status_code == 403
        assert "reporter" in by_group.json()["detail"]

        plain = await desk.register("carol", None, roles=["integration", "registrar"])
        assert plain.status_code == 201, plain.text
        assert plain.json()["challenge_id"] is None
        assert await desk.can_log_in("carol")  # no challenge: active at once

        await desk.api.create_user("ivan", roles=["integration", "operator"])
        lacking = await desk.register("dave", ("email_code",), key=await desk.api.login("ivan"))
        assert lacking.status_code == 403
        anonymous = await desk.client.post(REGISTER, json={"user": {"login": "dave"}})
        assert anonymous.status_code == 401
        assert not await desk.messages("dave", "email")


# --- delivery failures ----------------------------------------------------------------


@sqlite_only("delivery happens after the commit; the database adds nothing")
async def test_a_failed_delivery_answers_502_and_leaves_the_challenge_retryable(
    settings: Settings,
) -> None:
    port = free_port()  # nothing listens there yet
    async with open_desk(settings, "receivers", smtp_url=f"smtp://127.0.0.1:{port}") as desk:
        failed = await desk.register("carol", ("email_code", "sms_code"))
        assert failed.status_code == 502, failed.text
        assert failed.headers["content-type"] == "application/problem+json"
        challenge_id = failed.json()["challenge_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", challenge_id)
        assert "email_code" in failed.json()["detail"]
        assert desk.hook is not None
        assert len(desk.hook.texts_to(phone_of("carol"))) == 1  # the SMS went out
        assert not await desk.can_log_in("carol")

        # No cooldown for a send that did not happen: retried at once, still failing.
        again = await desk.retry(challenge_id=challenge_id)
        assert again.status_code == 502, again.text
        assert again.json()["challenge_id"] == challenge_id
        [_, sms] = desk.hook.texts_to(phone_of("carol"))
        sms_code = _CODE.search(sms)
        assert sms_code is not None
        assert (await desk.answer(challenge_id, "sms_code", sms_code.group(1))).status_code == 200
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 502

        smtp = start_smtp(port=port)  # the server is back: the retry delivers
        try:
            sent = await desk.retry(challenge_id=challenge_id)
            assert sent.status_code == 200, sent.text
            [mail] = smtp.mailbox.to(email_of("carol"))
        finally:
            smtp.stop()
        # Failed sends count towards the cap all the same: their secrets could take guesses.
        assert sent.json()["retries_left"] == 2
        code = _CODE.search(mail.text)
        assert code is not None
        answered = await desk.answer(challenge_id, "email_code", code.group(1))
        assert answered.json()["activated"] is True
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 409  # completed
