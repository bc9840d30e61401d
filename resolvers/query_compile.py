"""Compile a parsed filter tree into a SQLAlchemy expression over a type's table.

Never SQL from strings: every literal is typed by its property's kind (`values`) and
bound as a parameter. Comparisons use two-valued logic — a comparison with a NULL
column is false, never unknown — so `not` always means "the rest": `not (a = 1)`
matches rows whose `a` is NULL. Multi-valued properties match when ANY element
matches (`ne` means no element equals); paths through references become EXISTS
subqueries that also apply the caller's read scope on the referenced type, so a
filter never reveals records the caller cannot read (`ne` and `is null` through a
path are the negations of `eq` and `is not null`, so `not` still means the rest).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, exists, false, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnClause

from resolvers import query_grammar as q
from resolvers import values
from resolvers.errors import FieldError, Invalid
from resolvers.principal import Principal, Scope, system_principal
from resolvers.storage import Schema
from resolvers.tenant import Kind, Property, Tenant, TypeDef

__all__ = ["Compiler", "ScopeError", "check_scopes", "scope_tree"]

_TEXTUAL = frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.PHONE, Kind.ENUM})
_UNORDERED = frozenset({Kind.BOOLEAN, Kind.FILE, Kind.REFERENCE})
_USER_FIELDS = frozenset({"created_by", "updated_by"})
_INT64_MAX = 2**63 - 1


class ScopeError(Exception):
    """A role's row scope in the tenant file does not compile (a tenant-file defect)."""


@dataclass
class Compiler:
    """Compiles filters for one principal at one instant (`now` is `$now`)."""

    tenant: Tenant
    schema: Schema
    principal: Principal
    now: dt.datetime
    field_name: str = "_filter"
    """How the request names its filter, for error messages."""
    used_now: bool = False
    """Whether something compiled so far read `$now` (then it holds for this instant only)."""

    # --- public ---------------------------------------------------------------------

    def filter(self, type_def: TypeDef, node: q.Node) -> ColumnElement[bool]:
        """A client's filter: hidden fields and unreadable references are refused."""
        return self._node(type_def, self.schema.records[type_def.name], node, client=True)

    def scope(self, type_def: TypeDef, scope: Scope, table: Any = None) -> ColumnElement[bool]:
        """A row scope from the caller's roles (`all`, `own`, filter expressions).

        `table` is the type's table or an alias of it (inside a reference subquery).
        """
        table = self.schema.records[type_def.name] if table is None else table
        if scope.all:
            return true()
        parts: list[ColumnElement[bool]] = []
        if scope.own:
            parts.append(table.c.created_by == self.principal.user_id)
        for expression in scope.filters:
            try:
                tree = scope_tree(expression)
            except Invalid as exc:
                raise ScopeError(f"{type_def.name}: {expression!r}: {exc.detail}") from exc
            parts.append(self._node(type_def, table, tree, client=False))
        return or_(*parts) if parts else false()

    def read_scope(self, type_def: TypeDef) -> ColumnElement[bool]:
        return self.scope(type_def, self.principal.on(type_def.name).read)

    # --- nodes ----------------------------------------------------------------------

    def _node(
        self, type_def: TypeDef, table: FromClause, node: q.Node, *, client: bool
    ) -> ColumnElement[bool]:
        """`table` is the type's table, or an alias of it inside a reference subquery."""
        match node:
            case q.And(items=items):
                return and_(*(self._node(type_def, table, n, client=client) for n in items))
            case q.Or(items=items):
                return or_(*(self._node(type_def, table, n, client=client) for n in items))
            case q.Not(item=item):
                return not_(self._node(type_def, table, item, client=client))
            case q.Compare(path=path) | q.In(path=path) | q.IsNull(path=path):
                return self._leaf(type_def, table, path.parts, node, client=client)
        raise AssertionError(node)  # pragma: no cover - Node is a closed union

    def _leaf(
        self,
        type_def: TypeDef,
        table: FromClause,
        parts: tuple[str, ...],
        node: q.Compare | q.In | q.IsNull,
        *,
        client: bool,
    ) -> ColumnElement[bool]:
        name, rest = parts[0], parts[1:]
        prop = self._property(type_def, name, node.path, client=client)
        if rest:
            return self._through(type_def, table, prop, rest, node, client=client)
        if prop.multiple:
            child = self.schema.children[type_def.name, prop.name]
            return self._any(child, table, prop, node)
        return self._compare(table.c[prop.name], prop, node)

    def _property(self, type_def: TypeDef, name: str, path: q.Path, *, client: bool) -> Property:
        """A field the filter may name: clients see neither internal nor hidden ones."""
        prop = values.field(type_def, name, internal=not client)
        if prop is None or (client and name in self.principal.on(type_def.name).hidden):
            raise self._invalid(path.at, f"{type_def.name} has no field {name!r}")
        return prop

    def equals(self, type_def: TypeDef, name: str, text: str) -> ColumnElement[bool]:
        """A plain `?prop=value` parameter: equality, the value read from URL text."""
        path = q.Path((name,), at=name)
        prop = self._property(type_def, name, path, client=True)
        if prop.kind is Kind.FILE:
            raise self._invalid(name, "files can only be tested with `is null`")
        try:
            literal = values.coerce_text(prop, text, self.principal.zone)
        except ValueError as exc:
            raise self._invalid(name, f"{name}: {exc}") from exc
        table = self.schema.records[type_def.name]
        if prop.multiple:
            child = self.schema.children[type_def.name, prop.name].alias()
            return exists(
                select(1).where(child.c.record_id == table.c.id, child.c.value == literal)
            )
        return and_(table.c[prop.name].is_not(None), table.c[prop.name] == literal)

    def _through(
        self,
        type_def: TypeDef,
        table: FromClause,
        prop: Property,
        rest: tuple[str, ...],
        node: q.Compare | q.In | q.IsNull,
        *,
        client: bool,
    ) -> ColumnElement[bool]:
        """`ref.field...`: EXISTS a readable referenced record whose rest of the path matches."""
        # `created_by`/`updated_by` point at the gateway's users, not at a tenant type.
        target = self.tenant.types.get(prop.to or "") if prop.kind is Kind.REFERENCE else None
        if target is None:
            raise self._invalid(node.path.at, f"{prop.name!r} is not a reference to follow")
        negated = _negated(node)
        if negated is not None:
            # Two-valued, like multi-valued scalars: `a.b != v` is `not a.b = v`, and
            # `a.b is null` holds when no (readable) referenced record has a value.
            return not_(self._through(type_def, table, prop, rest, negated, client=client))
        if client and (not target.api or self.principal.on(target.name).read.none):
            raise self._invalid(node.path.at, f"{prop.name!r} leads to a type you cannot read")
        target_table = self.schema.records[target.name].alias()
        inner = self._leaf(target, target_table, rest, node, client=client)
        if client:
            read = self.principal.on(target.name).read
            inner = and_(inner, self.scope(target, read, target_table))
        if prop.multiple:
            link = self.schema.children[type_def.name, prop.name].alias()
            return exists(
                select(1)
                .select_from(link.join(target_table, target_table.c.id == link.c.value))
                .where(link.c.record_id == table.c.id, inner)
            )
        return exists(select(1).where(target_table.c.id == table.c[prop.name], inner))

    def _any(
        self,
        child: FromClause,
        table: FromClause,
        prop: Property,
        node: q.Compare | q.In | q.IsNull,
    ) -> ColumnElement[bool]:
        """A multi-valued property matches when any of its elements does."""
        alias = child.alias()
        owned = alias.c.record_id == table.c.id
        if isinstance(node, q.IsNull):
            found = exists(select(1).where(owned))
            return not_(found) if node.null else found
        if isinstance(node, q.Compare) and node.op == "ne":
            equal = q.Compare(path=node.path, op="eq", value=node.value)
            return not_(exists(select(1).where(owned, self._compare(alias.c.value, prop, equal))))
        return exists(select(1).where(owned, self._compare(alias.c.value, prop, node)))

    # --- comparisons ----------------------------------------------------------------

    def _compare(
        self, column: ColumnClause[Any] | Any, prop: Property, node: q.Compare | q.In | q.IsNull
    ) -> ColumnElement[bool]:
        if isinstance(node, q.IsNull):
            return column.is_(None) if node.null else column.is_not(None)
        if isinstance(node, q.In):
            literals = [self._literal(prop, v) for v in node.values]
            return and_(column.is_not(None), column.in_(literals))
        op = node.op
        if op in ("contains", "startswith"):
            if prop.kind not in _TEXTUAL:
                raise self._invalid(node.path.at, f"{op} applies to text, not to {prop.kind.value}")
            if node.value.kind != "text" or not isinstance(node.value.raw, str):
                raise self._invalid(node.value.at, f"{op} takes a quoted text")
            pattern = _escape_like(node.value.raw)
            pattern = f"%{pattern}%" if op == "contains" else f"{pattern}%"
            return and_(column.is_not(None), column.ilike(pattern, escape="\\"))
        if op in ("lt", "lte", "gt", "gte") and prop.kind in _UNORDERED:
            raise self._invalid(node.path.at, f"{prop.kind.value} values cannot be ordered")
        literal = self._literal(prop, node.value)
        if op == "ne":
            return or_(column.is_(None), column != literal)
        return and_(column.is_not(None), _OPERATORS[op](column, literal))

    def _literal(self, prop: Property, value: q.Value) -> object:
        """Type one literal by the property's kind; `$me` and `$now` resolve here."""
        if value.kind in ("me", "now"):
            return self._variable(prop, value)
        if prop.kind is Kind.FILE:
            raise self._invalid(value.at, "files can only be tested with `is null`")
        raw = self._raw(prop, value)
        if prop.name in _USER_FIELDS or prop.name == "id":
            if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= _INT64_MAX:
                return raw
            raise self._invalid(value.at, f"{prop.name} takes a positive whole number")
        try:
            return values.coerce_literal(prop, raw, self.principal.zone)
        except ValueError as exc:
            raise self._invalid(value.at, f"{prop.name}: {exc}") from exc

    def _variable(self, prop: Property, value: q.Value) -> object:
        if value.kind == "me":
            if prop.name not in _USER_FIELDS:
                raise self._invalid(value.at, "$me compares with created_by or updated_by")
            return self.principal.user_id
        self.used_now = True
        if prop.kind is Kind.DATETIME:
            return self.now
        if prop.kind in (Kind.DATE, Kind.MONTH):
            today = self.now.astimezone(self.principal.zone).date()
            return today.replace(day=1) if prop.kind is Kind.MONTH else today
        raise self._invalid(value.at, "$now compares with datetime, date or month fields")

    def _raw(self, prop: Property, value: q.Value) -> object:
        """The literal's raw value, refused when its spelling cannot be of the kind."""
        numeric = prop.kind in (Kind.INTEGER, Kind.DECIMAL, Kind.REFERENCE)
        if value.kind == "number":
            if prop.kind in (Kind.INTEGER, Kind.REFERENCE):
                if not isinstance(value.raw, Decimal) or value.raw != value.raw.to_integral_value():
                    raise self._invalid(value.at, f"{prop.name} takes whole numbers")
                return int(value.raw)
            if not numeric:
                raise self._invalid(value.at, f"{prop.name} takes {_expects(prop)}, not a number")
        elif value.kind == "text" and numeric:
            raise self._invalid(value.at, f"{prop.name} takes a number, not a text")
        elif value.kind == "bool" and prop.kind is not Kind.BOOLEAN:
            raise self._invalid(value.at, f"{prop.name} takes {_expects(prop)}, not true/false")
        return value.raw

    def _invalid(self, at: str, message: str) -> Invalid:
        where = f"{self.field_name} ({at})" if at else self.field_name
        return Invalid("the filter is not valid", [FieldError(where, message)])


def check_scopes(tenant: Tenant, schema: Schema, now: dt.datetime) -> list[str]:
    """Compile every role's row scopes once: `file:roles.R.types.T.right: reason` per fault.

    The loader checks the tenant file's shape; whether an expression names real fields
    with values of the right kinds takes the compiler. Called at start, so that a
    broken scope stops the gateway instead of failing the first request it guards.
    """
    problems = []
    for role in tenant.roles.values():
        principal = system_principal(tenant, login="(scope check)", roles=(role.name,))
        compiler = Compiler(tenant, schema, principal, now, field_name="role scope")
        for type_name, rights in role.types.items():
            type_def = tenant.types[type_name]
            for right in ("read", "create", "update", "delete"):
                granted = getattr(rights, right)
                if granted.mode != "filter" or granted.expression is None:
                    continue
                try:
                    compiler.scope(type_def, Scope(filters=(granted.expression,)))
                except (ScopeError, Invalid) as exc:
                    cause = exc.__cause__ if isinstance(exc, ScopeError) else exc
                    reasons = (
                        [f"{e.field}: {e.message}" for e in cause.errors]
                        if isinstance(cause, Invalid) and cause.errors
                        else [str(cause)]
                    )
                    path = f"roles.{role.name}.types.{type_name}.{right}"
                    problems += [f"{tenant.source}:{path}: {reason}" for reason in reasons]
    return problems


@functools.lru_cache(maxsize=1024)
def scope_tree(expression: str) -> q.Node:
    """A role's row scope, parsed once per process (trees are immutable), not per request."""
    return q.parse_text(expression, field="role scope")


_OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
}


def _negated(node: q.Compare | q.In | q.IsNull) -> q.Compare | q.IsNull | None:
    """The positive condition whose negation `node` is (`ne` → `eq`, `is null` → `is not null`)."""
    if isinstance(node, q.Compare) and node.op == "ne":
        return q.Compare(path=node.path, op="eq", value=node.value)
    if isinstance(node, q.IsNull) and node.null:
        return q.IsNull(path=node.path, null=False)
    return None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _expects(prop: Property) -> str:
    return {
        Kind.BOOLEAN: "true or false",
        Kind.DATETIME: "a date-time",
        Kind.DATE: "a date",
        Kind.MONTH: "a month",
    }.get(prop.kind, "a text")
