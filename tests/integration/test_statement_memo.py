"""Compiled read statements kept per principal and request shape (`Services.statements`),
on both backends: what they may never do is answer with another instant's `$now`,
another user's scope, or grow without bound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from resolvers import collections as records
from resolvers.services import Services
from tests.conftest import principal_with_roles

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


async def test_a_statement_that_reads_now_is_compiled_at_each_instant(
    services: Services,
) -> None:
    admin = principal_with_roles(services, 1, "admin")
    for hours in (-1, 1):
        await records.create_record(
            services,
            admin,
            "Activity",
            {"subject": f"at {hours}", "kind": "call", "due_at": T0 + dt.timedelta(hours=hours)},
        )
    query = records.list_query(filter="due_at < $now", order="due_at")
    for now, expected in ((T0, ["at -1"]), (T0 + dt.timedelta(hours=2), ["at -1", "at 1"])):
        at_now = dataclasses.replace(services, clock=lambda now=now: now)
        page = await records.list_records(at_now, admin, "Activity", query)
        assert [r["subject"] for r in page.data] == expected
    # The same query without `$now` is kept, and answers the same from the kept statement.
    kept = records.list_query(filter="due_at < '2026-11-28T12:00:00Z'", order="due_at")
    before = len(services.statements)
    for _ in range(2):
        page = await records.list_records(services, admin, "Activity", kept)
        assert [r["subject"] for r in page.data] == ["at -1"]
    assert len(services.statements) == before + 1


async def test_statements_are_kept_per_principal(services: Services) -> None:
    admin = principal_with_roles(services, 1, "admin")
    owner = principal_with_roles(services, 2, "integration")
    other = principal_with_roles(services, 3, "integration")
    for creator, subject in ((owner, "mine"), (other, "theirs")):
        await records.create_record(
            services, creator, "Activity", {"subject": subject, "kind": "note", "done": True}
        )
    query = records.list_query(order="subject")
    everyone = await records.list_records(services, admin, "Activity", query)
    assert [r["subject"] for r in everyone.data] == ["mine", "theirs"]
    # The integration role reads every Activity but updates only its own: same rows here;
    # a reporter reads only the done ones, and sees `done` false ones nowhere.
    reporter = principal_with_roles(services, 4, "reporter")
    await records.create_record(
        services, owner, "Activity", {"subject": "open", "kind": "note", "done": False}
    )
    seen = await records.list_records(services, reporter, "Activity", query)
    assert [r["subject"] for r in seen.data] == ["mine", "theirs"]
    everything = await records.list_records(services, admin, "Activity", query)
    assert [r["subject"] for r in everything.data] == ["mine", "open", "theirs"]
    # One record by id through each principal's own kept statement.
    first = everything.data[1]["id"]
    assert (await records.get_record(services, admin, "Activity", first))["subject"] == "open"
    try:
        await records.get_record(services, reporter, "Activity", first)
    except records.NotFound:
        pass
    else:
        raise AssertionError("the reporter read an Activity outside its scope")


async def test_the_kept_statements_are_bounded(services: Services) -> None:
    admin = principal_with_roles(services, 1, "admin")
    for limit in range(1, 301):
        query = records.list_query(limit=limit)
        await records.list_records(services, admin, "Company", query)
    assert len(services.statements) <= 256
