"""Account challenges: verification after registration, and password resets.

A challenge belongs to one user and asks for one or more methods: `email_link`,
`email_code`, `sms_code`. Each method has at most one live secret at a time:

- codes are `code_length` digits and link tokens 256 bits, both from `secrets`;
- a secret is stored as SHA-256 over a random salt and itself (a token also under a
  plain SHA-256 `lookup`, since the token alone must find it), never in clear;
- a secret is bound to its challenge and method, used once, valid `ttl` seconds, and
  dies after `max_attempts` wrong guesses. Every guess first *reserves* an attempt
  in one atomic UPDATE, so however many guesses arrive at once — in one request or
  in many — no secret ever evaluates more than `max_attempts` of them;
- a retry supersedes every live secret of the pending methods before new ones are
  sent, so old codes and links stop working as soon as it commits. Retries are
  limited by a cooldown and a lifetime cap, and never reset attempt counts.

All of this state is in the database, never only in Valkey, so it holds across
workers and never fails open. Work that touches one challenge locks its row first
(`FOR UPDATE` on PostgreSQL; SQLite's writer transactions are serial anyway), so two
methods satisfied at once activate the user exactly once.

Messages are sent after the state that they carry is committed: a failed delivery is
reported (`DeliveryFailed`, 502) with the challenge left retryable at once — the
cooldown does not count a send that did not happen — and a secret is never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import notify
from resolvers.auth import evict_user
from resolvers.errors import (
    Conflict,
    DeliveryFailed,
    FieldError,
    Forbidden,
    GatewayError,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
)
from resolvers.principal import Principal
from resolvers.services import ChallengePolicy, Services
from resolvers.tenant import Permission
from resolvers.users import check_password, register_user

__all__ = [
    "METHODS",
    "ChallengePolicy",
    "Outcome",
    "Registration",
    "RetryResult",
    "complete_reset",
    "register",
    "retry",
    "start_reset",
    "submit",
]

_log = logging.getLogger("gateway.challenges")

Method = Literal["email_link", "email_code", "sms_code"]
Purpose = Literal["verify", "reset"]
METHODS: tuple[Method, ...] = ("email_link", "email_code", "sms_code")
_ADDRESS = {"email_link": "email", "email_code": "email", "sms_code": "phone"}
_TOKEN_BYTES = 32
_MAX_CODE_INPUT = 64
_MAX_TOKEN_INPUT = 200
_MAX_LINK_URL = 2000
_CHALLENGE_ID = 32  # hex characters
_THROTTLE_WINDOW = dt.timedelta(days=1)
_PERMISSION: dict[Purpose, Permission] = {
    "verify": Permission.REGISTER_USERS,
    "reset": Permission.RESET_PASSWORDS,
}


@dataclass(frozen=True, slots=True)
class Registration:
    user_id: int
    challenge_id: str | None
    methods: tuple[str, ...]
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    challenge_id: str
    satisfied: tuple[str, ...]
    pending: tuple[str, ...]
    completed: bool
    """All methods satisfied: the account is active (verify) or the password set (reset)."""


@dataclass(frozen=True, slots=True)
class RetryResult:
    challenge_id: str
    retries_left: int
    next_retry_at: dt.datetime


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A secret to send, in memory only until it is handed to a notifier."""

    method: Method
    secret: str


# --- starting -----------------------------------------------------------------------


async def register(
    services: Services,
    actor: Principal,
    user: Mapping[str, Any],
    challenge: Mapping[str, Any] | None,
) -> Registration:
    """Create a user; with a `challenge`, inactive until every method is satisfied."""
    actor.require(Permission.REGISTER_USERS)
    spec = _challenge_spec(services, challenge, user) if challenge is not None else None
    if spec is None:
        user_id = await register_user(services, actor, user, active=True)
        return Registration(user_id=user_id, challenge_id=None, methods=(), expires_at=None)
    methods, link_url = spec
    user_id = await register_user(services, actor, user, active=False)
    challenge_id, expires_at, outgoing = await _open(services, user_id, "verify", methods, link_url)
    await _deliver(services, challenge_id, user_id, "verify", link_url, outgoing, expires_at)
    return Registration(
        user_id=user_id, challenge_id=challenge_id, methods=methods, expires_at=expires_at
    )


async def start_reset(
    services: Services,
    actor: Principal,
    *,
    login: str | None = None,
    email: str | None = None,
    methods: Sequence[str] = ("email_code",),
    link_url: str | None = None,
) -> RetryResult:
    """Open a password-reset challenge for the user named by `login` or `email`.

    An unknown user answers exactly like a known one (no enumeration): with a challenge
    id that leads nowhere.
    """
    actor.require(Permission.RESET_PASSWORDS)
    spec = _challenge_spec(services, {"methods": list(methods), "link_url": link_url}, None)
    chosen, link = spec
    identifier = _identifier(login, email)
    await _throttle(services, "reset", identifier, cap=services.challenges.max_retries + 1)
    found = await _find_user(services, login=login, email=email)
    now = services.clock()
    policy = services.challenges
    if found is None or not _has_addresses(found, chosen):
        return RetryResult(
            challenge_id=secrets.token_hex(_CHALLENGE_ID // 2),
            retries_left=policy.max_retries,
            next_retry_at=now + dt.timedelta(seconds=policy.cooldown),
        )
    challenge_id, expires_at, outgoing = await _open(services, found.id, "reset", chosen, link)
    await _deliver(services, challenge_id, found.id, "reset", link, outgoing, expires_at)
    return RetryResult(
        challenge_id=challenge_id,
        retries_left=policy.max_retries,
        next_retry_at=now + dt.timedelta(seconds=policy.cooldown),
    )


def _challenge_spec(
    services: Services, raw: Mapping[str, Any], user: Mapping[str, Any] | None
) -> tuple[tuple[Method, ...], str | None]:
    """Validate `{methods, link_url}` (and, on register, the addresses they need)."""
    errors: list[FieldError] = []
    if not isinstance(raw, Mapping):
        raise Invalid("the challenge is not valid", [FieldError("challenge", "an object")])
    unknown = sorted(set(raw) - {"methods", "link_url"})
    errors += [FieldError(f"challenge.{k}", "unknown field") for k in unknown]
    listed = raw.get("methods")
    methods: tuple[Method, ...] = ()
    if (
        not isinstance(listed, list)
        or not listed
        or not all(isinstance(m, str) and m in METHODS for m in listed)
        or len(set(listed)) != len(listed)
    ):
        errors.append(
            FieldError("challenge.methods", f"a non-empty list of distinct: {', '.join(METHODS)}")
        )
    else:
        methods = tuple(m for m in METHODS if m in listed)
    link_url = raw.get("link_url")
    if link_url is not None:
        problem = _link_problem(services.challenges, link_url)
        if problem:
            errors.append(FieldError("challenge.link_url", problem))
    if user is not None:
        for method in methods:
            address = _ADDRESS[method]
            if not user.get(address):
                errors.append(FieldError(f"user.{address}", f"{method} needs the user's {address}"))
    if errors:
        raise Invalid("the challenge is not valid", errors)
    return methods, link_url


def _link_problem(policy: ChallengePolicy, link_url: object) -> str | None:
    if not isinstance(link_url, str) or len(link_url) > _MAX_LINK_URL:
        return f"a URL of at most {_MAX_LINK_URL} characters"
    if link_url.count("{token}") != 1:
        return "must contain {token} once"
    parts = urlsplit(link_url.replace("{token}", "t"))
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if parts.scheme not in ("https", "http") or origin not in policy.link_origins:
        allowed = ", ".join(policy.link_origins) or "none are configured"
        return f"its origin {origin!r} is not allowed (GATEWAY_CHALLENGE_LINK_ORIGINS: {allowed})"
    return None


async def _open(
    services: Services,
    user_id: int,
    purpose: Purpose,
    methods: tuple[Method, ...],
    link_url: str | None,
) -> tuple[str, dt.datetime, list[_Outgoing]]:
    """Insert a challenge with one fresh secret per method; the secrets come back once."""
    system = services.schema.system
    now = services.clock()
    expires_at = now + dt.timedelta(seconds=services.challenges.ttl)
    challenge_id = secrets.token_hex(_CHALLENGE_ID // 2)
    async with services.writer.begin() as conn:
        if purpose == "reset":  # one reset at a time: a new one ends the older ones
            older = select(system.challenges.c.id).where(
                system.challenges.c.user_id == user_id,
                system.challenges.c.purpose == "reset",
                system.challenges.c.completed_on.is_(None),
            )
            # Answers are checked against their secret, not the challenge: end both.
            await conn.execute(
                update(system.challenge_secrets)
                .where(
                    system.challenge_secrets.c.challenge_id.in_(older),
                    system.challenge_secrets.c.superseded_on.is_(None),
                )
                .values(superseded_on=now)
            )
            await conn.execute(
                update(system.challenges)
                .where(system.challenges.c.id.in_(older))
                .values(expires_at=now, updated_on=now)
            )
        await conn.execute(
            insert(system.challenges).values(
                id=challenge_id,
                user_id=user_id,
                purpose=purpose,
                methods=list(methods),
                link_url=link_url,
                retries=0,
                last_sent_on=now,
                expires_at=expires_at,
                created_on=now,
                updated_on=now,
            )
        )
        outgoing = await _new_secrets(conn, services, challenge_id, methods, expires_at)
    return challenge_id, expires_at, outgoing


async def _new_secrets(
    conn: AsyncConnection,
    services: Services,
    challenge_id: str,
    methods: Sequence[Method],
    expires_at: dt.datetime,
) -> list[_Outgoing]:
    outgoing = []
    for method in methods:
        if method == "email_link":
            secret = secrets.token_urlsafe(_TOKEN_BYTES)
            lookup: str | None = _lookup(secret)
        else:
            secret = await _fresh_code(conn, services, challenge_id, method)
            lookup = None
        salt = secrets.token_bytes(16)
        await conn.execute(
            insert(services.schema.system.challenge_secrets).values(
                challenge_id=challenge_id,
                method=method,
                lookup=lookup,
                digest=_digest(salt, secret),
                salt=salt,
                attempts=0,
                expires_at=expires_at,
            )
        )
        outgoing.append(_Outgoing(method=method, secret=secret))
    return outgoing


async def _fresh_code(
    conn: AsyncConnection, services: Services, challenge_id: str, method: Method
) -> str:
    """A random code that none of the method's earlier codes equals.

    Short codes collide now and then; a replaced code must never work again, even by
    coincidence, so a draw that matches an earlier secret is drawn again.
    """
    table = services.schema.system.challenge_secrets
    earlier = (
        await conn.execute(
            select(table.c.salt, table.c.digest).where(
                table.c.challenge_id == challenge_id, table.c.method == method
            )
        )
    ).all()
    length = services.challenges.code_length
    while True:
        code = "".join(secrets.choice(string.digits) for _ in range(length))
        if not any(hmac.compare_digest(_digest(r.salt, code), r.digest) for r in earlier):
            return code


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def _lookup(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- answering --------------------------------------------------------------------


async def submit(
    services: Services,
    actor: Principal | None,
    *,
    challenge_id: object = None,
    method: object = None,
    code: object = None,
    token: object = None,
    purpose: Purpose = "verify",
    new_password: str | None = None,
) -> Outcome:
    """Check one secret: a `code` for (`challenge_id`, `method`), or a link `token`.

    `actor` None is a person following an e-mailed link to the gateway: a token only,
    for verification only. Otherwise the integration needs the purpose's permission.
    """
    if actor is not None:
        actor.require(_PERMISSION[purpose])
    elif purpose != "verify" or token is None:
        raise Forbidden("only a verification link works without a key")
    async with services.writer.begin() as conn:
        secret = await _target(conn, services, challenge_id, method, code, token, purpose)
        result = await _guess(conn, services, secret, code if token is None else token)
        if isinstance(result, Outcome) and result.completed:
            await _complete(conn, services, secret, new_password)
    if not isinstance(result, Outcome):
        raise result  # after the commit: a wrong guess keeps its attempt
    if result.completed:
        await evict_user(services, secret.user_id)
        _log.info("challenge %s completed (%s)", result.challenge_id, purpose)
    return result


async def complete_reset(
    services: Services,
    actor: Principal,
    *,
    password: object,
    challenge_id: object = None,
    method: object = None,
    code: object = None,
    token: object = None,
) -> Outcome:
    """Answer a reset challenge; with its last method satisfied, the password is set."""
    actor.require(Permission.RESET_PASSWORDS)
    try:
        checked = check_password(password)
    except ValueError as exc:  # before any guess: a weak password costs no attempt
        raise Invalid("the password is not valid", [FieldError("password", str(exc))]) from exc
    new_hash = await services.passwords.hash(checked)
    return await submit(
        services,
        actor,
        challenge_id=challenge_id,
        method=method,
        code=code,
        token=token,
        purpose="reset",
        new_password=new_hash,
    )


@dataclass(frozen=True, slots=True)
class _Secret:
    id: int
    challenge_id: str
    method: str
    user_id: int
    purpose: str
    methods: tuple[str, ...]


async def _target(  # noqa: PLR0917 - one request's fields
    conn: AsyncConnection,
    services: Services,
    challenge_id: object,
    method: object,
    code: object,
    token: object,
    purpose: Purpose,
) -> _Secret:
    """The live secret a submission aims at, with its challenge locked; 404/410 otherwise."""
    secret_t = services.schema.system.challenge_secrets
    exact: int | None = None
    if token is not None:
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_INPUT:
            raise Invalid("the token is not valid", [FieldError("token", "a link token")])
        found = (
            await conn.execute(
                select(secret_t.c.id, secret_t.c.challenge_id, secret_t.c.method).where(
                    secret_t.c.lookup == _lookup(token)
                )
            )
        ).one_or_none()
        if found is None:
            raise Gone("this link is not valid (any more); ask for a new one")
        exact, challenge_id, method = found.id, found.challenge_id, found.method
    else:
        errors = []
        if not isinstance(challenge_id, str) or len(challenge_id) != _CHALLENGE_ID:
            errors.append(FieldError("challenge_id", "the id register or retry returned"))
        if method not in ("email_code", "sms_code"):
            errors.append(FieldError("method", "email_code or sms_code (links carry a token)"))
        if not isinstance(code, str) or not 0 < len(code) <= _MAX_CODE_INPUT:
            errors.append(FieldError("code", "the code that was sent"))
        if errors:
            raise Invalid("the answer is not valid", errors)
    challenge = await _locked_challenge(conn, services, str(challenge_id))
    if challenge is None or challenge.purpose != purpose:
        raise NotFound("no such challenge")
    if challenge.completed_on is not None:
        raise Conflict("this challenge is already completed")
    if method not in challenge.methods:
        raise Invalid("the answer is not valid", [FieldError("method", "not asked for here")])
    # A link names its own secret (a replaced one then fails without touching the new
    # one); a code is tried against the method's current secret.
    secret_id = exact or await conn.scalar(
        select(secret_t.c.id)
        .where(
            secret_t.c.challenge_id == challenge.id,
            secret_t.c.method == method,
            secret_t.c.superseded_on.is_(None),
        )
        .order_by(secret_t.c.id.desc())
        .limit(1)
    )
    if secret_id is None:
        raise Gone("this secret no longer works; ask for a new one")
    return _Secret(
        id=int(secret_id),
        challenge_id=challenge.id,
        method=str(method),
        user_id=challenge.user_id,
        purpose=challenge.purpose,
        methods=tuple(challenge.methods),
    )


async def _locked_challenge(
    conn: AsyncConnection, services: Services, challenge_id: str
) -> Row[Any] | None:
    table = services.schema.system.challenges
    query = select(table).where(table.c.id == challenge_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).one_or_none()


async def _guess(
    conn: AsyncConnection, services: Services, secret: _Secret, guess: object
) -> Outcome | GatewayError:
    """Spend one attempt on `guess`; the outcome, or the error to raise after commit.

    The attempt is reserved before the guess is compared: an UPDATE that only succeeds
    while the secret is live and has attempts left. A wrong guess keeps its attempt
    (the transaction commits it); the caller raises the error after the commit.
    """
    table = services.schema.system.challenge_secrets
    now = services.clock()
    policy = services.challenges
    reserved = (
        await conn.execute(
            update(table)
            .where(
                table.c.id == secret.id,
                table.c.used_on.is_(None),
                table.c.superseded_on.is_(None),
                table.c.expires_at > now,
                table.c.attempts < policy.max_attempts,
            )
            .values(attempts=table.c.attempts + 1)
            .returning(table.c.digest, table.c.salt, table.c.attempts)
        )
    ).one_or_none()
    if reserved is None:
        return Gone("this secret no longer works (used, expired, replaced or too many wrong tries)")
    if not isinstance(guess, str) or not hmac.compare_digest(
        _digest(reserved.salt, guess), reserved.digest
    ):
        left = policy.max_attempts - reserved.attempts
        message = f"wrong; {left} attempt{'s' if left != 1 else ''} left"
        field = "token" if secret.method == "email_link" else "code"
        return Invalid("the answer is not valid", [FieldError(field, message)])
    await conn.execute(update(table).where(table.c.id == secret.id).values(used_on=now))
    used = set(
        await conn.scalars(
            select(table.c.method).where(
                table.c.challenge_id == secret.challenge_id, table.c.used_on.is_not(None)
            )
        )
    )
    satisfied = tuple(m for m in secret.methods if m in used)
    pending = tuple(m for m in secret.methods if m not in used)
    return Outcome(
        challenge_id=secret.challenge_id,
        satisfied=satisfied,
        pending=pending,
        completed=not pending,
    )


async def _complete(
    conn: AsyncConnection, services: Services, secret: _Secret, new_hash: str | None
) -> None:
    """Every method is satisfied: activate the user, or set its password."""
    system = services.schema.system
    now = services.clock()
    await conn.execute(
        update(system.challenges)
        .where(system.challenges.c.id == secret.challenge_id)
        .values(completed_on=now, updated_on=now)
    )
    users = system.users
    if secret.purpose == "verify":
        await conn.execute(
            update(users)
            .where(users.c.id == secret.user_id)
            .values(active=True, security_version=users.c.security_version + 1, updated_on=now)
        )
        return
    await conn.execute(
        update(users)
        .where(users.c.id == secret.user_id)
        .values(
            password_hash=new_hash,
            security_version=users.c.security_version + 1,
            updated_on=now,
        )
    )
    # Every other open challenge of the user ends, and its secrets with it.
    others = select(system.challenges.c.id).where(
        system.challenges.c.user_id == secret.user_id,
        system.challenges.c.completed_on.is_(None),
    )
    await conn.execute(
        update(system.challenge_secrets)
        .where(
            system.challenge_secrets.c.challenge_id.in_(others),
            system.challenge_secrets.c.superseded_on.is_(None),
        )
        .values(superseded_on=now)
    )
    await conn.execute(
        update(system.challenges)
        .where(system.challenges.c.id.in_(others))
        .values(expires_at=now, updated_on=now)
    )
    if services.challenges.reset_revokes_keys:
        keys = system.api_keys
        await conn.execute(
            update(keys)
            .where(keys.c.user_id == secret.user_id, keys.c.revoked_on.is_(None))
            .values(revoked_on=now)
        )


# --- retrying -----------------------------------------------------------------------


async def retry(
    services: Services,
    actor: Principal,
    *,
    challenge_id: object = None,
    login: object = None,
    email: object = None,
) -> RetryResult:
    """Send the pending methods again with fresh secrets; every earlier one stops working.

    By `login`/`email` (the integration lost the id) an unknown user, or one without an
    open verification, answers like a known one.
    """
    actor.require(Permission.REGISTER_USERS)
    given = [v for v in (challenge_id, login, email) if v is not None]
    if len(given) != 1 or not all(isinstance(v, str) and 0 < len(v) <= 254 for v in given):
        raise Invalid(
            "say which challenge",
            [FieldError("challenge_id", "exactly one of challenge_id, login or email")],
        )
    policy = services.challenges
    now = services.clock()
    if challenge_id is None:
        sent = await _throttle(services, "retry", _identifier(login, email), cap=policy.max_retries)
        found = await _find_user(services, login=login, email=email)
        open_id = None if found is None else await _open_challenge(services, found.id)
        if open_id is None:  # counted down like a real challenge retried by login
            return RetryResult(
                challenge_id=secrets.token_hex(_CHALLENGE_ID // 2),
                retries_left=max(0, policy.max_retries - sent),
                next_retry_at=now + dt.timedelta(seconds=policy.cooldown),
            )
        challenge_id = open_id
    async with services.writer.begin() as conn:
        challenge = await _locked_challenge(conn, services, str(challenge_id))
        if challenge is None or challenge.purpose != "verify":
            raise NotFound("no such challenge")
        if challenge.completed_on is not None:
            raise Conflict("this challenge is already completed")
        if challenge.retries >= policy.max_retries:
            raise Conflict(f"this challenge was sent {1 + policy.max_retries} times, the most")
        if challenge.last_sent_on is not None:
            ready = challenge.last_sent_on + dt.timedelta(seconds=policy.cooldown)
            if ready > now:
                wait = max(1, math.ceil((ready - now).total_seconds()))
                raise RateLimited(f"sent recently; retry in {wait} s", retry_after=wait)
        secrets_t = services.schema.system.challenge_secrets
        used = set(
            await conn.scalars(
                select(secrets_t.c.method).where(
                    secrets_t.c.challenge_id == challenge.id, secrets_t.c.used_on.is_not(None)
                )
            )
        )
        pending = tuple(m for m in METHODS if m in challenge.methods and m not in used)
        await conn.execute(
            update(secrets_t)
            .where(
                secrets_t.c.challenge_id == challenge.id,
                secrets_t.c.method.in_(pending),
                secrets_t.c.superseded_on.is_(None),
            )
            .values(superseded_on=now)
        )
        expires_at = now + dt.timedelta(seconds=policy.ttl)
        outgoing = await _new_secrets(conn, services, challenge.id, pending, expires_at)
        table = services.schema.system.challenges
        await conn.execute(
            update(table)
            .where(table.c.id == challenge.id)
            .values(
                retries=table.c.retries + 1,
                last_sent_on=now,
                expires_at=expires_at,
                updated_on=now,
            )
        )
    await _deliver(
        services,
        challenge.id,
        challenge.user_id,
        "verify",
        challenge.link_url,
        outgoing,
        expires_at,
        previous_send=challenge.last_sent_on,
    )
    return RetryResult(
        challenge_id=challenge.id,
        retries_left=policy.max_retries - challenge.retries - 1,
        next_retry_at=now + dt.timedelta(seconds=policy.cooldown),
    )


def _identifier(login: object, email: object) -> str:
    """The one login or e-mail address named, as the throttle keys it."""
    given = [v for v in (login, email) if v is not None]
    value = given[0] if len(given) == 1 else None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= 254:
        raise Invalid("say whose", [FieldError("login", "exactly one of login or email")])
    return value.strip().lower()


async def _throttle(services: Services, kind: str, identifier: str, *, cap: int) -> int:
    """The cooldown and a daily cap per login or e-mail, known or not (no enumeration).

    Returns how many calls the identifier made in the window, this one included.

    Kept in `gw_login_failures` under a hash of the identifier: the row is created if
    missing, then locked, so concurrent calls on every worker count one by one.
    """
    table = services.schema.system.login_failures
    subject = f"{kind}:{hashlib.sha256(identifier.encode()).hexdigest()}"
    now = services.clock()
    cooldown = dt.timedelta(seconds=services.challenges.cooldown)
    async with services.writer.begin() as conn:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            dialect_insert(table)
            .values(subject=subject, window_end=now + _THROTTLE_WINDOW, failures=0)
            .on_conflict_do_nothing(index_elements=[table.c.subject])
        )
        query = select(table).where(table.c.subject == subject)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).one()
        count = 0 if row.window_end <= now else row.failures
        if row.locked_until is not None and row.locked_until > now:
            wait = max(1, math.ceil((row.locked_until - now).total_seconds()))
            raise RateLimited(f"sent recently; retry in {wait} s", retry_after=wait)
        if count >= cap:
            raise Conflict(f"at most {cap} messages a day for one account; try tomorrow")
        await conn.execute(
            update(table)
            .where(table.c.subject == subject)
            .values(
                failures=count + 1,
                window_end=row.window_end if count else now + _THROTTLE_WINDOW,
                locked_until=now + cooldown,
            )
        )
    return count + 1


@dataclass(frozen=True, slots=True)
class _User:
    id: int
    login: str
    email: str | None
    phone: str | None


async def _find_user(services: Services, *, login: object, email: object) -> _User | None:
    users = services.schema.system.users
    if isinstance(login, str):
        condition = func.lower(users.c.login) == login.strip().lower()
    elif isinstance(email, str):
        condition = func.lower(users.c.email) == email.strip().lower()
    else:
        raise Invalid("say whose", [FieldError("login", "a login or an email")])
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.login, users.c.email, users.c.phone)
                .where(condition)
                .order_by(users.c.id)
                .limit(1)
            )
        ).one_or_none()
    return None if row is None else _User(row.id, row.login, row.email, row.phone)


def _has_addresses(user: _User, methods: Sequence[Method]) -> bool:
    return all(getattr(user, _ADDRESS[m]) for m in methods)


async def _open_challenge(services: Services, user_id: int) -> str | None:
    table = services.schema.system.challenges
    async with services.engine.connect() as conn:
        found = await conn.scalar(
            select(table.c.id)
            .where(
                table.c.user_id == user_id,
                table.c.purpose == "verify",
                table.c.completed_on.is_(None),
            )
            .order_by(table.c.created_on.desc())
            .limit(1)
        )
    return None if found is None else str(found)


# --- delivering ---------------------------------------------------------------------


async def _deliver(  # noqa: PLR0917 - one send's facts
    services: Services,
    challenge_id: str,
    user_id: int,
    purpose: Purpose,
    link_url: str | None,
    outgoing: Sequence[_Outgoing],
    expires_at: dt.datetime,
    previous_send: dt.datetime | None = None,
) -> None:
    """Hand every message over; on failure the cooldown is lifted and 502 raised.

    The lifetime cap still counts a failed retry: its secrets exist and could take
    guesses, and the cap is what bounds guesses over a challenge's life.
    """
    users = services.schema.system.users
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(select(users.c.email, users.c.phone).where(users.c.id == user_id))
        ).one()
    failed = []
    for item in outgoing:
        message = _message(services, purpose, item, row.email, row.phone, link_url, expires_at)
        try:
            await services.notifiers.send(message)
        except notify.DeliveryFailed as exc:
            _log.warning("challenge %s: %s", challenge_id, exc)
            failed.append(item.method)
    if not failed:
        return
    table = services.schema.system.challenges
    async with services.writer.begin() as conn:
        # Nothing reached the user for these methods: let the integration retry at once.
        await conn.execute(
            update(table).where(table.c.id == challenge_id).values(last_sent_on=previous_send)
        )
    raise DeliveryFailed(
        f"could not deliver {', '.join(failed)}; retry the challenge", challenge_id
    )


def _message(  # noqa: PLR0917 - one message's facts
    services: Services,
    purpose: Purpose,
    item: _Outgoing,
    email: str | None,
    phone: str | None,
    link_url: str | None,
    expires_at: dt.datetime,
) -> notify.Message:
    minutes = max(1, round(services.challenges.ttl / 60))
    until = f"{expires_at:%H:%M} UTC, in {minutes} minute{'s' if minutes != 1 else ''}"
    what = "confirm your account" if purpose == "verify" else "reset your password"
    subject = "Confirm your account" if purpose == "verify" else "Reset your password"
    if item.method == "sms_code":
        return notify.Message(
            channel="sms",
            to=str(phone),
            subject=None,
            text=f"Your code to {what}: {item.secret} (valid until {until}).",
        )
    if item.method == "email_code":
        text = (
            f"Hello,\n\nyour code to {what} is:\n\n    {item.secret}\n\n"
            f"It is valid until {until}, and only once.\n"
            "If you did not ask for it, ignore this message.\n"
        )
    else:
        link = _link(services.challenges, link_url, item.secret)
        text = (
            f"Hello,\n\nopen this link to {what}:\n\n{link}\n\n"
            f"It is valid until {until}, and only once.\n"
            "If you did not ask for it, ignore this message.\n"
        )
    return notify.Message(channel="email", to=str(email), subject=subject, text=text)


def _link(policy: ChallengePolicy, link_url: str | None, token: str) -> str:
    if link_url is not None:
        return link_url.replace("{token}", quote(token, safe=""))
    base = policy.public_url.rstrip("/")
    return f"{base}/api/v1/auth/challenge/link?token={quote(token, safe='')}"
