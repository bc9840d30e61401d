"""`/manage` in headless Chromium: sign in, read the figures, purge a type, refusals.

The figures on the page are checked against `GET /api/v1/admin/cache`; the purge
against the same. SQLite only: the screen has no backend-specific behaviour.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.conftest import Api

if TYPE_CHECKING:
    from playwright.async_api import Page

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def cache_entries(api: Api) -> dict[str, int]:
    response = await api.client.get("/api/v1/admin/cache", headers=api.auth(api.admin_key))
    assert response.status_code == 200, response.text
    return {name: t["entries"] for name, t in response.json()["types"].items()}


async def warm_cache(api: Api) -> None:
    """Records, then reads of them: a list and records of Company and Deal, a Contact list."""
    admin = api.auth(api.admin_key)
    company = await api.client.post(
        "/api/v1/collections/Company", json={"name": "Acme"}, headers=admin
    )
    assert company.status_code == 201, company.text
    company_id = company.json()["data"]["id"]
    urls = ["/api/v1/collections/Company", f"/api/v1/collections/Company/{company_id}"]
    for title in ("Rollout", "Renewal"):
        deal = await api.client.post(
            "/api/v1/collections/Deal",
            json={"title": title, "company": company_id, "status": "open"},
            headers=admin,
        )
        assert deal.status_code == 201, deal.text
        urls.append(f"/api/v1/collections/Deal/{deal.json()['data']['id']}")
    urls += ["/api/v1/collections/Deal", "/api/v1/collections/Contact"]
    for url in urls:
        response = await api.client.get(url, headers=admin)
        assert response.status_code == 200, response.text
        assert response.headers["X-Cache"] == "MISS"


async def shown_entries(page: Page) -> dict[str, int]:
    shown = {}
    for row in await page.locator("#types tbody tr").all():
        name = await row.get_attribute("data-type")
        assert name is not None
        shown[name] = int((await row.locator("td.entries").inner_text()).replace(",", ""))
    return shown


async def sign_in(page: Page, live_url: str, key: str) -> int:
    """Submit the sign-in form; the status of the form's response."""
    await page.goto(f"{live_url}/manage")
    await page.get_by_label("API key").fill(key)
    async with page.expect_response(f"{live_url}/manage/sign-in") as answer:
        await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    return (await answer.value).status


@SQLITE
async def test_an_operator_reads_the_figures_and_purges_a_type(
    page: Page, api: Api, live_url: str
) -> None:
    await warm_cache(api)
    assert await sign_in(page, live_url, api.admin_key) == 303
    assert page.url == f"{live_url}/manage"
    assert await page.locator(".who").inner_text() == "Signed in as root\nSign out"
    (cookie,) = await page.context.cookies()
    assert cookie["name"] == "jgw_manage"
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/manage")
    assert cookie["expires"] == -1  # a session cookie

    expected = await cache_entries(api)
    assert expected == {"Company": 2, "Contact": 1, "Deal": 3}
    shown = await shown_entries(page)
    assert {name: n for name, n in shown.items() if n} == expected
    assert set(shown) == {"Company", "Contact", "Deal", "Activity", "Document"}
    assert await page.locator("#types tfoot td.entries").inner_text() == "6"
    assert await page.locator("#valkey").inner_text() == "Valkey available"
    memory = await page.locator("[data-figure=memory] .value").inner_text()
    assert re.fullmatch(r"\d+\.\d (KiB|MiB)", memory), memory
    assert await page.locator("[data-figure=list-ttl] .value").inner_text() == "5 min"

    await page.locator("#purge-type-name").select_option("Deal")
    await page.get_by_role("button", name="Purge type…").click()
    await page.wait_for_load_state()
    assert await page.locator(".question").inner_text() == "Purge all cached entries of type Deal?"
    assert await cache_entries(api) == expected  # nothing yet
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url(f"{live_url}/manage?purged=3")
    assert await page.locator(".notice.ok").inner_text() == "Purged 3 entries."
    assert await cache_entries(api) == {"Company": 2, "Contact": 1}
    assert (await shown_entries(page))["Deal"] == 0

    await page.get_by_role("button", name="Purge all…").click()
    assert await page.locator(".question").inner_text() == "Purge all cached entries?"
    await page.get_by_role("link", name="Cancel").click()
    await page.wait_for_url(f"{live_url}/manage")
    assert await cache_entries(api) == {"Company": 2, "Contact": 1}

    # The browser's own cookie, but no token: refused; the same with the page's token passes.
    forged = await page.context.request.post(
        f"{live_url}/manage/purge",
        form={"scope": "all", "confirm": "1"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "not sent from the current Application Management page" in await forged.text()
    assert await cache_entries(api) == {"Company": 2, "Contact": 1}
    token = await page.locator("#purge-all input[name=csrf]").get_attribute("value")
    assert token is not None
    genuine = await page.context.request.post(
        f"{live_url}/manage/purge",
        form={"scope": "type", "type": "Contact", "confirm": "1", "csrf": token},
        max_redirects=0,
    )
    assert (genuine.status, genuine.headers["location"]) == (303, "/manage?purged=1")
    assert await cache_entries(api) == {"Company": 2}

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{live_url}/manage")
    assert await page.get_by_label("API key").is_visible()
    assert await page.context.cookies() == []


@SQLITE
async def test_a_key_without_manage_cache_is_refused_at_sign_in(
    page: Page, api: Api, live_url: str
) -> None:
    await api.create_user("carol", roles=["integration"])
    assert await sign_in(page, live_url, await api.login("carol")) == 403
    error = await page.locator(".notice.error").inner_text()
    assert error == "carol does not hold the manageCache permission."
    assert await page.context.cookies() == []

    assert await sign_in(page, live_url, "jgw_not-a-key") == 401
    assert "That key was refused" in await page.locator(".notice.error").inner_text()
