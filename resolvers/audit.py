"""The read-access audit: who read which record of an audited type, when, through what.

Types with `read_access_logging = true` are never served from the response cache one
record at a time: every such read reaches the database and leaves a row here before
its answer is sent. Lists are cached like any other (DESIGN §7 audits single-resource
reads). Reading the audit needs `manageUsers`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select

from resolvers.errors import FieldError, Invalid
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.tenant import Permission

__all__ = ["AuditEntry", "AuditPage", "list_audit", "record_read"]

MAX_LIMIT = 1000
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    occurred_on: dt.datetime
    user_id: int | None
    type_name: str
    record_id: int | None
    action: str
    transport: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    data: list[AuditEntry]
    next: int | None
    """Pass as `before` for older rows; None on the last page."""


async def record_read(
    services: Services, principal: Principal, type_name: str, record_id: int, transport: str
) -> None:
    """Write one audit row for a read that is about to be answered."""
    audit = services.schema.system.audit
    async with services.writer.begin() as conn:
        await conn.execute(
            insert(audit).values(
                occurred_on=services.clock(),
                user_id=principal.user_id,
                type_name=type_name,
                record_id=record_id,
                action="read",
                transport=transport,
            )
        )


async def list_audit(
    services: Services,
    principal: Principal,
    *,
    user_id: int | None = None,
    type_name: str | None = None,
    record_id: int | None = None,
    before: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Audit rows, newest first, optionally for one user, type or record."""
    principal.require(Permission.MANAGE_USERS)
    errors = []
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(FieldError("limit", f"a whole number from 1 to {MAX_LIMIT}"))
    for name, value in (("user", user_id), ("record", record_id), ("before", before)):
        if value is not None and not 1 <= value <= _MAX_ID:
            errors.append(FieldError(name, "a positive id"))
    if type_name is not None and type_name not in services.tenant.types:
        errors.append(FieldError("type", f"no type named {type_name!r}"))
    if errors:
        raise Invalid("the audit query is not valid", errors)
    audit = services.schema.system.audit
    conditions = [
        column == value
        for column, value in (
            (audit.c.user_id, user_id),
            (audit.c.type_name, type_name),
            (audit.c.record_id, record_id),
        )
        if value is not None
    ]
    if before is not None:
        conditions.append(audit.c.id < before)
    query = select(audit).where(*conditions).order_by(audit.c.id.desc()).limit(limit + 1)
    async with services.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    entries = [
        AuditEntry(
            id=row.id,
            occurred_on=row.occurred_on,
            user_id=row.user_id,
            type_name=row.type_name,
            record_id=row.record_id,
            action=row.action,
            transport=row.transport,
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return AuditPage(data=entries, next=entries[-1].id if more else None)
