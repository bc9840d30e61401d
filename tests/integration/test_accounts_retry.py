"""Challenges over time: retries that rotate secrets, cooldowns and caps, wrong-attempt
limits under concurrency, single use under concurrency, and expiry on a moved clock.

The rules that hold in SQL (reserved attempts, `FOR UPDATE`, time comparisons) run on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from sqlalchemy import select

from gateway.settings import Settings
from tests.integration.test_accounts import (
    CHALLENGE,
    LINK_URL,
    Desk,
    email_of,
    gateway_path,
    open_desk,
    sqlite_only,
    token_of,
)

ALL = ("email_link", "email_code", "sms_code")


async def _attempts(desk: Desk, challenge_id: str) -> list[int]:
    """Each secret's spent attempts, oldest first."""
    async with desk.api.db() as db:
        table = db.schema.system.challenge_secrets
        async with db.engine.connect() as conn:
            rows = await conn.scalars(
                select(table.c.attempts)
                .where(table.c.challenge_id == challenge_id)
                .order_by(table.c.id)
            )
            return list(rows)


# --- rotation -------------------------------------------------------------------------


async def test_a_retry_kills_every_earlier_code_and_link_at_once(settings: Settings) -> None:
    async with open_desk(settings, challenge_cooldown=0) as desk:
        challenge_id = await desk.registered("carol", ALL)  # the link points at the gateway
        [old_link] = await desk.links("carol")
        [old_email] = await desk.codes("carol", "email_code")
        [old_sms] = await desk.codes("carol", "sms_code")

        retried = await desk.retry(challenge_id=challenge_id)
        assert retried.status_code == 200, retried.text
        body = retried.json()
        assert body["challenge_id"] == challenge_id
        assert body["retries_left"] == 4
        assert dt.datetime.fromisoformat(body["next_retry_at"]) == desk.clock.now

        [_, new_link] = await desk.links("carol")
        [_, new_email] = await desk.codes("carol", "email_code")
        [_, new_sms] = await desk.codes("carol", "sms_code")
        assert new_link != old_link
        assert new_email != old_email
        assert new_sms != old_sms

        stale = await desk.client.get(gateway_path(old_link))
        assert stale.status_code == 410
        assert (await desk.post(CHALLENGE, {"token": token_of(old_link)})).status_code == 410
        for method, code in (("email_code", old_email), ("sms_code", old_sms)):
            refused = await desk.answer(challenge_id, method, code)
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"] == [
                {"field": "code", "message": "wrong; 4 attempts left"}
            ]

        sms = await desk.answer(challenge_id, "sms_code", new_sms)
        assert sms.json()["pending"] == ["email_link", "email_code"]
        # A satisfied method is not sent again; the pending ones are, with fresh secrets.
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 200
        assert len(await desk.codes("carol", "sms_code")) == 2
        [*_, newest_email] = await desk.codes("carol", "email_code")
        [*_, newest_link] = await desk.links("carol")
        assert (await desk.client.get(gateway_path(new_link))).status_code == 410
        assert (await desk.answer(challenge_id, "email_code", new_email)).status_code == 422

        page = await desk.client.get(gateway_path(newest_link))
        assert page.status_code == 200, page.text
        done = await desk.answer(challenge_id, "email_code", newest_email)
        assert done.json()["activated"] is True
        assert await desk.can_log_in("carol")


@sqlite_only("the cooldown and cap are plain arithmetic on the moved clock")
async def test_cooldown_answers_429_with_retry_after_and_the_cap_409(settings: Settings) -> None:
    async with open_desk(settings, "outbox", challenge_max_retries=2) as desk:
        challenge_id = await desk.registered("carol", ("email_code",), link_url=LINK_URL)

        early = await desk.retry(challenge_id=challenge_id)
        assert early.status_code == 429
        assert early.headers["retry-after"] == "60"
        assert early.headers["content-type"] == "application/problem+json"
        desk.clock.advance(45.5)
        later = await desk.retry(challenge_id=challenge_id)
        assert later.status_code == 429
        assert later.headers["retry-after"] == "15"  # rounded up: never too early

        desk.clock.advance(14.5)
        first = await desk.retry(challenge_id=challenge_id)
        assert first.status_code == 200, first.text
        assert first.json()["retries_left"] == 1
        next_at = dt.datetime.fromisoformat(first.json()["next_retry_at"])
        assert next_at == desk.clock.now + dt.timedelta(seconds=60)
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 429

        desk.clock.advance(60)
        second = await desk.retry(challenge_id=challenge_id)
        assert second.json()["retries_left"] == 0
        desk.clock.advance(3600)
        capped = await desk.retry(challenge_id=challenge_id)
        assert capped.status_code == 409
        assert "3 times" in capped.json()["detail"]
        assert len(await desk.codes("carol", "email_code")) == 3

        # The cap ends sending, not the challenge: the last code still works while valid.
        desk.clock.advance(-3600)
        done = await desk.answer(challenge_id, "email_code", await desk.code("carol", "email_code"))
        assert done.json()["activated"] is True
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 409
        missing = await desk.retry(challenge_id="0" * 32)
        assert missing.status_code == 404


@sqlite_only("lookups by login and e-mail; their SQL is the same on both")
async def test_retry_by_login_or_email_and_unknown_ones_answer_alike(settings: Settings) -> None:
    async with open_desk(settings, "outbox", challenge_cooldown=0, challenge_max_retries=3) as desk:
        challenge_id = await desk.registered("carol", ("email_code",))
        await desk.registered("dave", ("email_code",))

        by_login = await desk.retry(login="carol")
        by_email = await desk.retry(email=email_of("carol").upper())
        assert by_login.status_code == by_email.status_code == 200
        assert by_login.json()["challenge_id"] == by_email.json()["challenge_id"] == challenge_id
        [_, second, third] = await desk.codes("carol", "email_code")
        assert (await desk.answer(challenge_id, "email_code", second)).status_code == 422
        assert (await desk.answer(challenge_id, "email_code", third)).status_code == 200

        # Unknown people answer like dave, retry after retry, up to the cap.
        dave = [await desk.retry(login="dave") for _ in range(4)]
        assert [a.status_code for a in dave] == [200, 200, 200, 409]
        for which in ({"login": "nobody"}, {"email": "nobody@example.com"}):
            answers = [await desk.retry(**which) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 409], which
            for answer, known in zip(answers[:3], dave, strict=False):
                body, expected = answer.json(), known.json()
                assert set(body) == set(expected)
                assert re.fullmatch(r"[0-9a-f]{32}", body["challenge_id"])
                assert body["challenge_id"] != expected["challenge_id"]
                assert body["retries_left"] == expected["retries_left"], (which, body, expected)
                assert body["next_retry_at"] == expected["next_retry_at"]
        # So does one whose challenge is done; nothing more is sent.
        done = await desk.retry(login="carol")
        assert done.status_code == 200
        assert set(done.json()) == set(dave[0].json())
        assert done.json()["challenge_id"] != challenge_id
        assert len(await desk.codes("carol", "email_code")) == 3

        bad = await desk.retry(login="carol", email=email_of("carol"))
        assert bad.status_code == 422


# --- wrong attempts ---------------------------------------------------------------------


async def test_wrong_attempts_kill_a_secret_and_a_retry_does_not_refill_the_lifetime(
    settings: Settings,
) -> None:
    async with open_desk(
        settings, "outbox", challenge_max_attempts=3, challenge_max_retries=1, challenge_cooldown=0
    ) as desk:
        challenge_id = await desk.registered("carol", ("sms_code", "email_link"))
        right = await desk.code("carol", "sms_code")
        wrong = "000000" if right != "000000" else "111111"
        statuses = [(await desk.answer(challenge_id, "sms_code", wrong)) for _ in range(4)]
        assert [r.status_code for r in statuses] == [422, 422, 422, 410]
        assert [r.json()["errors"][0]["message"] for r in statuses[:3]] == [
            "wrong; 2 attempts left",
            "wrong; 1 attempt left",
            "wrong; 0 attempts left",
        ]
        assert (await desk.answer(challenge_id, "sms_code", right)).status_code == 410
        # One method's secret dying leaves the other's alone.
        [link] = await desk.links("carol")
        assert (await desk.post(CHALLENGE, {"token": token_of(link)})).status_code == 200

        assert (await desk.retry(challenge_id=challenge_id)).status_code == 200
        fresh = await desk.code("carol", "sms_code")
        wrong = "000000" if fresh != "000000" else "111111"
        for _ in range(3):
            assert (await desk.answer(challenge_id, "sms_code", wrong)).status_code == 422
        assert (await desk.answer(challenge_id, "sms_code", fresh)).status_code == 410
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 409
        assert await _attempts(desk, challenge_id) == [1, 3, 3]  # link, sms, sms again
        assert not await desk.can_log_in("carol")


async def test_concurrent_wrong_guesses_are_counted_one_by_one(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        challenge_id = await desk.registered("carol", ("email_code",))
        right = await desk.code("carol", "email_code")
        guesses = [g for g in (f"{n:06d}" for n in range(100, 121)) if g != right][:20]
        body = {"challenge_id": challenge_id, "method": "email_code"}
        answers = desk.burst([(CHALLENGE, {**body, "code": g}) for g in guesses])

        statuses = Counter(a.status_code for a in answers)
        assert statuses == {422: 5, 410: len(guesses) - 5}, statuses
        assert await _attempts(desk, challenge_id) == [5]
        assert (await desk.answer(challenge_id, "email_code", right)).status_code == 410


async def test_concurrent_right_answers_succeed_exactly_once(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        challenge_id = await desk.registered("carol", ("email_code", "sms_code"))
        sms = {"challenge_id": challenge_id, "method": "sms_code"}
        first = desk.burst([(CHALLENGE, {**sms, "code": await desk.code("carol", "sms_code")})] * 4)
        assert sorted(a.status_code for a in first) == [200, 410, 410, 410]

        email = {"challenge_id": challenge_id, "method": "email_code"}
        code = await desk.code("carol", "email_code")
        last = desk.burst([(CHALLENGE, {**email, "code": code})] * 4)
        statuses = sorted(a.status_code for a in last)
        assert statuses[0] == 200, [a.text for a in last]
        assert set(statuses[1:]) <= {409, 410}, statuses
        [winner] = [a.json() for a in last if a.status_code == 200]
        assert winner["activated"] is True
        assert await desk.can_log_in("carol")


# --- expiry -------------------------------------------------------------------------


async def test_secrets_expire_on_the_clock_and_a_retry_renews_them(settings: Settings) -> None:
    async with open_desk(settings, "outbox", challenge_ttl=120) as desk:
        challenge_id = await desk.registered("carol", ("email_code", "email_link", "sms_code"))
        [link] = await desk.links("carol")
        desk.clock.advance(119)
        sms = await desk.answer(challenge_id, "sms_code", await desk.code("carol", "sms_code"))
        assert sms.status_code == 200, sms.text

        desk.clock.advance(1)
        code = await desk.code("carol", "email_code")
        assert (await desk.answer(challenge_id, "email_code", code)).status_code == 410
        assert (await desk.client.get(gateway_path(link))).status_code == 410
        assert await _attempts(desk, challenge_id) == [0, 0, 1]  # refused without a guess

        renewed = await desk.retry(challenge_id=challenge_id)
        assert renewed.status_code == 200, renewed.text
        desk.clock.advance(119)
        [_, fresh_link] = await desk.links("carol")
        assert (await desk.client.get(gateway_path(fresh_link))).status_code == 200
        fresh = await desk.code("carol", "email_code")
        assert (await desk.answer(challenge_id, "email_code", fresh)).json()["activated"] is True
