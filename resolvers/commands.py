"""Commands: named, typed operations that read and write collections in one transaction.

A command is an `async def` in a Python module, marked with `@command`. Its input and
result are `msgspec.Struct` types (from its annotations): the input is validated at the
edge (422 naming the field and the reason), both are published as JSON Schema. It names
what it needs: system permissions (`"manageUsers"`) or rights on types
(`"Deal.update"`), all of which the caller must hold.

    class CloseDeal(msgspec.Struct, forbid_unknown_fields=True):
        deal: Annotated[int, msgspec.Meta(ge=1)]

    class Closed(msgspec.Struct):
        deal: dict[str, Any]

    @command("deal.close", needs=["Deal.update", "Activity.create"])
    async def close_deal(ctx: CommandContext, data: CloseDeal) -> Closed:
        return Closed(deal=await ctx.update("Deal", data.deal, {"status": "won"}))

The tenant file's `commands = [...]` names the modules; `load_commands(tenant)` imports
them and builds that tenant's `CommandRegistry` (nothing is registered process-wide: the
decorator only marks the function). An unknown module, a module without commands, a
duplicate name or an invalid declaration is a `TenantFileError`, so the gateway refuses
to start.

`run_command` runs one: 404 unknown, 403 without what it needs, 422 bad input, then the
function with a `CommandContext` on ONE database transaction. Everything it reads and
writes goes through `resolvers.collections` with the caller's rights (scopes, hidden and
read-only fields, references) and is attributed to the caller. The command either fully
happens or not at all: any exception rolls every write back. The response cache is
bumped before each write (by `resolvers.collections`, once the write is checked) and
again, here, for every record and type written, after the commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import inspect
import re
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import blobs
from resolvers.errors import (
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    TenantFileError,
)
from resolvers.principal import Principal
from resolvers.tenant import Permission, Tenant

if TYPE_CHECKING:
    # `Services` holds a `CommandRegistry`: this module is imported by it, and reaches
    # `resolvers.collections` (which runs on `Services`) only once a command runs.
    from resolvers.collections import Page
    from resolvers.services import Services

__all__ = [
    "Command",
    "CommandContext",
    "CommandRegistry",
    "Need",
    "TypeRight",
    "command",
    "encode_result",
    "load_commands",
    "result_value",
    "run_command",
]

_MARK = "__jgw_command__"
_NAME = re.compile(r"[a-z][a-zA-Z0-9]*(\.[a-z][a-zA-Z0-9]*)*")
_MAX_NAME = 64
_RIGHTS = ("read", "create", "update", "delete")
_AUDIT_TRANSPORT = "command"

Record = dict[str, Any]
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TypeRight:
    """A right on a type a command needs, written `"Deal.update"`."""

    type_name: str
    right: Literal["read", "create", "update", "delete"]

    def __str__(self) -> str:
        return f"{self.type_name}.{self.right}"


Need = Permission | TypeRight


@dataclass(frozen=True, slots=True)
class _Declaration:
    """What `@command` marks a function with; checked against the tenant at load."""

    name: str
    needs: tuple[str, ...]
    description: str | None


def command(
    name: str,
    *,
    needs: str | Sequence[str],
    description: str | None = None,
) -> Callable[[_F], _F]:
    """Mark an `async def (ctx: CommandContext, data: Input) -> Result` as command `name`.

    `needs` lists system permissions (`"manageUsers"`) and rights on types
    (`"Deal.update"`); the caller must hold all of them. The description defaults to the
    function's docstring. Nothing is registered here: `load_commands` finds marked
    functions in the modules the tenant file names.
    """
    listed = (needs,) if isinstance(needs, str) else tuple(needs)

    def mark(function: _F) -> _F:
        setattr(function, _MARK, _Declaration(name, listed, description))
        return function

    return mark


# --- the registry --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """A loaded, checked command."""

    name: str
    field_name: str
    """The name where dots cannot go (GraphQL's mutation): `deal.close` → `dealClose`."""
    description: str
    needs: tuple[Need, ...]
    input_type: type[msgspec.Struct]
    result_type: type[msgspec.Struct]
    function: Callable[[CommandContext, Any], Awaitable[msgspec.Struct]]
    defined_in: str
    """`module.function`, for messages."""
    input_schema: Mapping[str, Any] = field(repr=False)
    """JSON Schema of the input (msgspec's, self-contained with `$defs`)."""
    result_schema: Mapping[str, Any] = field(repr=False)

    def allows(self, principal: Principal) -> bool:
        return self._missing(principal) is None

    def check(self, principal: Principal) -> None:
        """403 unless the caller holds everything the command needs."""
        missing = self._missing(principal)
        if isinstance(missing, Permission):
            raise Forbidden(f"the command {self.name} needs the {missing.value} permission")
        if isinstance(missing, TypeRight):
            raise Forbidden(
                f"the command {self.name} needs the right to {missing.right} "
                f"{missing.type_name} records"
            )

    def _missing(self, principal: Principal) -> Need | None:
        for need in self.needs:
            if isinstance(need, Permission):
                if not principal.has(need):
                    return need
            elif getattr(principal.on(need.type_name), need.right).none:
                return need
        return None

    def decode(self, payload: object) -> msgspec.Struct:
        """The input, converted strictly (a string is never taken for a number); 422."""
        try:
            return msgspec.convert({} if payload is None else payload, self.input_type, strict=True)
        except msgspec.ValidationError as exc:
            raise Invalid(f"the input of {self.name} is not valid", [_field_error(exc)]) from exc


@dataclass(frozen=True, slots=True)
class CommandRegistry:
    """One tenant's commands by name (built by `load_commands`)."""

    commands: Mapping[str, Command] = field(default_factory=lambda: MappingProxyType({}))

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands.values())

    def __len__(self) -> int:
        return len(self.commands)

    def get(self, name: str) -> Command:
        found = self.commands.get(name)
        if found is None:
            raise NotFound(f"no command named {name[:_MAX_NAME]!r}")
        return found

    def runnable(self, principal: Principal) -> list[Command]:
        """The commands the caller may run, by name."""
        return [c for c in self.commands.values() if c.allows(principal)]


def load_commands(tenant: Tenant) -> CommandRegistry:
    """Import the tenant's command modules and check every declaration against it.

    Raises `TenantFileError` listing every problem (`file:commands[i]: reason`).
    """
    loader = _Loader(tenant)
    for index, module_path in enumerate(tenant.commands):
        loader.module(index, module_path)
    if loader.problems:
        raise TenantFileError(loader.problems)
    ordered = dict(sorted(loader.found.items()))
    return CommandRegistry(MappingProxyType(ordered))


class _Loader:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.problems: list[str] = []
        self.found: dict[str, Command] = {}
        self.fields: dict[str, str] = {}

    def problem(self, index: int, reason: str) -> None:
        self.problems.append(f"{self.tenant.source}:commands[{index}]: {reason}")

    def module(self, index: int, module_path: str) -> None:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_path + ".").startswith(exc.name + "."):
                self.problem(index, f"no module named {module_path!r}")
            else:
                self.problem(index, f"module {module_path!r} fails to import: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any failure of foreign code is reported
            self.problem(
                index, f"module {module_path!r} fails to import: {type(exc).__name__}: {exc}"
            )
            return
        marked = [
            value
            for value in vars(module).values()
            if isinstance(value, types.FunctionType)
            and value.__module__ == module.__name__
            and isinstance(value.__dict__.get(_MARK), _Declaration)
        ]
        if not marked:
            self.problem(index, f"module {module_path!r} defines no @command")
        for function in marked:
            self.declaration(index, function)

    def declaration(self, index: int, function: types.FunctionType) -> None:
        declared: _Declaration = function.__dict__[_MARK]
        where = f"{function.__module__}.{function.__qualname__}"
        errors: list[str] = []
        name = declared.name
        if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
            errors.append(
                f"name {name!r} is not a command name (lowerCamel words joined by dots, "
                f"like 'deal.close', at most {_MAX_NAME} characters)"
            )
            name = ""
        elif name in self.found:
            errors.append(f"{name!r} is also defined by {self.found[name].defined_in}")
        field_name = _field_name(name) if name else ""
        if field_name and field_name in self.fields and self.fields[field_name] != name:
            errors.append(f"{name!r} and {self.fields[field_name]!r} are both {field_name!r}")
        needs = self.needs(declared.needs, errors)
        shapes = _shapes(function, errors)
        if errors:
            for error in errors:
                self.problem(index, f"{where}: {error}")
            return
        assert shapes is not None  # noqa: S101 - no errors means the shapes were read
        input_type, result_type, input_schema, result_schema = shapes
        self.fields[field_name] = name
        self.found[name] = Command(
            name=name,
            field_name=field_name,
            description=declared.description or inspect.getdoc(function) or name,
            needs=needs,
            input_type=input_type,
            result_type=result_type,
            function=function,
            defined_in=where,
            input_schema=input_schema,
            result_schema=result_schema,
        )

    def needs(self, raw: tuple[object, ...], errors: list[str]) -> tuple[Need, ...]:
        found: list[Need] = []
        if not raw:
            errors.append("`needs` is empty: name at least one permission (e.g. 'useApi')")
        for item in raw:
            if not isinstance(item, str):
                errors.append(f"`needs` holds {item!r}, not a string")
                continue
            type_name, dot, right = item.partition(".")
            if not dot:
                try:
                    found.append(Permission(item))
                except ValueError:
                    choices = ", ".join(p.value for p in Permission)
                    errors.append(f"unknown permission {item!r} (one of: {choices})")
                continue
            type_def = self.tenant.types.get(type_name)
            if type_def is None or not type_def.api:
                errors.append(f"{item!r} names no API type of the tenant")
            elif right not in _RIGHTS:
                errors.append(f"{item!r}: the right is one of {', '.join(_RIGHTS)}")
            else:
                found.append(TypeRight(type_name, typing.cast("Any", right)))
        return tuple(found)


_Shapes = tuple[type[msgspec.Struct], type[msgspec.Struct], dict[str, Any], dict[str, Any]]


def _shapes(function: types.FunctionType, errors: list[str]) -> _Shapes | None:
    """The input and result types from the annotations, and their JSON Schemas."""
    if not inspect.iscoroutinefunction(function):
        errors.append("a command is an `async def`")
        return None
    parameters = list(inspect.signature(function).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(parameters) != 2 or any(p.kind not in positional for p in parameters):
        errors.append("a command takes exactly two arguments: (ctx, data)")
        return None
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # noqa: BLE001 - unresolvable annotations are reported
        errors.append(f"its annotations cannot be resolved: {exc}")
        return None
    input_type = hints.get(parameters[1].name)
    result_type = hints.get("return")
    ok = True
    for what, found in (("input", input_type), ("result", result_type)):
        if not (isinstance(found, type) and issubclass(found, msgspec.Struct)):
            errors.append(f"its {what} must be annotated with a msgspec.Struct, not {found!r}")
            ok = False
    if not ok:
        return None
    assert isinstance(input_type, type)  # noqa: S101 - checked just above
    assert isinstance(result_type, type)  # noqa: S101
    schemas = []
    for what, shape in (("input", input_type), ("result", result_type)):
        try:
            schemas.append(msgspec.json.schema(shape))
        except (TypeError, ValueError) as exc:
            errors.append(f"its {what} type has no JSON Schema: {exc}")
    if len(schemas) != 2:
        return None
    return input_type, result_type, schemas[0], schemas[1]


def _field_name(name: str) -> str:
    """`deal.close` → `dealClose`."""
    first, *rest = name.split(".")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


_AT = re.compile(r"\s*-\s*at `\$([^`]*)`$")
_MISSING = re.compile(r"Object missing required field `([^`]{1,100})`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]{1,100})`")


def _field_error(exc: msgspec.ValidationError) -> FieldError:
    """msgspec's message as (field, reason): `Expected int, got str - at $.deal`."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1).lstrip(".") if at else ""
    message = _AT.sub("", text)
    for pattern, reason in ((_MISSING, "is required"), (_UNKNOWN, "unknown field")):
        if named := pattern.search(message):
            path = f"{path}.{named.group(1)}" if path else named.group(1)
            message = reason
    return FieldError(path or "input", message)


# --- running -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Write:
    type_name: str
    record_id: int | None
    affected: tuple[str, ...] = ()


class CommandContext:
    """What a command works with: the caller, and collection access on the command's one
    transaction with the caller's rights (and attributed to the caller).

    Reads see the command's own writes. A write that fails leaves nothing behind (it
    runs in a savepoint), so a command may catch a `Conflict` and go on; any exception
    that leaves the command rolls back everything. Calls are serialised: the transaction
    has one connection. The handle is dead once the command returns.
    """

    def __init__(
        self, services: Services, principal: Principal, conn: AsyncConnection, name: str
    ) -> None:
        self.principal = principal
        """The caller: the user every read and write acts as."""
        self.command = name
        self.now: dt.datetime = services.clock()
        """When the command started (UTC)."""
        self._services = services
        self._conn = conn
        self._lock = asyncio.Lock()
        self._open = True
        self._writes: list[_Write] = []
        self._held: list[str] = []
        """Digests of the files deleted records held: released after the commit."""

    @property
    def tenant(self) -> Tenant:
        return self._services.tenant

    async def get(self, type_name: str, record_id: int, *, lock: bool = False) -> Record:
        """A record as the caller may see it (404 outside its read scope). `lock` keeps
        it from concurrent writers until the command ends (`FOR UPDATE` on PostgreSQL)."""
        from resolvers import collections as records  # noqa: PLC0415 - see TYPE_CHECKING

        async with self._using() as conn:
            found = await records.get_in(
                conn, self._services, self.principal, type_name, record_id, lock=lock
            )
            if self._services.tenant.types[type_name].read_access_logging:
                await self._audit(conn, type_name, record_id)
            return found

    async def list(
        self,
        type_name: str,
        *,
        filter: object = None,
        order: object = None,
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
        fields: object = None,
        count: bool = False,
    ) -> Page:
        """Records in the caller's read scope: `filter` is the text or JSON form of the
        query grammar, the rest as in a SEARCH body."""
        from resolvers import collections as records  # noqa: PLC0415 - see TYPE_CHECKING

        query = records.list_query(
            filter=filter,
            order=order,
            limit=limit,
            offset=offset,
            after=after,
            fields=fields,
            count=count,
            filter_field="filter",
        )
        async with self._using() as conn:
            return await records.list_in(conn, self._services, self.principal, type_name, query)

    async def create(self, type_name: str, data: Mapping[str, Any]) -> Record:
        """Create a record (its fields checked as `POST /collections/{T}` checks them)."""
        from resolvers import collections as records  # noqa: PLC0415 - see TYPE_CHECKING

        async with self._using() as conn:
            record_id = await records.create_in(
                conn, self._services, self.principal, type_name, data
            )
            self._writes.append(_Write(type_name, record_id))
            return await records.readback_in(
                conn, self._services, self.principal, type_name, record_id
            )

    async def update(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Record:
        """Change the fields given (as `PATCH`)."""
        return await self._update(type_name, record_id, data, replace=False)

    async def replace(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Record:
        """Replace every writable field (as `PUT`)."""
        return await self._update(type_name, record_id, data, replace=True)

    async def delete(self, type_name: str, record_id: int) -> None:
        """Delete a record (references to it are cleared or refused, as `DELETE`)."""
        from resolvers import collections as records  # noqa: PLC0415 - see TYPE_CHECKING

        async with self._using() as conn:
            held = await records.delete_in(
                conn, self._services, self.principal, type_name, record_id
            )
            referrers = self._services.tenant.referrers(type_name)
            self._writes.append(_Write(type_name, record_id, referrers))
            self._held += held

    async def _update(
        self, type_name: str, record_id: int, data: Mapping[str, Any], *, replace: bool
    ) -> Record:
        from resolvers import collections as records  # noqa: PLC0415 - see TYPE_CHECKING

        async with self._using() as conn:
            await records.update_in(
                conn, self._services, self.principal, type_name, record_id, data, replace=replace
            )
            self._writes.append(_Write(type_name, record_id))
            return await records.readback_in(
                conn, self._services, self.principal, type_name, record_id
            )

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[AsyncConnection]:
        async with self._lock:
            if not self._open:
                raise RuntimeError(f"the command {self.command} has ended: its handle is closed")
            yield self._conn

    async def _audit(self, conn: AsyncConnection, type_name: str, record_id: int) -> None:
        await conn.execute(
            insert(self._services.schema.system.audit).values(
                occurred_on=self._services.clock(),
                user_id=self.principal.user_id,
                type_name=type_name,
                record_id=record_id,
                action="read",
                transport=_AUDIT_TRANSPORT,
            )
        )

    def _close(self) -> tuple[tuple[_Write, ...], tuple[str, ...]]:
        self._open = False
        return tuple(dict.fromkeys(self._writes)), tuple(self._held)


async def run_command(
    services: Services, principal: Principal, name: str, payload: object
) -> msgspec.Struct:
    """Run command `name` with a decoded JSON `payload` as `principal`, in one
    transaction; its result (a struct of its declared result type)."""
    found = services.commands.get(name)
    found.check(principal)
    data = found.decode(payload)
    writes: tuple[_Write, ...] = ()
    held: tuple[str, ...] = ()
    try:
        async with services.writer.begin() as conn:
            context = CommandContext(services, principal, conn, found.name)
            try:
                result = await found.function(context, data)
                if not isinstance(result, found.result_type):
                    raise TypeError(
                        f"the command {found.name} returned {type(result).__name__}, "
                        f"not {found.result_type.__name__}"
                    )
            finally:
                writes, held = context._close()
    except IntegrityError as exc:
        # A constraint checked at commit (a deferred foreign key): nothing was written.
        raise Conflict(f"the command {found.name} conflicts with existing data") from exc
    for write in writes:
        await services.cache.written(write.type_name, write.record_id, affected=write.affected)
    if held:
        await blobs.release(services, held)  # unless another record holds them too
    return result


def encode_result(result: msgspec.Struct) -> bytes:
    """The result as JSON."""
    return msgspec.json.encode(result)


def result_value(result: msgspec.Struct) -> Any:
    """The result as JSON values (dicts, lists, strings, numbers), as `encode_result`
    writes them."""
    return msgspec.to_builtins(result)
