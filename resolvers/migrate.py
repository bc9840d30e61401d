"""`gateway migrate`: bring the database to the tenant model.

The plan is the difference between the generated schema and the live database
(alembic's comparison, restricted to the gateway's own `c_` and `gw_` tables).
Additive steps (new table, column, index) apply idempotently; destructive steps
(drop, type change) are refused unless explicitly allowed. Everything runs in
one transaction, so a failed step leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Column, Connection, Index, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex

from resolvers.storage import Schema

__all__ = ["MigrationPlan", "Step", "apply_plan", "plan_migration"]

_OWN_PREFIXES = ("c_", "gw_")


@dataclass(frozen=True, slots=True)
class Step:
    """One change of the plan; `destructive` steps lose data or may fail on existing rows."""

    action: str
    target: str
    detail: str = ""
    destructive: bool = False
    payload: Any = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        sign = "-" if self.destructive else "+"
        return f"{sign} {self.action} {self.target}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    steps: tuple[Step, ...]

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def destructive(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.destructive)

    def describe(self) -> str:
        return "\n".join(str(s) for s in self.steps) if self.steps else "nothing to do"


class DestructiveMigrationRefused(Exception):
    """The plan drops or changes existing data and was not allowed to."""

    def __init__(self, plan: MigrationPlan) -> None:
        lines = "\n".join(f"  {s}" for s in plan.destructive)
        super().__init__(
            f"refusing {len(plan.destructive)} destructive step(s); "
            f"rerun with --allow-destructive to apply them:\n{lines}"
        )
        self.plan = plan


async def plan_migration(engine: AsyncEngine, schema: Schema) -> MigrationPlan:
    async with engine.connect() as conn:
        return await conn.run_sync(_plan, schema)


async def apply_plan(
    engine: AsyncEngine,
    schema: Schema,
    *,
    tenant_digest: str,
    allow_destructive: bool = False,
) -> MigrationPlan:
    """Plan and apply in one transaction; return the plan that was applied."""
    async with engine.begin() as conn:
        plan = await conn.run_sync(_plan, schema)
        if plan.destructive and not allow_destructive:
            raise DestructiveMigrationRefused(plan)
        if not plan.empty:
            await conn.run_sync(_apply, schema, plan)
            await conn.execute(
                insert(schema.system.schema_log).values(
                    applied_on=dt.datetime.now(dt.UTC),
                    tenant_digest=tenant_digest,
                    plan=plan.describe(),
                )
            )
    return plan


def _own(name: str | None) -> bool:
    return name is not None and name.startswith(_OWN_PREFIXES)


def _include(obj: Any, name: str | None, kind: str, _reflected: bool, _compare_to: Any) -> bool:
    table = obj if kind == "table" else getattr(obj, "table", None)
    table_name = name if kind == "table" else getattr(table, "name", None)
    return _own(table_name)


def _plan(conn: Connection, schema: Schema) -> MigrationPlan:
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "include_object": _include, "compare_server_default": False},
    )
    diffs = compare_metadata(context, schema.metadata)
    new_tables = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "add_table"}
    gone_tables = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "remove_table"}
    steps = [step for d in diffs for step in _steps(d, new_tables | gone_tables)]
    return MigrationPlan(tuple(steps))


def _steps(diff: Any, whole_tables: set[str]) -> Iterable[Step]:
    """Translate one alembic diff; indexes of tables created or dropped whole go with them."""
    if isinstance(diff, list):  # alembic groups the column modifications of one column
        for change in diff:
            yield from _column_change(change)
        return
    kind = diff[0]
    if kind == "add_table":
        table: Table = diff[1]
        yield Step("create table", table.name)
    elif kind == "remove_table":
        yield Step("drop table", diff[1].name, destructive=True, payload=diff[1].name)
    elif kind == "add_column":
        column: Column[Any] = diff[3]
        yield Step(
            "add column", f"{diff[2]}.{column.name}", str(column.type), payload=(diff[2], column)
        )
    elif kind == "remove_column":
        yield Step(
            "drop column",
            f"{diff[2]}.{diff[3].name}",
            destructive=True,
            payload=(diff[2], diff[3].name),
        )
    elif kind == "add_index":
        index: Index = diff[1]
        if index.table is not None and index.table.name in whole_tables:
            return
        yield Step(
            "create unique index" if index.unique else "create index",
            index.name or "",
            f"on {index.table.name if index.table is not None else '?'}",
            payload=index,
        )
    elif kind == "remove_index":
        if diff[1].table is None or diff[1].table.name not in whole_tables:
            yield Step("drop index", diff[1].name, destructive=True, payload=diff[1])
    elif kind in ("add_fk", "remove_fk"):
        # Foreign keys follow their columns; a changed target is a type change of the model.
        yield Step(
            "change foreign key" if kind == "add_fk" else "drop foreign key",
            f"{diff[1].parent.name}",
            destructive=kind == "remove_fk",
            payload=diff[1],
        )
    else:
        yield Step("unsupported change", str(kind), repr(diff[1:]), destructive=True)


def _column_change(change: Sequence[Any]) -> Iterable[Step]:
    kind, _schema, table, column = change[0], change[1], change[2], change[3]
    if kind == "modify_type":
        old, new = change[5], change[6]
        yield Step(
            "change type",
            f"{table}.{column}",
            f"{old} -> {new}",
            destructive=True,
            payload=(table, column, new),
        )
    elif kind == "modify_nullable":
        info, old, new = change[4], change[5], change[6]
        yield Step(
            "change nullability",
            f"{table}.{column}",
            f"nullable {old} -> {new}",
            destructive=not new,
            payload=(table, column, new, info.get("existing_type")),
        )
    else:
        yield Step("unsupported change", f"{table}.{column}", str(kind), destructive=True)


def _apply(conn: Connection, schema: Schema, plan: MigrationPlan) -> None:
    ops = Operations(MigrationContext.configure(conn))
    sqlite = conn.dialect.name == "sqlite"
    # alembic hands back a bare copy of each new table; create the model's own, with indexes.
    new_tables = [
        schema.metadata.tables[s.target] for s in plan.steps if s.action == "create table"
    ]
    if new_tables:
        # create_all orders them by foreign keys and creates their indexes.
        schema.metadata.create_all(conn, tables=new_tables)
    for step in plan.steps:
        match step.action:
            case "create table":
                pass
            case "add column":
                table_name, column = step.payload
                ops.add_column(table_name, column._copy())
            case "create index" | "create unique index":
                conn.execute(CreateIndex(step.payload))
            case "drop table" | "drop column" | "drop index":
                _drop(ops, step, sqlite=sqlite)
            case "change type":
                table_name, column_name, new_type = step.payload
                _change_type(ops, table_name, column_name, new_type, sqlite=sqlite)
            case "change nullability":
                table_name, column_name, nullable, existing = step.payload
                with ops.batch_alter_table(table_name) as batch:
                    batch.alter_column(column_name, nullable=nullable, existing_type=existing)
            case _:
                raise DestructiveMigrationRefused(MigrationPlan((step,)))


def _drop(ops: Operations, step: Step, *, sqlite: bool) -> None:
    if step.action == "drop table":
        ops.drop_table(step.payload)
    elif step.action == "drop index":
        ops.drop_index(step.payload.name, table_name=step.payload.table.name)
    elif sqlite:  # SQLite drops indexed or constrained columns only by rebuilding the table
        table_name, column_name = step.payload
        with ops.batch_alter_table(table_name) as batch:
            batch.drop_column(column_name)
    else:
        ops.drop_column(*step.payload)


def _change_type(ops: Operations, table: str, column: str, new_type: Any, *, sqlite: bool) -> None:
    if sqlite:
        with ops.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=new_type)
        return
    dialect = ops.get_context().dialect
    quoted = dialect.identifier_preparer.quote(column)
    using = f"{quoted}::{new_type.compile(dialect=dialect)}"
    ops.alter_column(table, column, type_=new_type, postgresql_using=using)
