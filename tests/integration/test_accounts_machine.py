"""The challenge lifecycle as a hypothesis state machine, driving `resolvers.challenges`.

One user per example registers with some methods; then right, wrong and superseded
answers, retries and clock jumps arrive in any order. A model predicts every outcome
exactly, and two invariants hold throughout:

- a superseded secret is never accepted;
- the guesses evaluated for a method (wrong or right, as the database counts them)
  never exceed (lifetime retry cap + 1) x max attempts.

The engine runs on SQLite with the outbox notifier, on one event loop per test; the
secrets are read back from the outbox, as `gateway outbox` would print them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import re
import secrets
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from gateway.runtime import open_services
from resolvers import challenges
from resolvers.errors import Conflict, GatewayError, Gone, Invalid, RateLimited
from resolvers.principal import Principal, UserState, build_principal
from resolvers.services import ChallengePolicy, Services
from tests.conftest import USER_PASSWORD, Backend, make_settings
from tests.integration.test_accounts import Clock, token_of

POLICY = ChallengePolicy(
    code_length=6, ttl=300, max_attempts=3, cooldown=60, max_retries=2, link_origins=()
)
_CODE = re.compile(r"(?:^ {4}|code to [a-z ]+: )(\d{6})\b", re.MULTILINE)
_LINK = re.compile(r"^(https?://\S+)$", re.MULTILINE)
_logins = itertools.count()
T = TypeVar("T")


@dataclass
class _Live:
    """The model of a method's current secret."""

    secret: str
    expires_at: dt.datetime
    attempts: int = 0
    used: bool = False


@dataclass
class _Method:
    live: _Live
    superseded: list[str] = field(default_factory=list)
    evaluated: int = 0
    """Guesses compared with a secret (wrong or right), over the challenge's lifetime."""


class ChallengeLifecycle(RuleBasedStateMachine):
    loop: ClassVar[asyncio.AbstractEventLoop]
    base: ClassVar[Services]
    actor: ClassVar[Principal]

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.services = dataclasses.replace(self.base, clock=self.clock, challenges=POLICY)
        self.login = f"user{next(_logins)}"
        self.email = f"{self.login}@example.com"
        self.phone = f"+4206{next(_logins):08d}"
        self.seen = 0
        self.challenge_id = ""
        self.methods: dict[str, _Method] = {}
        self.retries = 0
        self.last_sent = self.clock.now
        self.completed = False

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    # --- the outbox -----------------------------------------------------------------

    def delivered(self) -> dict[str, str]:
        """The secrets sent since the last look, by method."""

        async def read() -> list[tuple[int, str]]:
            table = self.services.schema.system.outbox
            async with self.services.engine.connect() as conn:
                rows = await conn.execute(
                    select(table.c.id, table.c.body)
                    .where(table.c.recipient.in_((self.email, self.phone)), table.c.id > self.seen)
                    .order_by(table.c.id)
                )
                return [(r.id, r.body) for r in rows]

        found: dict[str, str] = {}
        for row_id, body in self.run(read()):
            self.seen = row_id
            if link := _LINK.search(body):
                found["email_link"] = token_of(link.group(1))
            elif code := _CODE.search(body):
                found["sms_code" if body.startswith("Your code") else "email_code"] = code.group(1)
        return found

    # --- steps ----------------------------------------------------------------------

    @initialize(chosen=st.sets(st.sampled_from(challenges.METHODS), min_size=1))
    def register(self, chosen: set[str]) -> None:
        user = {
            "login": self.login,
            "password": USER_PASSWORD,
            "email": self.email,
            "phone": self.phone,
            "roles": ["integration"],
        }
        registration = self.run(
            challenges.register(self.services, self.actor, user, {"methods": sorted(chosen)})
        )
        assert isinstance(registration, challenges.Registration)
        assert registration.challenge_id is not None
        self.challenge_id = registration.challenge_id
        sent = self.delivered()
        assert sorted(sent) == sorted(chosen)
        expires = self.clock.now + dt.timedelta(seconds=POLICY.ttl)
        self.methods = {m: _Method(live=_Live(s, expires)) for m, s in sent.items()}

    def pick(self, index: int) -> str:
        return sorted(self.methods)[index % len(self.methods)]

    def answer(self, method: str, secret: str) -> challenges.Outcome | GatewayError:
        if method == "email_link":
            call = challenges.submit(self.services, self.actor, token=secret)
        else:
            call = challenges.submit(
                self.services,
                self.actor,
                challenge_id=self.challenge_id,
                method=method,
                code=secret,
            )
        try:
            result = self.run(call)
        except GatewayError as exc:
            return exc
        assert isinstance(result, challenges.Outcome)
        return result

    def expected(self, method: str, *, right: bool) -> type[object]:
        """What a guess at the method's current secret meets, right or wrong."""
        if self.completed:
            return Conflict
        live = self.methods[method].live
        if live.used or self.clock.now >= live.expires_at or live.attempts >= POLICY.max_attempts:
            return Gone
        return challenges.Outcome if right else Invalid

    def evaluated(self, method: str, result: object) -> None:
        if isinstance(result, challenges.Outcome | Invalid):
            self.methods[method].live.attempts += 1
            self.methods[method].evaluated += 1

    @precondition(lambda self: not self.completed)  # afterwards, the other rules see 409s
    @rule(index=st.integers(0, 2))
    def guess_right(self, index: int) -> None:
        method = self.pick(index)
        expected = self.expected(method, right=True)
        result = self.answer(method, self.methods[method].live.secret)
        assert type(result) is expected, (method, result, expected)
        self.evaluated(method, result)
        if isinstance(result, challenges.Outcome):
            self.methods[method].live.used = True
            pending = sorted(m for m, s in self.methods.items() if not s.live.used)
            assert sorted(result.pending) == pending
            self.completed = result.completed
            assert self.completed == (not pending)

    @rule(index=st.integers(0, 2), number=st.integers(0, 10**6 - 1))
    def guess_wrong(self, index: int, number: int) -> None:
        method = self.pick(index)
        live = self.methods[method].live
        if method == "email_link":
            result = self.answer(method, secrets.token_urlsafe(32))
            assert type(result) is Gone, result  # an unknown token finds no secret
            return
        guess = f"{number:06d}"
        if guess == live.secret:
            guess = f"{(number + 1) % 10**6:06d}"
        result = self.answer(method, guess)
        assert type(result) is self.expected(method, right=False), (result, self.completed)
        self.evaluated(method, result)

    @precondition(lambda self: any(m.superseded for m in self.methods.values()))
    @rule(index=st.integers(0, 2), which=st.integers(0, 10))
    def guess_superseded(self, index: int, which: int) -> None:
        method = next(
            m
            for m in itertools.islice(itertools.cycle(sorted(self.methods)), index, None)
            if self.methods[m].superseded
        )
        old = self.methods[method].superseded
        result = self.answer(method, old[which % len(old)])
        assert not isinstance(result, challenges.Outcome), "a superseded secret was accepted"
        if method == "email_link":  # found by its token, refused as replaced
            assert type(result) is (Conflict if self.completed else Gone), result
        else:  # tried against the current code, as a wrong guess
            assert type(result) is self.expected(method, right=False), result
        self.evaluated(method, result)

    @rule()
    def retry(self) -> None:
        result: challenges.RetryResult | GatewayError
        try:
            result = self.run(
                challenges.retry(self.services, self.actor, challenge_id=self.challenge_id)
            )
        except GatewayError as exc:
            result = exc
        if self.completed or self.retries >= POLICY.max_retries:
            assert type(result) is Conflict, result
            return
        ready = self.last_sent + dt.timedelta(seconds=POLICY.cooldown)
        if self.clock.now < ready:
            assert type(result) is RateLimited, result
            return
        assert isinstance(result, challenges.RetryResult), result
        assert result.retries_left == POLICY.max_retries - self.retries - 1
        self.retries += 1
        self.last_sent = self.clock.now
        sent = self.delivered()
        pending = sorted(m for m, s in self.methods.items() if not s.live.used)
        assert sorted(sent) == pending
        expires = self.clock.now + dt.timedelta(seconds=POLICY.ttl)
        for method, secret in sent.items():
            state = self.methods[method]
            assert secret != state.live.secret
            assert secret not in state.superseded
            state.superseded.append(state.live.secret)
            state.live = _Live(secret, expires)

    @rule(seconds=st.sampled_from([1, 59, 61, 299, 301]))  # around the cooldown and the TTL
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def guesses_stay_within_the_lifetime_budget(self) -> None:
        async def spent() -> dict[str, int]:
            table = self.services.schema.system.challenge_secrets
            async with self.services.engine.connect() as conn:
                rows = await conn.execute(
                    select(table.c.method, func.sum(table.c.attempts))
                    .where(table.c.challenge_id == self.challenge_id)
                    .group_by(table.c.method)
                )
                return {r[0]: int(r[1]) for r in rows}

        budget = (POLICY.max_retries + 1) * POLICY.max_attempts
        counted = self.run(spent())
        assert counted == {m: s.evaluated for m, s in self.methods.items()}
        assert all(n <= budget for n in counted.values()), counted


def test_the_challenge_lifecycle_keeps_its_invariants(cache_url: str, tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'machine.db'}")
    settings = make_settings(backend, cache_url, tmp_path / "data")
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    try:
        services = loop.run_until_complete(
            stack.enter_async_context(open_services(settings, migrate=True))
        )
        desk = UserState(
            id=1,
            login="desk",
            active=True,
            valid_from=None,
            valid_to=None,
            timezone=None,
            roles=("registrar", "integration"),
            groups=(),
            security_version=1,
        )
        actor = build_principal(services.tenant, desk)
        machine = type(
            "Machine", (ChallengeLifecycle,), {"loop": loop, "base": services, "actor": actor}
        )
        run_state_machine_as_test(
            machine,
            settings=hypothesis_settings(
                max_examples=50,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
