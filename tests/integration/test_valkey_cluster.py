"""The gateway on a real three-node Valkey cluster (`GATEWAY_VALKEY_CLUSTER`).

The response cache over HTTP (hits, freshness after writes through a second app
instance, lists, a list that depends on a type living on another node, per-user
isolation), key revocation and role changes on every instance's next request, single
flight in one process and across two, writes racing reads, stats and purges across
every node, coalesced reads (one MGET per slot), and where keys land: each type's
entries, locks and generations in one slot, the types spread over the nodes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from valkey.asyncio.cluster import ValkeyCluster
from valkey.crc import key_slot

from gateway.runtime import open_services
from gateway.settings import DEMO_TENANT_FILE, Settings, SettingsError
from resolvers.batching import BatchedReads
from resolvers.services import Services
from resolvers.tenant import load_tenant
from tests.conftest import Api, Backend, start_api
from tests.integration.test_cache_core import RACES, SHAPE, Source, principal
from tests.valkey_cluster import LocalCluster

COLLECTIONS = "/api/v1/collections"
CACHE = "/api/v1/admin/cache"
PHONE = "+420601123456"
SPREAD = ("Company", "Contact", "Deal")
"""The types these tests read: the key prefix is chosen so that each has a node of its own."""

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)


def _spread_prefix(cluster: LocalCluster) -> str:
    """A key prefix under which the demo tenant's `SPREAD` types land on three nodes.

    Which node a type lives on follows from its hash tag (prefix, tenant digest, type):
    fixing the prefix makes the spread certain instead of a matter of luck.
    """
    digest = load_tenant(DEMO_TENANT_FILE).digest[:12]
    for n in itertools.count():
        prefix = f"jgw{n}"
        nodes = {cluster.node_of(f"{{{prefix}:{digest}:{name}}}") for name in SPREAD}
        if len(nodes) == len(SPREAD):
            return prefix
    raise AssertionError  # pragma: no cover - itertools.count never ends


def _settings(backend: Backend, cluster: LocalCluster, data_dir: Path) -> Settings:
    return Settings.from_env(
        {
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_DATABASE_URL": backend.url,
            "GATEWAY_VALKEY_URL": cluster.url,
            "GATEWAY_VALKEY_CLUSTER": "true",
            "GATEWAY_VALKEY_PREFIX": _spread_prefix(cluster),
            "GATEWAY_PASSWORD_PROFILE": "test",
        }
    )


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    """The cache does not depend on the database: most tests here run on SQLite only."""
    return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")


@pytest.fixture
def cluster_settings(valkey_cluster: LocalCluster, sqlite: Backend, tmp_path: Path) -> Settings:
    valkey_cluster.flush()
    return _settings(sqlite, valkey_cluster, tmp_path / "data")


@pytest.fixture
async def cluster_api(cluster_settings: Settings) -> AsyncIterator[Api]:
    async for started in start_api(cluster_settings):
        yield started


@pytest.fixture
async def cluster_services(cluster_settings: Settings) -> AsyncIterator[Services]:
    async with open_services(cluster_settings, migrate=True) as opened:
        yield opened


# --- helpers ------------------------------------------------------------------------


async def _get(api: Api, key: str, path: str) -> httpx.Response:
    return await api.client.get(f"{COLLECTIONS}/{path}", headers=api.auth(key))


async def _send(api: Api, method: str, path: str, body: object = None) -> httpx.Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(api.admin_key), **kwargs
    )


async def _create(api: Api, type_name: str, body: dict[str, Any]) -> int:
    response = await _send(api, "POST", type_name, body)
    assert response.status_code == 201, response.text
    record_id: int = response.json()["data"]["id"]
    return record_id


def _status(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-cache"]


async def _statuses(api: Api, key: str, paths: list[str]) -> list[str]:
    return [_status(await _get(api, key, path)) for path in paths]


def _keys_by_node(cluster: LocalCluster, pattern: str) -> list[set[bytes]]:
    """The keys matching `pattern` on each node, asked of each node directly."""
    found = []
    for client in cluster.node_clients():
        with client:
            found.append(set(client.scan_iter(match=pattern, count=1000)))
    return found


# --- 1. the response cache over HTTP ----------------------------------------------------


async def test_cached_reads_are_fresh_across_instances_on_a_cluster(
    backend: Backend, valkey_cluster: LocalCluster, tmp_path: Path
) -> None:
    valkey_cluster.flush()
    settings = _settings(backend, valkey_cluster, tmp_path / "data")
    async with running_api(settings) as api, running_api(settings) as other:
        admin, reader = api.admin_key, other.admin_key
        acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
        jan = await _create(api, "Contact", {"full_name": "Jan", "company": acme})
        paths = [
            "Company",
            f"Company/{acme}",
            "Company/by/registration_no/R-1",
            f"Contact/{jan}",
            "Contact?_filter=company.name = 'Acme'",  # Contact's entry, Company's generation
        ]
        assert await _statuses(other, reader, paths) == ["MISS"] * 5
        assert await _statuses(other, reader, paths) == ["HIT"] * 5
        assert await _statuses(api, admin, paths) == ["HIT"] * 5  # the same user, another key

        renamed = await _send(api, "PATCH", f"Company/{acme}", {"name": "Renamed"})
        assert renamed.status_code == 200
        after = [await _get(other, reader, path) for path in paths]
        assert [_status(r) for r in after] == ["MISS", "MISS", "MISS", "HIT", "MISS"]
        assert after[0].json()["data"][0]["name"] == "Renamed"
        assert after[1].json()["data"]["name"] == "Renamed"
        assert after[4].json()["data"] == []  # the filter looked at the Company's old name

        # A new record: its type's lists are flushed, other records' entries kept.
        await _create(api, "Company", {"name": "Beta"})
        again = [await _get(other, reader, path) for path in paths[:2]]
        assert [_status(r) for r in again] == ["MISS", "HIT"]
        assert [c["name"] for c in again[0].json()["data"]] == ["Renamed", "Beta"]

        # Deleting the referenced Company refreshes the Contact that pointed at it.
        assert (await _send(other, "DELETE", f"Company/{acme}")).status_code == 204
        contact = await _get(api, admin, f"Contact/{jan}")
        assert _status(contact) == "MISS"
        assert contact.json()["data"]["company"] is None


async def test_users_never_share_entries_on_a_cluster(cluster_api: Api) -> None:
    api = cluster_api
    jan = await _create(api, "Contact", {"full_name": "Jan", "phone": PHONE})
    await api.create_user("ivan", roles=["integration"])
    await api.create_user("rita", roles=["reporter"])  # no phone
    ivan, rita = await api.login("ivan"), await api.login("rita")
    path = f"Contact/{jan}"

    seen = {}
    for key in (ivan, rita):
        assert _status(await _get(api, key, path)) == "MISS"
        seen[key] = await _get(api, key, path)
        assert _status(seen[key]) == "HIT"
    assert seen[ivan].json()["data"]["phone"] == PHONE
    assert "phone" not in seen[rita].json()["data"]
    assert seen[ivan].headers["etag"] != seen[rita].headers["etag"]


# --- 2. keys and roles on every instance's next request ------------------------------------


async def test_revocation_and_role_changes_apply_on_every_instance(cluster_api: Api) -> None:
    api = cluster_api
    jan = await _create(api, "Contact", {"full_name": "Jan", "phone": PHONE})
    ivan_id = await api.create_user("ivan", roles=["integration"])
    revoked = await api.client.post(
        "/api/v1/auth/keys",
        json={"login": "ivan", "password": "a-long-password", "name": "doomed"},
    )
    assert revoked.status_code == 201
    doomed, doomed_id = revoked.json()["key"], revoked.json()["id"]
    key = await api.login("ivan")
    path = f"Contact/{jan}"
    async with running_api(api.settings) as other:
        for instance in (api, other):
            for each in (key, doomed):
                assert (await _get(instance, each, path)).json()["data"]["phone"] == PHONE

        gone = await other.client.delete(
            f"/api/v1/auth/keys/{doomed_id}", headers=other.auth(other.admin_key)
        )
        assert gone.status_code == 204
        for instance in (api, other):
            assert (await _get(instance, doomed, path)).status_code == 401

        changed = await api.client.patch(
            f"/api/v1/users/{ivan_id}",
            json={"roles": ["reporter"]},
            headers=api.auth(api.admin_key),
        )
        assert changed.status_code == 200
        for instance in (other, api):
            response = await _get(instance, key, path)
            assert "phone" not in response.json()["data"]

        past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
        ended = await other.client.patch(
            f"/api/v1/users/{ivan_id}", json={"valid_to": past}, headers=other.auth(other.admin_key)
        )
        assert ended.status_code == 200
        for instance in (api, other):
            assert (await _get(instance, key, path)).status_code == 401


# --- 3. single flight and racing writes ------------------------------------------------------


async def test_single_flight_on_a_cluster(
    cluster_services: Services, cluster_settings: Settings
) -> None:
    async with open_services(cluster_settings, migrate=False) as second:
        one, two = cluster_services.cache, second.cache
        who = principal(cluster_services)
        key = one.type_key(who, "Company", "list", SHAPE, depends=("Contact", "Deal"))
        lock = f"{key.entry}:lock"
        assert len({key_slot(k.encode()) for k in (key.entry, lock, key.generations[1])}) == 1
        source = Source(b"[1,2,3]", delay=0.1)

        results = await asyncio.gather(
            *(cache.read(who, key, source) for _ in range(50) for cache in (one, two))
        )

        # The other process waits on the lock; it computes too only if it asked for the
        # lock after the entry was stored and the lock released (as on one server).
        assert 1 <= source.calls <= 2
        assert [r.status for r in results].count("MISS") == source.calls
        assert {r.body for r in results} == {b"[1,2,3]"}
        assert len({r.etag for r in results}) == 1


@pytest.mark.parametrize("race", sorted(RACES))
async def test_a_write_racing_a_read_leaves_no_stale_entry_on_a_cluster(
    cluster_services: Services, cluster_settings: Settings, race: str
) -> None:
    """As on one server, with the entry and the generations it depends on on other nodes."""
    async with open_services(cluster_settings, migrate=False) as second:
        reader, writer = cluster_services.cache, second.cache
        who = principal(cluster_services)
        before, during, after = RACES[race]

        async def write(times: int) -> None:
            for _ in range(times):
                await writer.written("Company", 9)

        for key in (
            reader.record_key(who, "Contact", 9, SHAPE, depends=("Company",)),
            reader.type_key(who, "Deal", "list", SHAPE, depends=("Company",)),
        ):
            await write(before)
            stale = Source(b'{"old":1}', during=lambda n=during: write(n))  # type: ignore[misc]
            assert (await reader.read(who, key, stale)).status == "MISS"
            await write(after)

            fresh = Source(b'{"new":1}')
            following = await reader.read(who, key, fresh)
            assert following.status == "MISS", race
            assert following.body == b'{"new":1}'
            assert (await reader.read(who, key, fresh)).status == "HIT"


# --- 4. operators: stats and purges across nodes ------------------------------------------


async def test_stats_and_purges_cover_every_node(
    cluster_api: Api, valkey_cluster: LocalCluster
) -> None:
    api = cluster_api
    ivan_id = await api.create_user("ivan", roles=["integration"])
    await api.create_user("irma", roles=["integration"])
    ivan, irma = await api.login("ivan"), await api.login("irma")
    acme = await _create(api, "Company", {"name": "Acme"})
    jan = await _create(api, "Contact", {"full_name": "Jan"})
    big = await _create(api, "Deal", {"title": "Big", "company": acme, "status": "open"})
    paths = [
        "Company",
        f"Company/{acme}",
        "Contact",
        f"Contact/{jan}",
        "Deal",
        f"Deal/{big}",
    ]
    for key in (ivan, irma):
        assert await _statuses(api, key, paths) == ["MISS"] * 6

    entries = _keys_by_node(valkey_cluster, "*}:e:*")
    assert [len(on_node) for on_node in entries] == [4, 4, 4]  # one type per node
    stats = (await api.client.get(CACHE, headers=api.auth(api.admin_key))).json()
    assert {name: t["entries"] for name, t in stats["types"].items()} == {
        "Company": 4,
        "Contact": 4,
        "Deal": 4,
    }
    assert all(t["memory_bytes"] > 0 for t in stats["types"].values())

    async def purge(**params: str | int) -> int:
        response = await api.client.delete(CACHE, params=params, headers=api.auth(api.admin_key))
        assert response.status_code == 200, response.text
        deleted: int = response.json()["deleted"]
        return deleted

    assert await purge(type="Contact") == 4
    assert await _statuses(api, ivan, paths) == ["HIT", "HIT", "MISS", "MISS", "HIT", "HIT"]
    assert await purge(user=ivan_id) == 6  # on all three nodes
    assert await _statuses(api, irma, paths) == ["HIT", "HIT", "MISS", "MISS", "HIT", "HIT"]
    assert await purge() == 6
    assert [len(on_node) for on_node in _keys_by_node(valkey_cluster, "*}:e:*")] == [0, 0, 0]


# --- 5. where keys land, and coalesced reads -----------------------------------------------


async def test_each_types_keys_share_a_slot_and_types_spread(
    cluster_services: Services, valkey_cluster: LocalCluster
) -> None:
    cache = cluster_services.cache
    who = principal(cluster_services)
    for name in SPREAD:
        await cache.read(who, cache.record_key(who, name, 1, SHAPE), Source())
        await cache.written(name, 1)
    nodes = set()
    for name in SPREAD:
        record = cache.record_key(who, name, 1, SHAPE)
        keys = [record.entry, f"{record.entry}:lock", *record.generations[1:]]
        assert {key_slot(key.encode()) for key in keys} == {key_slot(cache.tag(name).encode())}
        holders = _keys_by_node(valkey_cluster, f"{cache.tag(name)}*")
        assert [bool(on_node) for on_node in holders].count(True) == 1
        nodes.add(valkey_cluster.node_of(cache.tag(name)))
    assert nodes == {0, 1, 2}


def _mget_calls(cluster: LocalCluster) -> list[int]:
    calls = []
    for client in cluster.node_clients():
        with client:
            stats = client.info("commandstats")
        calls.append(int(stats.get("cmdstat_mget", {}).get("calls", 0)))
    return calls


async def test_reads_of_one_turn_take_one_mget_per_slot(valkey_cluster: LocalCluster) -> None:
    valkey_cluster.flush()
    client = ValkeyCluster.from_url(valkey_cluster.url)
    try:
        tagged = [f"{{t{n % 3}}}:k{n}" for n in range(60)]  # three slots
        loose = [f"k{n}" for n in range(20)]  # twenty slots, most likely
        await client.mset_nonatomic({key: key for key in tagged + loose})
        reads = BatchedReads(client)
        before = _mget_calls(valkey_cluster)
        values = await asyncio.gather(
            *(reads.get(key) for key in [*tagged, *loose, "absent"]),
            reads.get_many(tagged[:3]),
        )
        after = _mget_calls(valkey_cluster)
    finally:
        await client.aclose()
    assert values[:-1] == [key.encode() for key in tagged + loose] + [None]
    assert values[-1] == [key.encode() for key in tagged[:3]]
    slots = {key_slot(key.encode()) for key in [*tagged, *loose, "absent"]}
    assert sum(after) - sum(before) == len(slots)


# --- 6. settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"GATEWAY_VALKEY_CLUSTER": "true"}, "GATEWAY_VALKEY_CLUSTER needs"),
        (
            {"GATEWAY_VALKEY_CLUSTER": "yes", "GATEWAY_VALKEY_URL": "valkey://h:7000/2"},
            "a cluster has only database 0",
        ),
        ({"GATEWAY_VALKEY_URL": "http://h:7000"}, "GATEWAY_VALKEY_URL: expected"),
        (
            {"GATEWAY_VALKEY_URL": "valkey://h:7000", "GATEWAY_VALKEY_CA_FILE": "/ca.pem"},
            "GATEWAY_VALKEY_CA_FILE needs a valkeys://",
        ),
        ({"GATEWAY_VALKEY_PREFIX": "a{b}"}, "GATEWAY_VALKEY_PREFIX"),
    ],
)
def test_cluster_and_tls_settings_are_checked(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        Settings.from_env(environ)


def test_cluster_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_VALKEY_URL": "valkeys://cache.internal:6380",
            "GATEWAY_VALKEY_CLUSTER": "true",
            "GATEWAY_VALKEY_CA_FILE": "/etc/valkey/ca.pem",
        }
    )
    assert settings.valkey.cluster is True
    assert settings.valkey.ca_file == Path("/etc/valkey/ca.pem")
    assert "cache.internal" not in repr(settings)  # the URL may carry a password
