"""When the collection writes bump the response cache (DESIGN §7), on both backends.

A write bumps the generations it touches before it happens and again after its commit;
a write that is refused (unknown type, no right, an id no row can have, an invalid
body) is refused before anything is bumped, whether it runs on its own
(`create_record`, ...) or on a command's transaction (`create_in`, ...), whose bump
after the commit is the command's. The generations are read straight from Valkey.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import valkey.asyncio

from resolvers import collections as records
from resolvers.errors import Conflict, Forbidden, GatewayError, Invalid, NotFound
from resolvers.principal import Principal
from resolvers.services import Services
from tests.conftest import principal_with_roles

Generations = dict[str, int]


@pytest.fixture
async def generations(
    services: Services, cache_url: str
) -> AsyncIterator[Callable[[], Awaitable[Generations]]]:
    """Reads the generations of Company, of its record 1, and of the types referring to it."""
    client = valkey.asyncio.Valkey.from_url(cache_url)
    cache = services.cache
    keys = {"Company": cache.generation("Company"), "Company 1": cache.generation("Company", 1)}
    for other in services.tenant.referrers("Company"):
        keys[other] = cache.generation(other)
        keys[f"{other} rows"] = cache.generation(other, "rows")

    async def read() -> Generations:
        found = await client.mget(list(keys.values()))
        return {name: int(value or 0) for name, value in zip(keys, found, strict=True)}

    yield read
    await client.aclose()


async def _company(services: Services, admin: Principal, **fields: Any) -> int:
    record = await records.create_record(services, admin, "Company", {"name": "Acme", **fields})
    record_id: int = record["id"]
    return record_id


def _refused_writes(
    services: Services, admin: Principal, company: int
) -> list[tuple[str, type[GatewayError], Callable[..., Awaitable[object]]]]:
    """(what, the error, a write taking `single` and maybe a connection) for each refusal."""
    reporter = principal_with_roles(services, 2, "reporter")  # reads Company, writes nothing
    integration = principal_with_roles(
        services, 3, "integration"
    )  # creates and updates, never deletes
    cases: list[tuple[str, type[GatewayError], Principal, str, Any]] = [
        ("create an unknown type", NotFound, admin, "create", ("Nope", {"name": "x"})),
        ("create without the right", Forbidden, reporter, "create", ("Company", {"name": "x"})),
        ("create an unknown field", Invalid, admin, "create", ("Company", {"colour": "red"})),
        ("create without a required field", Invalid, admin, "create", ("Company", {})),
        ("create a system field", Invalid, admin, "create", ("Company", {"id": 5, "name": "x"})),
        ("update without the right", Forbidden, reporter, "update", (company, {"name": "x"})),
        ("update id 0", NotFound, admin, "update", (0, {"name": "x"})),
        ("update an id past int8", NotFound, admin, "update", (2**63, {"name": "x"})),
        ("update a bad value", Invalid, admin, "update", (company, {"employees": "many"})),
        ("update an internal field", Invalid, admin, "update", (company, {"internal_rating": 1})),
        ("replace without a required field", Invalid, admin, "replace", (company, {})),
        ("delete without the right", Forbidden, integration, "delete", (company,)),
        ("delete id 0", NotFound, admin, "delete", (0,)),
    ]

    def write(principal: Principal, kind: str, args: Any) -> Callable[..., Awaitable[object]]:
        async def run(conn: Any = None) -> object:
            if kind == "create" and conn is None:
                return await records.create_record(services, principal, *args)
            if kind == "create":
                return await records.create_in(conn, services, principal, *args)
            if kind == "delete" and conn is None:
                return await records.delete_record(services, principal, "Company", *args)
            if kind == "delete":
                return await records.delete_in(conn, services, principal, "Company", *args)
            replace = kind == "replace"
            if conn is None:
                return await records.update_record(
                    services, principal, "Company", *args, replace=replace
                )
            return await records.update_in(
                conn, services, principal, "Company", *args, replace=replace
            )

        return run

    return [(what, error, write(who, kind, args)) for what, error, who, kind, args in cases]


async def test_a_refused_write_bumps_nothing(
    services: Services, generations: Callable[[], Awaitable[Generations]]
) -> None:
    admin = principal_with_roles(services, 1, "admin")
    company = await _company(services, admin)
    assert company == 1
    before = await generations()
    for what, error, write in _refused_writes(services, admin, company):
        with pytest.raises(error):
            await write()
        assert await generations() == before, what
        async with services.writer.begin() as conn:  # as a command runs them
            with pytest.raises(error):
                await write(conn)
        assert await generations() == before, f"{what}, on a caller's transaction"
    assert (await records.get_record(services, admin, "Company", company))["name"] == "Acme"


async def test_a_write_bumps_before_and_after_its_commit(
    services: Services, generations: Callable[[], Awaitable[Generations]]
) -> None:
    admin = principal_with_roles(services, 1, "admin")
    referrers = services.tenant.referrers("Company")
    assert referrers  # a delete changes the records referring to it

    def bumped(start: Generations, **by: int) -> Generations:
        return {name: value + by.get(name.replace(" ", "_"), 0) for name, value in start.items()}

    start = await generations()
    company = await _company(services, admin, registration_no="R1")
    assert await generations() == bumped(start, Company=2, Company_1=1)  # new: no id before

    start = await generations()
    await records.update_record(services, admin, "Company", company, {"employees": 5})
    assert await generations() == bumped(start, Company=2, Company_1=2)

    # A write the database refuses was bumped before it was tried, and only then.
    await _company(services, admin, registration_no="R2")
    start = await generations()
    with pytest.raises(Conflict):
        await records.update_record(services, admin, "Company", company, {"registration_no": "R2"})
    assert await generations() == bumped(start, Company=1, Company_1=1)

    # On a caller's transaction, the bump after the commit is the caller's.
    start = await generations()
    async with services.writer.begin() as conn:
        await records.update_in(conn, services, admin, "Company", company, {"employees": 6})
        with pytest.raises(Conflict):
            await records.update_in(
                conn, services, admin, "Company", company, {"registration_no": "R2"}
            )
    assert await generations() == bumped(start, Company=2, Company_1=2)

    start = await generations()
    await records.delete_record(services, admin, "Company", company)
    by_referrer = {f"{name}{rows}": 2 for name in referrers for rows in ("", "_rows")}
    assert await generations() == bumped(start, Company=2, Company_1=2, **by_referrer)
