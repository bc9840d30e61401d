"""`gateway cache stats|purge` as an operator runs them, against the app's Valkey."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.test_cli_identity import Cli, _bearer, app_on, cli

pytestmark = pytest.mark.slow
__all__ = ["cli"]  # the fixture, imported for this module's tests

COMPANIES = "/api/v1/collections/Company"
DEALS = "/api/v1/collections/Deal"


def _entries(stats: str, type_name: str) -> int:
    found = re.search(rf"^{type_name}\s+(\d+)\s", stats, re.MULTILINE)
    return int(found.group(1)) if found else 0


async def test_stats_then_purge_by_type_user_and_all(cli: Cli, cache_url: str) -> None:
    admin_key = (await cli.arun("key", "create", "--user", "admin", "--name", "ops")).stdout
    await cli.arun("user", "add", "dora", "--no-password", "--role", "reporter")
    dora_key = (await cli.arun("key", "create", "--user", "dora", "--name", "bi")).stdout
    admin, dora = _bearer(admin_key.strip()), _bearer(dora_key.strip())

    async with app_on(cli, cache_url) as client:
        created = await client.post(COMPANIES, json={"name": "Acme"}, headers=admin)
        assert created.status_code == 201, created.text
        for who in (admin, dora):
            for url in (COMPANIES, f"{COMPANIES}/{created.json()['data']['id']}", DEALS):
                assert (await client.get(url, headers=who)).status_code == 200
        assert (await client.get(COMPANIES, headers=admin)).headers["X-Cache"] == "HIT"
        await asyncio.sleep(1.2)  # the app adds its counts to the shared ones each second

        stats = (await cli.arun("cache", "stats")).stdout
        assert _entries(stats, "Company") == 4  # two users, a list and a record each
        assert _entries(stats, "Deal") == 2
        assert re.search(r"hits 1 +misses 6 +bypasses 0 +hit ratio 14.3%", stats), stats
        assert "GATEWAY_CACHE_LIST_TTL" in stats

        purged = (await cli.arun("cache", "purge", "--type", "Company")).stdout
        assert "Purged 4 cached entries." in purged
        stats = (await cli.arun("cache", "stats")).stdout
        assert _entries(stats, "Company") == 0
        assert _entries(stats, "Deal") == 2
        assert (await client.get(COMPANIES, headers=admin)).headers["X-Cache"] == "MISS"

        purged = (await cli.arun("cache", "purge", "--user", "dora")).stdout
        assert "Purged 1 cached entry." in purged  # dora's Deal list
        assert (await client.get(DEALS, headers=admin)).headers["X-Cache"] == "HIT"
        assert (await client.get(DEALS, headers=dora)).headers["X-Cache"] == "MISS"

        assert "Purged 3 cached entries." in (await cli.arun("cache", "purge", "--all")).stdout
        assert "No cached entries." in (await cli.arun("cache", "stats")).stdout


def test_purge_says_what_is_wrong(cli: Cli) -> None:
    assert "--type, --user, or --all" in cli.run("cache", "purge", ok=False).stderr
    assert "no type named 'Nope'" in cli.run("cache", "purge", "--type", "Nope", ok=False).stderr
    assert (
        "no user with login 'ghost'"
        in cli.run("cache", "purge", "--user", "ghost", ok=False).stderr
    )
