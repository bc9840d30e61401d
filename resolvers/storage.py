"""Storage: real tables generated from the tenant model, plus the system tables.

Each type is a table `c_<snake name>` with one real column per single-valued
property and the system fields; a multi-valued property is a child table
`<table>__<property>` (`record_id`, `position`, `value`), a multi-valued reference
a link table of the same shape whose `value` points at the target. The column
types keep behaviour identical on SQLite and PostgreSQL: instants are UTC on
both, decimals are exact on both (a scaled integer on SQLite).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeEngine

from resolvers.tenant import Kind, Property, Tenant, TypeDef, identifier

__all__ = [
    "MAX_ID",
    "ExactDecimal",
    "Month",
    "Schema",
    "SystemTables",
    "UTCDateTime",
    "build_schema",
    "create_engine",
    "writer",
]

MAX_ID = 2**63 - 1
"""Ids are signed 64-bit integers on both backends; larger ones can name no row."""

# SQLite's rowid alias needs INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant: aware datetimes in, aware UTC datetimes out, UTC at rest on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached storage; resolve it in a zone first")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(p, s) on PostgreSQL; on SQLite an integer of units of 10^-s, so still exact."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return int(value.scaleb(self.scale).to_integral_value())
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value).quantize(Decimal(1).scaleb(-self.scale))


class Month(TypeDecorator[dt.date]):
    """A calendar month, stored as the date of its first day so it orders and indexes."""

    impl = Date
    cache_ok = True

    def process_bind_param(self, value: dt.date | None, dialect: Dialect) -> dt.date | None:
        return None if value is None else value.replace(day=1)


def _column_type(prop: Property) -> TypeEngine[Any]:
    match prop.kind:
        case Kind.STRING | Kind.EMAIL | Kind.PHONE:
            return String(prop.max_length)
        case Kind.ENUM:
            return String(max(len(v) for v in prop.values))
        case Kind.TEXT:
            return Text()
        case Kind.INTEGER:
            return BigInteger()
        case Kind.DECIMAL:
            return ExactDecimal(prop.precision, prop.scale)
        case Kind.BOOLEAN:
            return Boolean(create_constraint=False)
        case Kind.DATETIME:
            return UTCDateTime()
        case Kind.DATE:
            return Date()
        case Kind.MONTH:
            return Month()
        case Kind.FILE:
            return Json
        case Kind.REFERENCE:
            return BigInteger()
    raise AssertionError(prop.kind)  # pragma: no cover - the match is exhaustive


@dataclass(frozen=True, slots=True)
class SystemTables:
    """Tables the gateway itself owns; names start with `gw_`."""

    users: Table
    user_roles: Table
    user_groups: Table
    api_keys: Table
    login_failures: Table
    challenges: Table
    challenge_secrets: Table
    audit: Table
    outbox: Table
    schema_log: Table


@dataclass(frozen=True, slots=True)
class Schema:
    """The whole database model of one tenant: its `metadata` and named tables."""

    metadata: MetaData
    system: SystemTables
    records: dict[str, Table]
    """Type name → the type's table."""
    children: dict[tuple[str, str], Table]
    """(type name, property name) → the child or link table of a multi-valued property."""


def build_schema(tenant: Tenant) -> Schema:
    metadata = MetaData()
    system = _system_tables(metadata)
    records: dict[str, Table] = {}
    children: dict[tuple[str, str], Table] = {}
    order = _creation_order(tenant)
    for position, type_def in enumerate(order):
        earlier = {t.name for t in order[:position]}
        records[type_def.name] = _record_table(metadata, tenant, type_def, earlier)
    for type_def in order:
        for prop in type_def.properties.values():
            if prop.multiple:
                children[type_def.name, prop.name] = _child_table(metadata, tenant, type_def, prop)
    return Schema(metadata=metadata, system=system, records=records, children=children)


def _creation_order(tenant: Tenant) -> list[TypeDef]:
    """Types ordered so references point backwards where possible (cycles are deferred)."""
    done: list[TypeDef] = []
    visiting: set[str] = set()

    def visit(type_def: TypeDef) -> None:
        if type_def in done or type_def.name in visiting:
            return
        visiting.add(type_def.name)
        for prop in type_def.properties.values():
            if prop.kind is Kind.REFERENCE and not prop.multiple and prop.to != type_def.name:
                visit(tenant.types[str(prop.to)])
        visiting.discard(type_def.name)
        done.append(type_def)

    for type_def in tenant.types.values():
        visit(type_def)
    return done


def _record_table(
    metadata: MetaData, tenant: Tenant, type_def: TypeDef, earlier: set[str]
) -> Table:
    table = type_def.table
    columns: list[Column[Any]] = [
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("created_on", UTCDateTime(), nullable=False),
        Column("updated_on", UTCDateTime(), nullable=False),
        Column("created_by", BigInteger(), nullable=True),
        Column("updated_by", BigInteger(), nullable=True),
    ]
    indexes = [Index(identifier("ix", table, "created_by"), "created_by")]
    for prop in type_def.properties.values():
        if prop.multiple:
            continue
        args: list[Any] = []
        if prop.kind is Kind.REFERENCE:
            target = tenant.types[str(prop.to)]
            # A reference to a type created later (a cycle) is added by ALTER after both exist.
            defer = target.name not in earlier and target.name != type_def.name
            args.append(
                ForeignKey(
                    f"{target.table}.id",
                    name=identifier("fk", table, prop.name),
                    # A required reference keeps its target alive (deleting it is a 409);
                    # an optional one is cleared with it.
                    ondelete="RESTRICT" if prop.required else "SET NULL",
                    use_alter=defer,
                )
            )
        columns.append(Column(prop.name, _column_type(prop), *args, nullable=True))
        if prop.unique:
            indexes.append(Index(identifier("uq", table, prop.name), prop.name, unique=True))
        elif prop.indexed or prop.kind is Kind.REFERENCE:
            indexes.append(Index(identifier("ix", table, prop.name), prop.name))
    return Table(table, metadata, *columns, *indexes)


def _child_table(metadata: MetaData, tenant: Tenant, type_def: TypeDef, prop: Property) -> Table:
    name = type_def.child_table(prop)
    if prop.kind is Kind.REFERENCE:
        target = tenant.types[str(prop.to)]
        value = Column(
            "value",
            BigInteger(),
            ForeignKey(
                f"{target.table}.id", name=identifier("fk", name, "value"), ondelete="CASCADE"
            ),
            nullable=False,
        )
    else:
        value = Column("value", _column_type(prop), nullable=False)
    return Table(
        name,
        metadata,
        Column(
            "record_id",
            BigInteger(),
            ForeignKey(
                f"{type_def.table}.id", name=identifier("fk", name, "record"), ondelete="CASCADE"
            ),
            primary_key=True,
        ),
        Column("position", Integer(), primary_key=True, autoincrement=False),
        value,
        Index(identifier("ix", name, "value"), "value"),
    )


def _system_tables(metadata: MetaData) -> SystemTables:
    def stamps() -> list[Column[Any]]:
        return [
            Column("created_on", UTCDateTime(), nullable=False),
            Column("updated_on", UTCDateTime(), nullable=False),
        ]

    users = Table(
        "gw_users",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("login", String(150), nullable=False),
        Column("email", String(254)),
        Column("phone", String(32)),
        Column("password_hash", String(255)),
        Column("timezone", String(64)),
        Column("valid_from", UTCDateTime()),
        Column("valid_to", UTCDateTime()),
        Column("active", Boolean(create_constraint=False), nullable=False),
        Column("security_version", Integer(), nullable=False),
        *stamps(),
        Index("uq_gw_users_login", "login", unique=True),
        Index("ix_gw_users_email", "email"),
    )
    user_fk = ForeignKey("gw_users.id", ondelete="CASCADE")
    user_roles = Table(
        "gw_user_roles",
        metadata,
        Column("user_id", BigInteger(), user_fk, primary_key=True),
        Column("role", String(63), primary_key=True),
    )
    user_groups = Table(
        "gw_user_groups",
        metadata,
        Column(
            "user_id", BigInteger(), ForeignKey("gw_users.id", ondelete="CASCADE"), primary_key=True
        ),
        Column("group_name", String(100), primary_key=True),
    )
    api_keys = Table(
        "gw_api_keys",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("public_id", String(32), nullable=False),
        Column("digest", LargeBinary(32), nullable=False),
        Column("name", String(100), nullable=False),
        Column(
            "user_id", BigInteger(), ForeignKey("gw_users.id", ondelete="CASCADE"), nullable=False
        ),
        Column("created_on", UTCDateTime(), nullable=False),
        Column("created_by", BigInteger()),
        Column("last_used_on", UTCDateTime()),
        Column("expires_at", UTCDateTime()),
        Column("revoked_on", UTCDateTime()),
        Index("uq_gw_api_keys_public_id", "public_id", unique=True),
        Index("ix_gw_api_keys_user_id", "user_id"),
    )
    login_failures = Table(
        "gw_login_failures",
        metadata,
        Column("subject", String(200), primary_key=True),
        Column("window_end", UTCDateTime(), nullable=False),
        Column("failures", Integer(), nullable=False),
        Column("locked_until", UTCDateTime()),
    )
    challenges = Table(
        "gw_challenges",
        metadata,
        Column("id", String(32), primary_key=True),
        Column(
            "user_id", BigInteger(), ForeignKey("gw_users.id", ondelete="CASCADE"), nullable=False
        ),
        Column("purpose", String(20), nullable=False),
        Column("methods", Json, nullable=False),
        Column("link_url", String(2000)),
        Column("retries", Integer(), nullable=False),
        Column("last_sent_on", UTCDateTime()),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("completed_on", UTCDateTime()),
        *stamps(),
        Index("ix_gw_challenges_user_id", "user_id"),
    )
    challenge_secrets = Table(
        "gw_challenge_secrets",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column(
            "challenge_id",
            String(32),
            ForeignKey("gw_challenges.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("method", String(20), nullable=False),
        Column("lookup", String(64)),
        Column("digest", LargeBinary(32), nullable=False),
        Column("salt", LargeBinary(16), nullable=False),
        Column("attempts", Integer(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("used_on", UTCDateTime()),
        Column("superseded_on", UTCDateTime()),
        Index("ix_gw_challenge_secrets_challenge_id", "challenge_id"),
        Index("ix_gw_challenge_secrets_lookup", "lookup"),
    )
    audit = Table(
        "gw_audit",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("occurred_on", UTCDateTime(), nullable=False),
        Column("user_id", BigInteger()),
        Column("type_name", String(63), nullable=False),
        Column("record_id", BigInteger()),
        Column("action", String(20), nullable=False),
        Column("transport", String(10), nullable=False),
        Index("ix_gw_audit_occurred_on", "occurred_on"),
        Index("ix_gw_audit_type_record", "type_name", "record_id"),
    )
    outbox = Table(
        "gw_outbox",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("created_on", UTCDateTime(), nullable=False),
        Column("channel", String(10), nullable=False),
        Column("recipient", String(254), nullable=False),
        Column("subject", String(200)),
        Column("body", Text(), nullable=False),
    )
    schema_log = Table(
        "gw_schema",
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("applied_on", UTCDateTime(), nullable=False),
        Column("tenant_digest", String(64), nullable=False),
        Column("plan", Text(), nullable=False),
    )
    return SystemTables(
        users=users,
        user_roles=user_roles,
        user_groups=user_groups,
        api_keys=api_keys,
        login_failures=login_failures,
        challenges=challenges,
        challenge_secrets=challenge_secrets,
        audit=audit,
        outbox=outbox,
        schema_log=schema_log,
    )


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    pool_timeout: float = 5.0,
    statement_timeout: float = 0.0,
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    On PostgreSQL `pool_timeout` bounds both waiting for a pooled connection and opening
    one, and `statement_timeout` (seconds, 0: none) is set on every session, so a request
    caught by a database outage fails fast (see `resolvers.outages`). No pre-ping: it costs
    a round trip per checkout; a connection found dead invalidates the whole pool instead.
    """
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {"timeout": pool_timeout}
    if statement_timeout > 0:
        milliseconds = str(max(1, round(statement_timeout * 1000)))
        connect_args["server_settings"] = {"statement_timeout": milliseconds}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=False,
        connect_args=connect_args,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # DDL is transactional too (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take SQLite's write lock up front: a deferred transaction that reads and then
    # writes fails at once (SQLITE_BUSY) when another writer committed in between.
    immediate = conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: AsyncEngine, *, pool_timeout: float = 5.0) -> AsyncEngine:
    """The engine for transactions that write: `engine` itself on PostgreSQL; on SQLite,
    where one transaction at a time writes, an engine with one connection of its own,
    whose transactions take the write lock up front (`BEGIN IMMEDIATE`).

    With one connection, this process's writers queue for it in order (waiting at most
    `pool_timeout`, then `resolvers.outages` answers 503) instead of each polling SQLite's
    lock from a connection of the shared pool: SQLite's busy handler sleeps up to 100 ms
    between tries, which made a write's p99 over a second under concurrent writes, and
    the waiting writers held the connections readers needed. Other processes on the file
    still meet the busy timeout. When it is not `engine`, dispose of it too.
    """
    if engine.dialect.name != "sqlite":
        return engine
    if engine.url.database in {None, "", ":memory:"} or engine.url.query.get("mode") == "memory":
        return engine.execution_options(sqlite_begin="IMMEDIATE")  # one database per engine
    own = create_async_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=pool_timeout)
    event.listen(own.sync_engine, "connect", _sqlite_pragmas)
    event.listen(own.sync_engine, "begin", _sqlite_begin)
    return own.execution_options(sqlite_begin="IMMEDIATE")
