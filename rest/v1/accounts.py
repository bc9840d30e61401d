"""`/api/v1/auth/register`, `/auth/challenge*`, `/auth/password-reset*` (DESIGN §4 Accounts).

Thin: bodies reach `resolvers.challenges` as decoded JSON, which checks every field
(so a request with several faults hears of all of them); the models here document
the shapes.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter, SkipValidation

from resolvers import challenges
from resolvers.errors import Conflict, FieldError, GatewayError, Gone, Invalid, NotFound
from resolvers.services import Services
from rest.openapi import problems
from rest.v1.security import caller
from rest.v1.users import UserIn

__all__ = ["AccountsController"]

_Method = Annotated[str, msgspec.Meta(pattern="^(email_link|email_code|sms_code)$")]


class ChallengeIn(msgspec.Struct, forbid_unknown_fields=True):
    methods: list[_Method]
    """Any combination; each needs the user's address (email or phone)."""
    link_url: str | None = None
    """Where `email_link` points, with `{token}` in it; its origin must be allowed."""


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    user: UserIn
    challenge: ChallengeIn | None = None


class RegisterOut(msgspec.Struct):
    user_id: int
    challenge_id: str | None
    methods: list[str]
    expires_at: dt.datetime | None


class AnswerIn(msgspec.Struct, forbid_unknown_fields=True):
    """A code for one method of a challenge, or an e-mailed link's token."""

    challenge_id: str | None = None
    method: str | None = None
    code: str | None = None
    token: str | None = None


class AnswerOut(msgspec.Struct):
    challenge_id: str
    satisfied: list[str]
    pending: list[str]
    activated: bool
    """Every method is satisfied: the account is active."""


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of them."""

    challenge_id: str | None = None
    login: str | None = None
    email: str | None = None


class RetryOut(msgspec.Struct):
    challenge_id: str
    retries_left: int
    next_retry_at: dt.datetime


class ResetIn(msgspec.Struct, forbid_unknown_fields=True):
    login: str | None = None
    email: str | None = None
    methods: list[_Method] = msgspec.field(default_factory=lambda: ["email_code"])
    link_url: str | None = None


class ResetCompleteIn(msgspec.Struct, forbid_unknown_fields=True):
    password: str
    challenge_id: str | None = None
    method: str | None = None
    code: str | None = None
    token: str | None = None


class ResetOut(msgspec.Struct):
    challenge_id: str
    satisfied: list[str]
    pending: list[str]
    completed: bool
    """Every method is satisfied: the new password is set."""


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", [FieldError("body", "expected an object")])
    return data


def _only(data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    if unknown := sorted(set(data) - allowed):
        raise Invalid("the body is not valid", [FieldError(k, "unknown field") for k in unknown])
    return data


def _answer(data: object) -> dict[str, Any]:
    return _only(_object(data), {"challenge_id", "method", "code", "token"})


_ACCOUNT_PROBLEMS = problems(400, 401, 403, 404, 409, 410, 422, 429)


class AccountsController(Controller):
    path = "/auth"
    tags = ("accounts",)

    @post("/register", responses=problems(400, 401, 403, 409, 422, 502))
    async def register(
        self,
        data: JSONBody[SkipValidation[RegisterIn]],
        services: NamedDependency[Services],
    ) -> RegisterOut:
        """Create a user (registerUsers); with a challenge it stays inactive until answered."""
        principal = await caller()
        body = _only(_object(data), {"user", "challenge"})
        user = body.get("user")
        if not isinstance(user, dict):
            raise Invalid("the body is not valid", [FieldError("user", "expected an object")])
        found = await challenges.register(services, principal, user, body.get("challenge"))
        return RegisterOut(
            user_id=found.user_id,
            challenge_id=found.challenge_id,
            methods=list(found.methods),
            expires_at=found.expires_at,
        )

    @post("/challenge", status_code=200, responses=_ACCOUNT_PROBLEMS)
    async def answer(
        self,
        data: JSONBody[SkipValidation[AnswerIn]],
        services: NamedDependency[Services],
    ) -> AnswerOut:
        """Answer one method: `{challenge_id, method, code}` or `{token}` (registerUsers)."""
        principal = await caller()
        outcome = await challenges.submit(services, principal, **_answer(data))
        return AnswerOut(
            challenge_id=outcome.challenge_id,
            satisfied=list(outcome.satisfied),
            pending=list(outcome.pending),
            activated=outcome.completed,
        )

    @get(
        "/challenge/link",
        include_in_schema=True,
        responses=problems(400, 404, 409, 410, 422),
        security=[],  # the link's token is the credential
    )
    async def follow_link(
        self,
        services: NamedDependency[Services],
        token: Annotated[str, QueryParameter(max_length=200, description="From the e-mail.")],
    ) -> Response[str]:
        """Where an e-mailed link points when the register call gave no `link_url`.

        Answers a small HTML page for the person who clicked, not JSON.
        """
        try:
            outcome = await challenges.submit(services, None, token=token)
        except Conflict:
            return _page("Already confirmed", "This account is confirmed already.", 200)
        except GatewayError as exc:
            status = 410 if isinstance(exc, Gone | NotFound) else 400
            return _page("This link does not work", exc.detail, status)
        if outcome.completed:
            return _page("Your account is confirmed", "You can close this page.", 200)
        waiting = ", ".join(m.replace("_", " ") for m in outcome.pending)
        return _page("Your e-mail address is confirmed", f"Still to confirm: {waiting}.", 200)

    @post("/challenge/retry", status_code=200, responses={**_ACCOUNT_PROBLEMS, **problems(502)})
    async def retry(
        self,
        data: JSONBody[SkipValidation[RetryIn]],
        services: NamedDependency[Services],
    ) -> RetryOut:
        """Send the pending methods again with fresh secrets; old ones stop working."""
        principal = await caller()
        body = _only(_object(data), {"challenge_id", "login", "email"})
        result = await challenges.retry(services, principal, **body)
        return RetryOut(
            challenge_id=result.challenge_id,
            retries_left=result.retries_left,
            next_retry_at=result.next_retry_at,
        )

    @post("/password-reset", status_code=200, responses={**_ACCOUNT_PROBLEMS, **problems(502)})
    async def start_reset(
        self,
        data: JSONBody[SkipValidation[ResetIn]],
        services: NamedDependency[Services],
    ) -> RetryOut:
        """Send a reset challenge (resetPasswords); an unknown user answers alike."""
        principal = await caller()
        body = _only(_object(data), {"login", "email", "methods", "link_url"})
        result = await challenges.start_reset(
            services,
            principal,
            login=body.get("login"),
            email=body.get("email"),
            methods=body.get("methods", ["email_code"]),
            link_url=body.get("link_url"),
        )
        return RetryOut(
            challenge_id=result.challenge_id,
            retries_left=result.retries_left,
            next_retry_at=result.next_retry_at,
        )

    @post("/password-reset/complete", status_code=200, responses=_ACCOUNT_PROBLEMS)
    async def complete_reset(
        self,
        data: JSONBody[SkipValidation[ResetCompleteIn]],
        services: NamedDependency[Services],
    ) -> ResetOut:
        """Answer a reset challenge with the new password; the last answer sets it."""
        principal = await caller()
        body = _only(_object(data), {"challenge_id", "method", "code", "token", "password"})
        password = body.pop("password", None)
        outcome = await challenges.complete_reset(services, principal, password=password, **body)
        return ResetOut(
            challenge_id=outcome.challenge_id,
            satisfied=list(outcome.satisfied),
            pending=list(outcome.pending),
            completed=outcome.completed,
        )


def _page(title: str, text: str, status: int) -> Response[str]:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#1f2933}h1{font-size:1.4rem}</style>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>"
    )
    return Response(
        body,
        status_code=status,
        media_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
        },
    )
