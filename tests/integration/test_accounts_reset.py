"""Password resets over REST: start (no enumeration), complete with a code or a link token,
the new password in force, the old one and (by setting) the user's keys revoked."""

from __future__ import annotations

import re

from gateway.settings import Settings
from tests.conftest import USER_PASSWORD
from tests.integration.test_accounts import (
    CHALLENGE,
    CURRENT,
    LINK,
    LINK_URL,
    RESET,
    RESET_COMPLETE,
    email_of,
    open_desk,
    phone_of,
    problem_fields,
    sqlite_only,
)

NEW_PASSWORD = "a-brand-new-password"


async def test_a_reset_sets_the_password_and_revokes_the_keys(settings: Settings) -> None:
    async with open_desk(settings, challenge_cooldown=0) as desk:
        await desk.api.create_user(
            "carol", roles=["integration"], email=email_of("carol"), phone=phone_of("carol")
        )
        keys = [await desk.api.login("carol") for _ in range(2)]

        started = await desk.post(RESET, {"login": "carol", "methods": ["email_code", "sms_code"]})
        assert started.status_code == 200, started.text
        unknown = await desk.post(RESET, {"login": "nobody", "methods": ["email_code", "sms_code"]})
        assert unknown.status_code == 200, unknown.text
        assert set(unknown.json()) == set(started.json())
        assert unknown.json()["retries_left"] == started.json()["retries_left"]
        assert unknown.json()["next_retry_at"] == started.json()["next_retry_at"]
        assert re.fullmatch(r"[0-9a-f]{32}", unknown.json()["challenge_id"])
        challenge_id = started.json()["challenge_id"]
        assert desk.smtp is not None
        [mail] = desk.smtp.mailbox.to(email_of("carol"))
        assert mail.message()["Subject"] == "Reset your password"
        assert "reset your password" in mail.text

        answer = {"challenge_id": challenge_id, "method": "email_code"}
        code = await desk.code("carol", "email_code")
        weak = await desk.post(RESET_COMPLETE, {**answer, "code": code, "password": "short"})
        assert weak.status_code == 422
        assert problem_fields(weak) == {"password"}
        wrong = await desk.post(RESET_COMPLETE, {**answer, "code": "x", "password": NEW_PASSWORD})
        assert wrong.json()["errors"] == [{"field": "code", "message": "wrong; 4 attempts left"}]
        # A reset is not a verification: its codes do not answer there, nor does it retry.
        assert (await desk.answer(challenge_id, "email_code", code)).status_code == 404
        assert (await desk.retry(challenge_id=challenge_id)).status_code == 404

        half = await desk.post(RESET_COMPLETE, {**answer, "code": code, "password": NEW_PASSWORD})
        assert half.json() == {
            "challenge_id": challenge_id,
            "satisfied": ["email_code"],
            "pending": ["sms_code"],
            "completed": False,
        }
        assert await desk.can_log_in("carol")  # nothing changes before the last method
        sms = await desk.code("carol", "sms_code")
        done = await desk.post(
            RESET_COMPLETE,
            {
                "challenge_id": challenge_id,
                "method": "sms_code",
                "code": sms,
                "password": NEW_PASSWORD,
            },
        )
        assert done.status_code == 200, done.text
        assert done.json()["completed"] is True

        assert not await desk.can_log_in("carol")
        assert await desk.can_log_in("carol", NEW_PASSWORD)
        for key in keys:
            assert (await desk.client.get(CURRENT, headers=desk.api.auth(key))).status_code == 401
        assert (await desk.client.get(CURRENT, headers=desk.api.auth(desk.key))).status_code == 200


@sqlite_only("the setting only chooses whether one UPDATE runs")
async def test_keys_survive_a_reset_when_the_setting_is_off(settings: Settings) -> None:
    async with open_desk(settings, "outbox", reset_revokes_keys=False) as desk:
        await desk.api.create_user("carol", roles=["integration"], email=email_of("carol"))
        key = await desk.api.login("carol")
        started = await desk.post(
            RESET, {"email": email_of("carol"), "methods": ["email_link"], "link_url": LINK_URL}
        )
        assert started.status_code == 200, started.text
        token = await desk.token("carol")
        # The gateway's page confirms accounts only; a reset token does nothing there.
        assert (await desk.client.get(LINK, params={"token": token})).status_code == 410
        assert (await desk.post(CHALLENGE, {"token": token})).status_code == 404

        done = await desk.post(RESET_COMPLETE, {"token": token, "password": NEW_PASSWORD})
        assert done.json()["completed"] is True
        assert await desk.can_log_in("carol", NEW_PASSWORD)
        assert (await desk.client.get(CURRENT, headers=desk.api.auth(key))).status_code == 200
        again = await desk.post(RESET_COMPLETE, {"token": token, "password": USER_PASSWORD})
        assert again.status_code == 409


@sqlite_only("which challenge a code reaches is the same SQL on both")
async def test_a_new_reset_ends_the_earlier_one(settings: Settings) -> None:
    async with open_desk(settings, "outbox", challenge_cooldown=0) as desk:
        await desk.api.create_user("carol", roles=["integration"], email=email_of("carol"))
        first = (await desk.post(RESET, {"login": "carol"})).json()["challenge_id"]
        old_code = await desk.code("carol", "email_code")
        second = (await desk.post(RESET, {"login": "carol"})).json()["challenge_id"]
        assert second != first
        stale = await desk.post(
            RESET_COMPLETE,
            {
                "challenge_id": first,
                "method": "email_code",
                "code": old_code,
                "password": NEW_PASSWORD,
            },
        )
        assert stale.status_code == 410, stale.text
        assert await desk.can_log_in("carol")

        code = await desk.code("carol", "email_code")
        done = await desk.post(
            RESET_COMPLETE,
            {
                "challenge_id": second,
                "method": "email_code",
                "code": code,
                "password": NEW_PASSWORD,
            },
        )
        assert done.json()["completed"] is True


@sqlite_only("permission checks and throttling; the same SQL on both")
async def test_reset_needs_reset_passwords_and_is_throttled_per_login(settings: Settings) -> None:
    async with open_desk(settings, "outbox", challenge_max_retries=1) as desk:
        await desk.api.create_user("ivan", roles=["integration"])
        ivan = await desk.api.login("ivan")
        assert (await desk.post(RESET, {"login": "ivan"}, key=ivan)).status_code == 403
        body = {
            "challenge_id": "0" * 32,
            "method": "email_code",
            "code": "1",
            "password": NEW_PASSWORD,
        }
        assert (await desk.post(RESET_COMPLETE, body, key=ivan)).status_code == 403

        for login in ("nobody", "ivan"):  # ivan has no e-mail address: answered alike
            assert (await desk.post(RESET, {"login": login})).status_code == 200
            cooling = await desk.post(RESET, {"login": login.upper()})
            assert cooling.status_code == 429
            assert cooling.headers["retry-after"] == "60"
            desk.clock.advance(60)
            assert (await desk.post(RESET, {"login": login})).status_code == 200
            desk.clock.advance(60)
            assert (await desk.post(RESET, {"login": login})).status_code == 409
        assert not await desk.messages("ivan", "email")


@sqlite_only("validation")
async def test_reset_names_exactly_one_person(settings: Settings) -> None:
    async with open_desk(settings, "outbox") as desk:
        for body in ({}, {"login": "a", "email": "a@example.com"}, {"login": " "}):
            assert (await desk.post(RESET, body)).status_code == 422, body
