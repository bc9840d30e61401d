"""The response cache end to end over REST (DESIGN §7), on both backends and a real Valkey.

Hit, miss and bypass per rule; 304 revalidation (also under `no-cache`); per-user
isolation of bodies and ETags; invalidation seen by a second app instance sharing the
database and Valkey; role changes; the read audit; `/admin/cache`; and a property-based
check that equivalent list requests share one key while different ones never do.
Valkey failures and single flight are in `test_cache_faults.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from httpx import Response
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import update

from gateway.settings import Settings
from resolvers.cache import request_shape_hash
from resolvers.collections import list_query
from resolvers.reads import _list_shape
from tests.conftest import Api, start_api

COLLECTIONS = "/api/v1/collections"
CACHE = "/api/v1/admin/cache"
AUDIT = "/api/v1/admin/audit"
NO_CACHE = {"Cache-Control": "no-cache"}
PHONE = "+420601123456"

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)
"""A further app instance on the same database and Valkey."""


# --- helpers ------------------------------------------------------------------------


async def _get(
    api: Api, key: str, path: str, headers: dict[str, str] | None = None, **params: str | int
) -> Response:
    return await api.client.get(
        f"{COLLECTIONS}/{path}",
        params=params or None,  # an empty mapping would drop a query written into `path`
        headers={**api.auth(key), **(headers or {})},
    )


async def _search(
    api: Api, key: str, type_name: str, body: dict[str, Any], method: str = "POST", **params: str
) -> Response:
    path = f"{COLLECTIONS}/{type_name}" + ("/search" if method == "POST" else "")
    return await api.client.request(method, path, json=body, params=params, headers=api.auth(key))


async def _send(api: Api, key: str, method: str, path: str, body: object = None) -> Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(key), **kwargs
    )


async def _create(api: Api, type_name: str, body: dict[str, Any]) -> int:
    response = await _send(api, api.admin_key, "POST", type_name, body)
    assert response.status_code == 201, response.text
    record_id: int = response.json()["data"]["id"]
    return record_id


async def _user(api: Api, login: str, *roles: str) -> tuple[int, str]:
    user_id = await api.create_user(login, roles=list(roles))
    return user_id, await api.login(login)


def _status(response: Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-cache"]


async def _statuses(api: Api, key: str, paths: list[str], **params: str | int) -> list[str]:
    return [_status(await _get(api, key, path, **params)) for path in paths]


def _assert_cached_headers(response: Response, status: str) -> None:
    assert response.headers["x-cache"] == status
    assert response.headers["etag"].startswith('"')
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Authorization, X-API-Key"


# --- 1. hit, miss, bypass -----------------------------------------------------------------


async def test_each_read_misses_once_then_hits(api: Api) -> None:
    admin = api.admin_key
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    paths = ["Company", f"Company/{acme}", "Company/by/registration_no/R-1"]

    first = [await _get(api, admin, path) for path in paths]
    second = [await _get(api, admin, path) for path in paths]

    for miss, hit in zip(first, second, strict=True):
        _assert_cached_headers(miss, "MISS")
        _assert_cached_headers(hit, "HIT")
        assert hit.content == miss.content
        assert hit.headers["etag"] == miss.headers["etag"]
        assert hit.headers["content-type"].startswith("application/json")
    assert [r["name"] for r in second[0].json()["data"]] == ["Acme"]
    assert second[1].json()["data"]["id"] == acme
    assert second[2].json()["data"]["id"] == acme
    # Another record, another page, another property value: their own entries.
    other = await _create(api, "Company", {"name": "Other", "registration_no": "R-2"})
    fresh = [f"Company/{other}", "Company/by/registration_no/R-2"]
    assert await _statuses(api, admin, fresh) == ["MISS", "MISS"]
    assert _status(await _get(api, admin, "Company", _limit=1)) == "MISS"
    assert _status(await _get(api, admin, "Company", _limit=1)) == "HIT"


async def test_search_shares_the_entry_of_the_equivalent_list(api: Api) -> None:
    admin = api.admin_key
    await _create(api, "Company", {"name": "A", "employees": 10})
    await _create(api, "Company", {"name": "B", "employees": 20})

    listed = await _get(api, admin, "Company", _filter="name = 'A' and employees >= 10")
    assert _status(listed) == "MISS"
    assert [r["name"] for r in listed.json()["data"]] == ["A"]
    spellings = [
        {"filter": {"and": [{"employees": {"gte": 10.0}}, {"name": {"eq": "A"}}]}},
        {"filter": {"name": {"eq": "A"}, "employees": {"gte": 10}}, "order": ["id"]},
        {"filter": "employees >= 10.00 and name = 'A'", "limit": 50},
    ]
    for body in spellings:
        for method in ("POST", "SEARCH"):
            searched = await _search(api, admin, "Company", body, method)
            assert _status(searched) == "HIT", (body, method)
            assert searched.content == listed.content
            assert searched.headers["etag"] == listed.headers["etag"]

    other = await _search(api, admin, "Company", {"filter": {"name": {"eq": "B"}}})
    assert _status(other) == "MISS"
    assert [r["name"] for r in other.json()["data"]] == ["B"]
    assert _status(await _get(api, admin, "Company", _filter="name = 'B'")) == "HIT"
    bypassed = await _search(api, admin, "Company", {"filter": "name = 'B'"}, _noCache="1")
    assert _status(bypassed) == "BYPASS"
    assert bypassed.content == other.content

    revalidated = await api.client.post(
        f"{COLLECTIONS}/Company/search",
        json=spellings[0],
        headers={**api.auth(admin), "If-None-Match": listed.headers["etag"]},
    )
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["x-cache"] == "HIT"


BYPASSES: list[tuple[dict[str, str], dict[str, int]]] = [
    (NO_CACHE, {}),
    ({"Cache-Control": "max-age=0, No-Cache"}, {}),
    ({"Pragma": "no-cache"}, {}),
    ({}, {"_noCache": 1}),
]
"""Every way to ask for a fresh answer: headers, and query parameters."""


async def test_bypass_serves_fresh_data_and_stores_nothing(api: Api) -> None:
    admin = api.admin_key
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    paths = ["Company", f"Company/{acme}", "Company/by/registration_no/R-1"]

    for headers, params in BYPASSES:
        for path in paths:
            response = await _get(api, admin, path, headers, **params)
            _assert_cached_headers(response, "BYPASS")
            assert "Acme" in response.text
    assert await _statuses(api, admin, paths) == ["MISS", "MISS", "MISS"]
    assert await _statuses(api, admin, paths) == ["HIT", "HIT", "HIT"]

    # A change made behind the platform's back (straight into the table) is not seen by
    # the entries; a bypass reads the database, and leaves the entries as they were.
    async with api.db() as db:
        table = db.schema.records["Company"]
        async with db.writer.begin() as conn:
            await conn.execute(update(table).where(table.c.id == acme).values(name="Renamed"))
    for path in paths:
        cached = await _get(api, admin, path)
        assert _status(cached) == "HIT"
        assert "Acme" in cached.text
        for headers, params in BYPASSES:
            bypassed = await _get(api, admin, path, headers, **params)
            assert bypassed.headers["x-cache"] == "BYPASS", (headers, params)
            assert "Renamed" in bypassed.text
            assert "Acme" not in bypassed.text
            assert bypassed.headers["etag"] != cached.headers["etag"]
    assert await _statuses(api, admin, paths) == ["HIT", "HIT", "HIT"]


async def test_writes_carry_no_x_cache_and_are_never_served_from_it(api: Api) -> None:
    admin = api.admin_key
    created = await _send(api, admin, "POST", "Company", {"name": "Acme"})
    assert created.status_code == 201
    acme: int = created.json()["data"]["id"]
    assert _status(await _get(api, admin, f"Company/{acme}")) == "MISS"
    assert _status(await _get(api, admin, "Company")) == "MISS"

    writes = [
        ("PATCH", f"Company/{acme}", {"employees": 5}),
        ("PATCH", f"Company/{acme}", {"employees": 5}),  # the same write again
        ("PUT", f"Company/{acme}", {"name": "Acme", "employees": 6}),
        ("PUT", f"Company/{acme}", {"name": "Acme", "employees": 6}),
        ("POST", "Company", {"name": "Beta"}),
    ]
    for method, path, body in writes:
        response = await _send(api, admin, method, path, body)
        assert response.status_code in {200, 201}, response.text
        assert "x-cache" not in response.headers
        assert "etag" not in response.headers
        assert response.headers["cache-control"] == "no-store"
        one = await _get(api, admin, f"Company/{acme}")
        assert _status(one) == ("HIT" if method == "POST" else "MISS")  # another record
        assert one.json()["data"]["employees"] == (6 if method == "POST" else body["employees"])
        listed = await _get(api, admin, "Company")
        assert _status(listed) == "MISS"
        assert listed.json()["data"][-1] == response.json()["data"]
    deleted = await _send(api, admin, "DELETE", f"Company/{acme}")
    assert deleted.status_code == 204
    assert "x-cache" not in deleted.headers
    assert (await _get(api, admin, f"Company/{acme}")).status_code == 404
    listed = await _get(api, admin, "Company")
    assert _status(listed) == "MISS"
    assert [r["name"] for r in listed.json()["data"]] == ["Beta"]
    async with api.db() as db:
        keys = [k.decode() async for k in db.valkey.scan_iter(match=db.cache.entry_pattern())]
    assert keys, "reads stored entries"
    assert all(k.startswith(f"{db.cache.tag('Company')}:e:") for k in keys)


async def test_audited_single_reads_bypass_and_leave_a_row_each(api: Api) -> None:
    admin = api.admin_key
    ivan_id, ivan = await _user(api, "ivan", "integration")
    rita_id, rita = await _user(api, "rita", "reporter")
    _, olga = await _user(api, "olga", "operator")
    call = await _create(api, "Activity", {"subject": "Call", "kind": "call", "done": True})
    note = await _create(api, "Activity", {"subject": "Note", "kind": "note", "done": True})

    for _ in range(2):
        response = await _get(api, ivan, f"Activity/{call}")
        _assert_cached_headers(response, "BYPASS")
        assert response.json()["data"]["subject"] == "Call"
    rita_read = await _get(api, rita, f"Activity/{note}")
    assert _status(rita_read) == "BYPASS"
    # A revalidation is still a read of the record: bypassed, audited, then 304.
    revalidated = await _get(
        api, ivan, f"Activity/{call}", {"If-None-Match": response.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["x-cache"] == "BYPASS"

    # Lists of an audited type are cached like any other and leave no audit row.
    assert await _statuses(api, ivan, ["Activity", "Activity"]) == ["MISS", "HIT"]

    audit = await api.client.get(AUDIT, headers=api.auth(olga))
    assert audit.status_code == 200, audit.text
    rows = audit.json()["data"]
    seen = [(r["user_id"], r["type"], r["record_id"], r["action"], r["transport"]) for r in rows]
    assert sorted(seen) == sorted(
        [(ivan_id, "Activity", call, "read", "rest")] * 3
        + [(rita_id, "Activity", note, "read", "rest")]
    )
    assert all(r["occurred_on"] for r in rows)
    only_rita = await api.client.get(AUDIT, params={"user": rita_id}, headers=api.auth(admin))
    assert [r["record_id"] for r in only_rita.json()["data"]] == [note]
    for forbidden in (ivan, rita):
        refused = await api.client.get(AUDIT, headers=api.auth(forbidden))
        assert refused.status_code == 403, refused.text


async def test_a_filter_on_now_is_never_cached(api: Api) -> None:
    admin = api.admin_key
    await _create(
        api, "Activity", {"subject": "Past", "kind": "call", "due_at": "2020-01-01T10:00:00Z"}
    )
    for _ in range(2):
        response = await _get(api, admin, "Activity", _filter="due_at < $now")
        assert _status(response) == "BYPASS"
        assert [r["subject"] for r in response.json()["data"]] == ["Past"]
    body = {"filter": {"due_at": {"lt": "$now"}}}
    assert _status(await _search(api, admin, "Activity", body)) == "BYPASS"
    assert await _statuses(api, admin, ["Activity", "Activity"]) == ["MISS", "HIT"]


# --- 2. 304 -------------------------------------------------------------------------------


async def test_if_none_match_gives_an_empty_304(api: Api) -> None:
    admin = api.admin_key
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    paths = ["Company", f"Company/{acme}", "Company/by/registration_no/R-1"]
    for path in paths:
        first = await _get(api, admin, path)
        etag = first.headers["etag"]
        matching = [etag, f"W/{etag}", f'"nope", {etag}', f'W/"x",W/{etag} , "y"', "*"]
        for header in matching:
            for extra, status in (({}, "HIT"), (NO_CACHE, "BYPASS")):
                response = await _get(api, admin, path, {"If-None-Match": header, **extra})
                assert response.status_code == 304, (path, header, extra)
                assert response.content == b""
                assert response.headers["etag"] == etag
                _assert_cached_headers(response, status)
        query = await _get(api, admin, path, {"If-None-Match": etag}, _noCache=1)
        assert query.status_code == 304
        assert query.headers["x-cache"] == "BYPASS"
        for header in ('"nope"', etag.strip('"'), f'"{etag}"', ""):
            response = await _get(api, admin, path, {"If-None-Match": header})
            assert response.status_code == 200, header
            assert response.content == first.content

    stale = {path: (await _get(api, admin, path)).headers["etag"] for path in paths}
    changed = await _send(api, admin, "PATCH", f"Company/{acme}", {"name": "Renamed"})
    assert changed.status_code == 200
    for path in paths:
        response = await _get(api, admin, path, {"If-None-Match": stale[path]})
        assert response.status_code == 200, path
        assert response.headers["x-cache"] == "MISS"
        assert response.headers["etag"] != stale[path]
        assert "Renamed" in response.text
        again = await _get(api, admin, path, {"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["x-cache"] == "HIT"


# --- 3. per-user isolation ----------------------------------------------------------------


async def test_users_never_share_bodies_or_etags(api: Api) -> None:
    _, ivan = await _user(api, "ivan", "integration")
    _, irma = await _user(api, "irma", "integration")
    _, rita = await _user(api, "rita", "reporter")
    await _create(api, "Contact", {"full_name": "Jan", "phone": PHONE})
    done = {"subject": "Done", "kind": "call", "done": True}
    await _create(api, "Activity", done)
    await _create(api, "Activity", {"subject": "Open", "kind": "call", "done": False})

    for path in ("Contact", "Activity"):
        first = {who: await _get(api, key, path) for who, key in (("ivan", ivan), ("rita", rita))}
        assert first["ivan"].content != first["rita"].content
        assert first["ivan"].headers["etag"] != first["rita"].headers["etag"]
        for who, key in (("ivan", ivan), ("rita", rita)):
            again = await _get(api, key, path)
            assert _status(again) == "HIT"
            assert again.content == first[who].content
        # Each other's ETag, on a warm entry and under no-cache: never a 304.
        for key, theirs in ((rita, first["ivan"]), (ivan, first["rita"])):
            for extra in ({}, NO_CACHE):
                headers = {"If-None-Match": theirs.headers["etag"], **extra}
                response = await _get(api, key, path, headers)
                assert response.status_code == 200
                assert response.content != theirs.content

    contacts = {
        who: (await _get(api, key, "Contact")).json()["data"]
        for who, key in (("ivan", ivan), ("rita", rita))
    }
    assert contacts["ivan"][0]["phone"] == PHONE
    assert "phone" not in contacts["rita"][0]
    activities = await _get(api, rita, "Activity")
    assert [r["subject"] for r in activities.json()["data"]] == ["Done"]

    # The same role and the same body: still two entries and two ETags.
    ivans = await _get(api, ivan, "Contact")
    irmas = await _get(api, irma, "Contact")
    assert _status(irmas) == "MISS"
    assert irmas.content == ivans.content
    assert irmas.headers["etag"] != ivans.headers["etag"]
    crossed = await _get(api, irma, "Contact", {"If-None-Match": ivans.headers["etag"]})
    assert crossed.status_code == 200
    assert crossed.content == ivans.content


async def test_row_scopes_and_hidden_fields_apply_to_single_records(api: Api) -> None:
    _, ivan = await _user(api, "ivan", "integration")
    _, rita = await _user(api, "rita", "reporter")
    jan = await _create(api, "Contact", {"full_name": "Jan", "phone": PHONE})
    for _ in range(2):
        ivans = await _get(api, ivan, f"Contact/{jan}")
        ritas = await _get(api, rita, f"Contact/{jan}")
        assert ivans.json()["data"]["phone"] == PHONE
        assert "phone" not in ritas.json()["data"]
        assert ivans.headers["etag"] != ritas.headers["etag"]
    assert _status(ritas) == "HIT"
    response = await _get(api, rita, f"Contact/{jan}", {"If-None-Match": ivans.headers["etag"]})
    assert response.status_code == 200
    assert "phone" not in response.json()["data"]


# --- 4. invalidation across instances -------------------------------------------------------


async def test_writes_through_one_instance_are_fresh_on_another(api: Api) -> None:
    admin = api.admin_key
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    paths = ["Company", f"Company/{acme}", "Company/by/registration_no/R-1"]
    async with running_api(api.settings) as other:
        reader = other.admin_key
        assert await _statuses(other, reader, paths) == ["MISS", "MISS", "MISS"]
        assert await _statuses(other, reader, paths) == ["HIT", "HIT", "HIT"]

        renamed = await _send(api, admin, "PATCH", f"Company/{acme}", {"name": "Renamed"})
        assert renamed.status_code == 200
        responses = [await _get(other, reader, path) for path in paths]
        assert [_status(r) for r in responses] == ["MISS", "MISS", "MISS"]
        assert [r["name"] for r in responses[0].json()["data"]] == ["Renamed"]
        assert responses[1].json()["data"]["name"] == "Renamed"
        assert responses[2].json()["data"]["name"] == "Renamed"
        assert await _statuses(other, reader, paths) == ["HIT", "HIT", "HIT"]

        # A write to another record leaves this record's entry alone, not its type's lists.
        beta = await _create(api, "Company", {"name": "Beta", "registration_no": "R-2"})
        assert await _statuses(other, reader, paths) == ["MISS", "HIT", "MISS"]
        listed = await _get(other, reader, "Company")
        assert [r["name"] for r in listed.json()["data"]] == ["Renamed", "Beta"]

        # The unique value moves to another record: get-by-property follows it.
        moved = await _send(api, admin, "PATCH", f"Company/{acme}", {"registration_no": "R-9"})
        assert moved.status_code == 200
        swapped = await _send(api, admin, "PATCH", f"Company/{beta}", {"registration_no": "R-1"})
        assert swapped.status_code == 200
        by = await _get(other, reader, "Company/by/registration_no/R-1")
        assert _status(by) == "MISS"
        assert by.json()["data"]["id"] == beta

        deleted = await _send(api, admin, "DELETE", f"Company/{beta}")
        assert deleted.status_code == 204
        assert (await _get(other, reader, f"Company/{beta}")).status_code == 404
        assert (await _get(other, reader, "Company/by/registration_no/R-1")).status_code == 404
        listed = await _get(other, reader, "Company")
        assert _status(listed) == "MISS"
        assert [r["name"] for r in listed.json()["data"]] == ["Renamed"]


async def test_deleting_a_referenced_record_refreshes_its_referrers(api: Api) -> None:
    admin = api.admin_key
    acme = await _create(api, "Company", {"name": "Acme"})
    jan = await _create(api, "Contact", {"full_name": "Jan", "company": acme})
    paths = [f"Contact/{jan}", "Contact", "Contact?_filter=company.name = 'Acme'"]
    async with running_api(api.settings) as other:
        reader = other.admin_key
        warm = [await _get(other, reader, path) for path in paths]
        assert [_status(r) for r in warm] == ["MISS", "MISS", "MISS"]
        assert warm[0].json()["data"]["company"] == acme
        assert await _statuses(other, reader, paths) == ["HIT", "HIT", "HIT"]

        deleted = await _send(api, admin, "DELETE", f"Company/{acme}")
        assert deleted.status_code == 204, deleted.text
        one, listed, filtered = [await _get(other, reader, path) for path in paths]
        assert [_status(r) for r in (one, listed, filtered)] == ["MISS", "MISS", "MISS"]
        assert one.json()["data"]["company"] is None
        assert listed.json()["data"][0]["company"] is None
        assert filtered.json()["data"] == []


# --- 5. role changes --------------------------------------------------------------------


async def test_a_role_change_makes_old_entries_unreachable(api: Api) -> None:
    admin = api.admin_key
    user_id, key = await _user(api, "ivan", "integration")
    jan = await _create(api, "Contact", {"full_name": "Jan", "phone": PHONE})
    await _create(api, "Activity", {"subject": "Open", "kind": "call", "done": False})
    paths = [f"Contact/{jan}", "Contact", "Activity"]
    assert await _statuses(api, key, paths) == ["MISS", "MISS", "MISS"]
    assert await _statuses(api, key, paths) == ["HIT", "HIT", "HIT"]

    async def change(roles: list[str]) -> None:
        response = await api.client.patch(
            f"/api/v1/users/{user_id}", json={"roles": roles}, headers=api.auth(admin)
        )
        assert response.status_code == 200, response.text

    await change(["reporter"])  # fewer rights: hidden phone, only done activities
    one, listed, activities = [await _get(api, key, path) for path in paths]
    assert [_status(r) for r in (one, listed, activities)] == ["MISS", "MISS", "MISS"]
    assert "phone" not in one.json()["data"]
    assert "phone" not in listed.json()["data"][0]
    assert activities.json()["data"] == []
    assert await _statuses(api, key, paths) == ["HIT", "HIT", "HIT"]

    await change(["integration"])  # back: the old fingerprint, the old entries
    one = await _get(api, key, f"Contact/{jan}")
    assert one.json()["data"]["phone"] == PHONE

    await change(["registrar"])  # API access, no type: nothing from the cache either
    for path in paths:
        assert (await _get(api, key, path)).status_code == 403


# --- operators: /admin/cache -------------------------------------------------------------


async def _stats(api: Api, key: str = "") -> dict[str, Any]:
    response = await api.client.get(CACHE, headers=api.auth(key or api.admin_key))
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def _purge(api: Api, **params: str | int) -> Response:
    return await api.client.delete(CACHE, params=params, headers=api.auth(api.admin_key))


async def test_admin_cache_counts_and_purges(api: Api) -> None:
    ivan_id, ivan = await _user(api, "ivan", "integration")
    _, irma = await _user(api, "irma", "integration")
    _, olga = await _user(api, "olga", "operator")
    acme = await _create(api, "Company", {"name": "Acme"})
    jan = await _create(api, "Contact", {"full_name": "Jan"})
    before = await _stats(api)
    assert before["available"] is True
    assert before["entries"] == 0
    assert before["list_ttl"] == 300

    paths = ["Company", f"Company/{acme}", "Contact", f"Contact/{jan}"]
    for key in (ivan, irma):
        assert await _statuses(api, key, paths) == ["MISS"] * 4
        assert await _statuses(api, key, paths) == ["HIT"] * 4
    assert _status(await _get(api, ivan, "Company", NO_CACHE)) == "BYPASS"

    after = await _stats(api, olga)
    assert after["types"]["Company"]["entries"] == 4
    assert after["types"]["Contact"]["entries"] == 4
    assert after["entries"] == 8
    assert all(t["memory_bytes"] > 0 for t in after["types"].values())
    assert after["memory_bytes"] == sum(t["memory_bytes"] for t in after["types"].values())
    assert after["hits"] - before["hits"] == 8
    assert after["misses"] - before["misses"] == 8
    assert after["bypasses"] - before["bypasses"] == 1
    assert 0 < after["hit_ratio"] < 1
    assert after["since"]
    assert after["truncated"] is False

    for key in (ivan, irma):
        assert (await api.client.get(CACHE, headers=api.auth(key))).status_code == 403
        refused = await api.client.delete(CACHE, headers=api.auth(key))
        assert refused.status_code == 403
    assert (await _stats(api))["entries"] == 8  # the refusals purged nothing

    by_type = await _purge(api, type="Company")
    assert by_type.status_code == 200, by_type.text
    assert by_type.json() == {"deleted": 4, "type": "Company", "user": None}
    assert await _statuses(api, ivan, paths) == ["MISS", "MISS", "HIT", "HIT"]

    by_user = await _purge(api, user=ivan_id)
    assert by_user.json() == {"deleted": 4, "type": None, "user": ivan_id}
    assert await _statuses(api, ivan, paths) == ["MISS"] * 4
    assert await _statuses(api, irma, paths) == ["MISS", "MISS", "HIT", "HIT"]

    both = await _purge(api, type="Contact", user=ivan_id)
    assert both.json()["deleted"] == 2
    assert await _statuses(api, irma, paths) == ["HIT"] * 4

    everything = await _purge(api)
    assert everything.json()["deleted"] == 6
    assert (await _stats(api))["entries"] == 0
    assert await _statuses(api, irma, paths) == ["MISS"] * 4

    for params in ({"type": "Nope"}, {"type": "SyncCursor"}, {"user": 0}, {"user": "x"}):
        bad = await _purge(api, **params)
        assert bad.status_code in {400, 422}, (params, bad.text)
    assert (await _purge(api, type="Nope")).status_code == 422
    assert (await _stats(api))["types"]["Company"]["entries"] == 2


# --- 6. the canonical request shape (property-based) -------------------------------------

_WORDS = st.text(alphabet="abcxyz", min_size=1, max_size=4)
_TEXT_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "contains": "~"}
_NAMES = ["name", "website", "industry", "employees", "registration_no"]


Leaf = tuple[tuple[object, ...], str, dict[str, Any]]
"""One condition: what it means, its text spelling and its JSON spelling."""


@st.composite
def _leaf(draw: st.DrawFn) -> Leaf:
    kind = draw(st.sampled_from(["text", "number", "in", "null"]))
    if kind == "text":
        name = draw(st.sampled_from(["name", "website"]))
        op = draw(st.sampled_from(sorted(_TEXT_OPS)))
        word = draw(_WORDS)
        return ("text", name, op, word), f"{name} {_TEXT_OPS[op]} '{word}'", {name: {op: word}}
    if kind == "number":
        op = draw(st.sampled_from(["eq", "ne", "lt", "gte"]))
        number = draw(st.integers(-1000, 1000))
        text_decimal, json_decimal = draw(st.booleans()), draw(st.booleans())
        return (
            ("number", op, number),
            f"employees {_TEXT_OPS[op]} {number}{'.0' if text_decimal else ''}",
            {"employees": {op: float(number) if json_decimal else number}},
        )
    if kind == "in":
        words = draw(st.lists(_WORDS, min_size=1, max_size=3, unique=True))
        text_order, json_order = draw(st.permutations(words)), draw(st.permutations(words))
        return (
            ("in", frozenset(words)),
            f"industry in ({', '.join(repr(w) for w in text_order)})",
            {"industry": {"in": list(json_order)}},
        )
    null = draw(st.booleans())
    text = f"website is {'' if null else 'not '}null"
    return ("null", null), text, {"website": {"isnull": null}}


Filter = tuple[object, str, dict[str, Any]]
"""What a filter means, its text spelling and its JSON spelling."""


@st.composite
def _filter(draw: st.DrawFn) -> Filter:
    """Distinct conditions joined by and/or, maybe negated; operands in any order."""
    leaves = draw(st.lists(_leaf(), min_size=1, max_size=4, unique_by=lambda leaf: leaf[0]))
    join = draw(st.sampled_from(["and", "or"]))
    negate = draw(st.booleans())
    text_order = draw(st.permutations(leaves))
    json_order = draw(st.permutations(leaves))
    text = f" {join} ".join(f"({leaf[1]})" for leaf in text_order)
    document = json_order[0][2] if len(leaves) == 1 else {join: [leaf[2] for leaf in json_order]}
    if negate:
        text, document = f"not ({text})", {"not": document}
    meaning = (negate, join if len(leaves) > 1 else "", frozenset(leaf[0] for leaf in leaves))
    return meaning, text, document


@st.composite
def _request(draw: st.DrawFn) -> dict[str, Any]:
    """The parts of a list request, each spelled one way."""
    order = draw(st.lists(st.sampled_from(_NAMES), max_size=3, unique=True))
    return {
        "filter": draw(st.none() | _filter()),
        "order": [(name, draw(st.booleans())) for name in order],
        "limit": draw(st.integers(1, 500)),
        "offset": draw(st.integers(0, 50)),
        "fields": draw(st.none() | st.lists(st.sampled_from(_NAMES), min_size=1, unique=True)),
        "hide": draw(st.lists(st.sampled_from(_NAMES), unique=True)),
        "count": draw(st.booleans()),
        "equals": draw(
            st.lists(st.tuples(st.sampled_from(_NAMES), _WORDS), max_size=3, unique=True)
        ),
    }


def _shape_hash(request: dict[str, Any], *, text: bool, draw: st.DrawFn) -> str:
    """Spell `request` as REST (text) or SEARCH (JSON) would, varying what may vary."""
    names = [f"-{n}" if descending else n for n, descending in request["order"]]
    if draw(st.booleans()) and not any(n.lstrip("-") == "id" for n in names):
        names.append("id")  # the implicit tie-break, spelled out
    fields = request["fields"]
    query = list_query(
        filter=None if request["filter"] is None else request["filter"][1 if text else 2],
        order=",".join(names) if text else names,
        limit=str(request["limit"]) if text else request["limit"],
        offset=str(request["offset"]) if text else request["offset"],
        fields=None if fields is None else ",".join(draw(st.permutations(fields))),
        hide=list(draw(st.permutations(request["hide"]))),
        count=("1" if request["count"] else "0") if text else request["count"],
        equals=draw(st.permutations(request["equals"])),
    )
    return request_shape_hash(_list_shape(query))


def _changed(request: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    """The same request with one part meaning something else."""
    part = draw(
        st.sampled_from(["filter", "order", "limit", "offset", "fields", "hide", "count", "equals"])
    )
    value = request[part]
    match part:
        case "filter":
            new = draw(_filter().filter(lambda f: value is None or f[0] != value[0]))
        case "order":
            if value and draw(st.booleans()):
                (name, descending), *rest = value
                new = [(name, not descending), *rest]
            else:
                new = [*value, ("id", True)]  # a descending tie-break is another order
        case "limit" | "offset":
            new = value + 1
        case "fields":
            new = ["id"] if value is None else None if draw(st.booleans()) else [*value, "id"]
        case "hide":
            new = [*value, "id"]
        case "count":
            new = not value
        case _:
            new = (
                [*value, ("employees", "1")]
                if not value
                else [(value[0][0], value[0][1] + "z"), *value[1:]]
            )
    return {**request, part: new}


@hypothesis_settings(max_examples=150, deadline=None)
@given(request=_request(), data=st.data())
def test_equivalent_list_requests_share_a_key_and_different_ones_do_not(
    request: dict[str, Any], data: st.DataObject
) -> None:
    as_text = _shape_hash(request, text=True, draw=data.draw)
    as_json = _shape_hash(request, text=False, draw=data.draw)
    assert as_text == as_json
    assert _shape_hash(request, text=data.draw(st.booleans()), draw=data.draw) == as_text

    changed = _changed(request, data.draw)
    assert _shape_hash(changed, text=data.draw(st.booleans()), draw=data.draw) != as_text
