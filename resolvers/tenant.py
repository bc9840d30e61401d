"""The tenant model: typed, frozen objects read from the tenant TOML file.

`load_tenant(path)` validates the whole file and raises `TenantFileError` listing
every problem as ``file:key.path: reason``, so an operator fixes them in one pass.
"""

from __future__ import annotations

import enum
import hashlib
import re
import tomllib
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from resolvers.errors import TenantFileError
from resolvers.timezones import is_zone

__all__ = [
    "ADMIN_ROLE",
    "SYSTEM_FIELDS",
    "Group",
    "Kind",
    "Permission",
    "Property",
    "Right",
    "Role",
    "Tenant",
    "TypeDef",
    "TypeRights",
    "load_tenant",
    "parse_tenant",
]

ADMIN_ROLE = "admin"
SYSTEM_FIELDS = ("id", "created_on", "updated_on", "created_by", "updated_by")
MAX_IDENTIFIER = 63  # PostgreSQL's identifier limit; every generated name must fit.


class Kind(enum.StrEnum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    MONTH = "month"
    ENUM = "enum"
    EMAIL = "email"
    PHONE = "phone"
    REFERENCE = "reference"
    FILE = "file"


class Permission(enum.StrEnum):
    USE_API = "useApi"
    REGISTER_USERS = "registerUsers"
    RESET_PASSWORDS = "resetPasswords"
    GENERATE_OTHERS_API_KEYS = "generateOthersApiKeys"
    MANAGE_CACHE = "manageCache"
    MANAGE_USERS = "manageUsers"


_KINDS = tuple(k.value for k in Kind)
_TEXTUAL = frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.PHONE})
_DEFAULT_MAX_LENGTH = {Kind.STRING: 255, Kind.TEXT: 100_000, Kind.EMAIL: 254, Kind.PHONE: 32}
_NOT_UNIQUE = frozenset({Kind.TEXT, Kind.BOOLEAN, Kind.FILE})
_MAX_DECIMAL_PRECISION = 18  # exact on SQLite as a scaled 64-bit integer

_TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,39}")
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_EXPRESSION = 4000
# A media type `type/subtype` (RFC 6838 names, lower case), or `type/*` for a whole type.
_MEDIA_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_MEDIA_NAME}/(?:{_MEDIA_NAME}|\*)")
_MAX_CONTENT_TYPES = 100
_FLAGS = ("required", "unique", "multiple", "indexed")
_PROPERTY_KEYS = frozenset(
    {"kind", *_FLAGS, "api", "max_length", "values", "to", "precision", "scale", "content_types"}
)
_TOML_NAMES: dict[type, str] = {
    bool: "boolean",
    str: "string",
    int: "integer",
    float: "float",
    list: "array",
    dict: "table",
}


_T = TypeVar("_T")
_D = TypeVar("_D")


@dataclass(frozen=True, slots=True)
class Property:
    """One typed property of a collection; its `name` is also its column in the type's table."""

    name: str
    kind: Kind
    required: bool = False
    unique: bool = False
    multiple: bool = False
    indexed: bool = False
    api: bool = True
    max_length: int | None = None
    values: tuple[str, ...] = ()
    to: str | None = None
    precision: int = 18
    scale: int = 2
    content_types: tuple[str, ...] = ()
    """A file property's accepted media types (`type/subtype` or `type/*`); empty: any."""


@dataclass(frozen=True, slots=True)
class TypeDef:
    """A collection: a real table named `table`, with child tables for multi-valued properties."""

    name: str
    table: str
    properties: Mapping[str, Property]
    label: str | None = None
    read_access_logging: bool = False
    api: bool = True

    def child_table(self, prop: Property) -> str:
        return identifier(self.table, prop.name, sep="__")


@dataclass(frozen=True, slots=True)
class Right:
    """A per-type right: everything, nothing, own records, or a row-scope filter."""

    mode: Literal["all", "none", "own", "filter"]
    expression: str | None = None

    @classmethod
    def everything(cls) -> Right:
        return cls("all")

    @classmethod
    def nothing(cls) -> Right:
        return cls("none")


@dataclass(frozen=True, slots=True)
class TypeRights:
    read: Right = field(default_factory=Right.nothing)
    create: Right = field(default_factory=Right.nothing)
    update: Right = field(default_factory=Right.nothing)
    delete: Right = field(default_factory=Right.nothing)
    hidden: frozenset[str] = frozenset()
    readonly: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    permissions: frozenset[Permission]
    types: Mapping[str, TypeRights]


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    default_timezone: str
    multiple_value_shape: Literal["array", "compact"]
    types: Mapping[str, TypeDef]
    roles: Mapping[str, Role]
    groups: Mapping[str, Group]
    commands: tuple[str, ...]
    source: str
    digest: str

    def api_types(self) -> list[TypeDef]:
        return [t for t in self.types.values() if t.api]

    def reachable(self, name: str) -> tuple[str, ...]:
        """`name` and every type its references lead to, transitively (sorted).

        A filter or a row scope on `name` can only look at these types' records.
        """
        key = (self.digest, "reach", name)
        if (found := _RELATIONS.get(key)) is None:
            seen = {name}
            todo = [name]
            while todo:
                for prop in self.types[todo.pop()].properties.values():
                    target = prop.to if prop.kind is Kind.REFERENCE else None
                    if target is not None and target in self.types and target not in seen:
                        seen.add(target)
                        todo.append(target)
            found = _RELATIONS[key] = tuple(sorted(seen))
        return found

    def referrers(self, name: str) -> tuple[str, ...]:
        """The types with a reference to `name` (deleting one of its records changes theirs)."""
        key = (self.digest, "referrers", name)
        if (found := _RELATIONS.get(key)) is None:
            found = _RELATIONS[key] = tuple(
                sorted(
                    t.name
                    for t in self.types.values()
                    if any(p.kind is Kind.REFERENCE and p.to == name for p in t.properties.values())
                )
            )
        return found


_RELATIONS: dict[tuple[str, str, str], tuple[str, ...]] = {}
"""Derived relations between a tenant's types, computed once per tenant digest."""


def identifier(*parts: str, sep: str = "_") -> str:
    """Join parts into a SQL identifier; names past PostgreSQL's limit get a stable hash tail."""
    name = sep.join(parts)
    if len(name) <= MAX_IDENTIFIER:
        return name
    tail = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - 9]}_{tail}"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[A-Z])([A-Z])(?=[a-z])", r"_\1\2", name).lower()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _toml_name(kind: type) -> str:
    return _TOML_NAMES.get(kind, kind.__name__)


def load_tenant(path: str | Path) -> Tenant:
    """Read and validate a tenant file; raise `TenantFileError` with every problem found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TenantFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_tenant(raw, source=str(path))


def parse_tenant(raw: bytes | str, *, source: str = "<tenant>") -> Tenant:
    """Validate tenant TOML text; the `source` names the file in problem messages."""
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        data = text.encode("utf-8")  # a str with lone surrogates fails here, not later
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeError) as exc:
        raise TenantFileError([f"{source}: invalid TOML: {exc}"]) from exc
    reader = _Reader(source)
    tenant = reader.tenant(doc, hashlib.sha256(data).hexdigest())
    if reader.problems:
        raise TenantFileError(reader.problems)
    return tenant


class _Reader:
    """Walks the parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(f"{self.source}:{path}: {reason}")

    def table(self, value: object, path: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(path, f"expected table, got {_toml_name(type(value))}")
        return {}

    def known_keys(self, table: Mapping[str, object], path: str, allowed: Set[str]) -> None:
        for key in table:
            if key not in allowed:
                choices = ", ".join(sorted(allowed))
                self.problem(_join(path, key), f"unknown key (allowed: {choices})")

    def typed(
        self, table: Mapping[str, object], key: str, path: str, kind: type[_T], *, default: _D
    ) -> _T | _D:
        """`table[key]` if it has the TOML type `kind`; otherwise report it and use `default`."""
        if key not in table:
            return default
        value = table[key]
        # bool is an int subclass in Python; TOML keeps them apart and so do we.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        wanted, got = _toml_name(kind), _toml_name(type(value))
        self.problem(_join(path, key), f"expected {wanted}, got {got}")
        return default

    def strings(self, table: Mapping[str, object], key: str, path: str) -> list[str]:
        """An array of strings; other entries are reported and dropped (they may be unhashable)."""
        found: list[str] = []
        for i, item in enumerate(self.typed(table, key, path, list, default=[])):
            if isinstance(item, str):
                found.append(item)
            else:
                self.problem(
                    f"{_join(path, key)}[{i}]", f"expected string, got {_toml_name(type(item))}"
                )
        return found

    def tenant(self, doc: dict[str, Any], digest: str) -> Tenant:
        self.known_keys(doc, "", {"tenant", "types", "roles", "groups", "commands"})
        head = self.table(doc.get("tenant", {}), "tenant")
        self.known_keys(head, "tenant", {"name", "default_timezone", "multiple_value_shape"})
        name = self.typed(head, "name", "tenant", str, default="")
        if not name.strip():
            self.problem("tenant.name", "is required")
        zone = self.typed(head, "default_timezone", "tenant", str, default="UTC")
        if not is_zone(zone):
            self.problem("tenant.default_timezone", f"unknown timezone {zone!r}")
            zone = "UTC"
        raw_shape = self.typed(head, "multiple_value_shape", "tenant", str, default="array")
        if raw_shape not in ("array", "compact"):
            self.problem("tenant.multiple_value_shape", "must be 'array' or 'compact'")
        shape: Literal["array", "compact"] = "compact" if raw_shape == "compact" else "array"

        raw_types = self.table(doc.get("types", {}), "types")
        if not raw_types:
            self.problem("types", "at least one type is required")
        type_names = set(raw_types)
        types = {
            n: self.type_def(n, self.table(t, f"types.{n}"), type_names)
            for n, t in raw_types.items()
        }
        self.check_tables(types)

        raw_roles = self.table(doc.get("roles", {}), "roles")
        roles = {n: self.role(n, self.table(r, f"roles.{n}"), types) for n, r in raw_roles.items()}
        roles[ADMIN_ROLE] = _admin_role(types)

        raw_groups = self.table(doc.get("groups", {}), "groups")
        groups = {
            n: self.group(n, self.table(g, f'groups."{n}"'), roles) for n, g in raw_groups.items()
        }

        commands = self.strings(doc, "commands", "")
        for i, module in enumerate(commands):
            if not _MODULE_PATH.fullmatch(module):
                self.problem(f"commands[{i}]", f"{module!r} is not a module path")
        if len(set(commands)) != len(commands):
            self.problem("commands", "lists a module twice")

        return Tenant(
            name=name,
            default_timezone=zone,
            multiple_value_shape=shape,
            types=MappingProxyType(types),
            roles=MappingProxyType(roles),
            groups=MappingProxyType(groups),
            commands=tuple(commands),
            source=self.source,
            digest=digest,
        )

    def type_def(self, name: str, raw: dict[str, Any], type_names: set[str]) -> TypeDef:
        path = f"types.{name}"
        if not _TYPE_NAME.fullmatch(name):
            self.problem(path, "type names are PascalCase letters and digits, at most 40")
        self.known_keys(raw, path, {"properties", "label", "read_access_logging", "api"})
        raw_props = self.table(raw.get("properties", {}), f"{path}.properties")
        if not raw_props:
            self.problem(f"{path}.properties", "a type needs at least one property")
        props: dict[str, Property] = {}
        for prop_name, prop in raw_props.items():
            prop_path = f"{path}.properties.{prop_name}"
            props[prop_name] = self.prop(
                prop_name, self.table(prop, prop_path), prop_path, type_names
            )
        label = self.typed(raw, "label", path, str, default=None)
        if label is not None and (label not in props or props[label].multiple):
            self.problem(f"{path}.label", f"{label!r} is not a single-valued property of {name}")
        return TypeDef(
            name=name,
            table=identifier("c", _snake(name)),
            properties=MappingProxyType(props),
            label=label,
            read_access_logging=self.typed(raw, "read_access_logging", path, bool, default=False),
            api=self.typed(raw, "api", path, bool, default=True),
        )

    def prop(self, name: str, raw: dict[str, Any], path: str, type_names: set[str]) -> Property:
        self.known_keys(raw, path, _PROPERTY_KEYS)
        if name in SYSTEM_FIELDS:
            self.problem(path, f"{name!r} is a reserved system field")
        elif not _PROPERTY_NAME.fullmatch(name):
            self.problem(path, "property names are lower_snake_case, at most 40 characters")
        kind = self.kind(raw, path)
        flags = {f: self.typed(raw, f, path, bool, default=False) for f in _FLAGS}
        if flags["unique"] and (flags["multiple"] or kind in _NOT_UNIQUE):
            what = "multiple" if flags["multiple"] else kind.value
            self.problem(f"{path}.unique", f"a {what} property cannot be unique")
        if flags["multiple"] and kind is Kind.FILE:
            self.problem(f"{path}.multiple", "a file property holds one file")
        precision, scale = self.decimal(raw, path, kind)
        return Property(
            name=name,
            kind=kind,
            api=self.typed(raw, "api", path, bool, default=True),
            max_length=self.max_length(raw, path, kind),
            values=self.enum_values(raw, path, kind),
            to=self.target(raw, path, kind, type_names),
            precision=precision,
            scale=scale,
            content_types=self.content_types(raw, path, kind),
            **flags,
        )

    def kind(self, raw: Mapping[str, object], path: str) -> Kind:
        raw_kind = self.typed(raw, "kind", path, str, default=None)
        if raw_kind in _KINDS:
            return Kind(raw_kind)
        choices = ", ".join(_KINDS)
        if "kind" not in raw:
            self.problem(f"{path}.kind", f"is required (one of: {choices})")
        elif raw_kind is not None:  # None: `typed` already reported a non-string kind
            self.problem(f"{path}.kind", f"unknown kind {raw_kind!r} (one of: {choices})")
        return Kind.STRING

    def max_length(self, raw: Mapping[str, object], path: str, kind: Kind) -> int | None:
        max_length = self.typed(raw, "max_length", path, int, default=None)
        if max_length is None:
            return _DEFAULT_MAX_LENGTH.get(kind)
        if kind not in _TEXTUAL:
            self.problem(f"{path}.max_length", f"does not apply to kind {kind.value!r}")
        elif max_length < 1:
            self.problem(f"{path}.max_length", "must be positive")
        return max_length

    def enum_values(self, raw: Mapping[str, object], path: str, kind: Kind) -> tuple[str, ...]:
        if kind is not Kind.ENUM:
            if "values" in raw:
                self.problem(f"{path}.values", "only enums have values")
            return ()
        values = self.strings(raw, "values", path)
        if not values:
            self.problem(f"{path}.values", "an enum needs a non-empty list of values")
        elif not all(v.strip() for v in values):
            self.problem(f"{path}.values", "enum values are non-empty strings")
        elif len(set(values)) != len(values):
            self.problem(f"{path}.values", "enum values must be distinct")
        return tuple(values)

    def content_types(self, raw: Mapping[str, object], path: str, kind: Kind) -> tuple[str, ...]:
        if "content_types" not in raw:
            return ()
        key = f"{path}.content_types"
        if kind is not Kind.FILE:
            self.problem(key, "only file properties have content types")
            return ()
        found = self.strings(raw, "content_types", path)
        if raw["content_types"] == []:
            self.problem(key, "list at least one media type, or leave the key out")
        elif len(found) > _MAX_CONTENT_TYPES:
            self.problem(key, f"at most {_MAX_CONTENT_TYPES} media types")
        for i, item in enumerate(found):
            if not _MEDIA_TYPE.fullmatch(item.lower()):
                self.problem(f"{key}[{i}]", f"{item!r} is not a media type like 'image/png'")
        return tuple(dict.fromkeys(item.lower() for item in found))

    def target(
        self, raw: Mapping[str, object], path: str, kind: Kind, type_names: set[str]
    ) -> str | None:
        to = self.typed(raw, "to", path, str, default=None)
        if kind is not Kind.REFERENCE:
            if to is not None:
                self.problem(f"{path}.to", "only references have `to`")
            return None
        if to is None:
            self.problem(f"{path}.to", "a reference names its target type with `to`")
        elif to not in type_names:
            self.problem(f"{path}.to", f"references unknown type {to!r}")
        return to

    def decimal(self, raw: Mapping[str, object], path: str, kind: Kind) -> tuple[int, int]:
        precision = self.typed(raw, "precision", path, int, default=_MAX_DECIMAL_PRECISION)
        scale = self.typed(raw, "scale", path, int, default=2)
        if kind is not Kind.DECIMAL:
            for key in ("precision", "scale"):
                if key in raw:
                    self.problem(f"{path}.{key}", "only decimals have precision and scale")
        else:
            if not 1 <= precision <= _MAX_DECIMAL_PRECISION:
                self.problem(f"{path}.precision", f"must be between 1 and {_MAX_DECIMAL_PRECISION}")
            if not 0 <= scale <= min(precision, 12):
                self.problem(f"{path}.scale", "must be between 0 and min(precision, 12)")
        return precision, scale

    def check_tables(self, types: Mapping[str, TypeDef]) -> None:
        seen: dict[str, str] = {}
        for t in types.values():
            if t.table in seen:
                self.problem(
                    f"types.{t.name}", f"its table {t.table!r} collides with type {seen[t.table]!r}"
                )
            seen[t.table] = t.name

    def right(self, value: object, path: str) -> Right:
        if value is True:
            return Right.everything()
        if value is False:
            return Right.nothing()
        if value == "own":
            return Right("own")
        if isinstance(value, str) and value.strip() and len(value) <= _MAX_EXPRESSION:
            return Right("filter", value)
        limit = f"at most {_MAX_EXPRESSION} characters"
        self.problem(path, f"must be true, false, 'own' or a filter expression of {limit}")
        return Right.nothing()

    def role(self, name: str, raw: dict[str, Any], types: Mapping[str, TypeDef]) -> Role:
        path = f"roles.{name}"
        if name == ADMIN_ROLE:
            self.problem(path, "'admin' is the built-in role and cannot be redefined")
        elif not _ROLE_NAME.fullmatch(name):
            self.problem(path, "role names are letters, digits, '_', '.', '-'")
        self.known_keys(raw, path, {"permissions", "types"})
        perms: set[Permission] = set()
        for i, p in enumerate(self.strings(raw, "permissions", path)):
            try:
                perms.add(Permission(p))
            except ValueError:
                known = ", ".join(x.value for x in Permission)
                self.problem(
                    f"{path}.permissions[{i}]", f"unknown permission {p!r} (one of: {known})"
                )
        rights: dict[str, TypeRights] = {}
        for type_name, raw_rights in self.table(raw.get("types", {}), f"{path}.types").items():
            rpath = f"{path}.types.{type_name}"
            if type_name not in types:
                self.problem(rpath, f"unknown type {type_name!r}")
                continue
            rights[type_name] = self.type_rights(
                self.table(raw_rights, rpath), rpath, types[type_name]
            )
        return Role(name=name, permissions=frozenset(perms), types=MappingProxyType(rights))

    def type_rights(self, raw: dict[str, Any], path: str, type_def: TypeDef) -> TypeRights:
        self.known_keys(raw, path, {"read", "create", "update", "delete", "hidden", "readonly"})
        fields = set(type_def.properties) | set(SYSTEM_FIELDS)
        lists: dict[str, frozenset[str]] = {}
        for key in ("hidden", "readonly"):
            names = self.strings(raw, key, path)
            for name in names:
                if name == "id":
                    self.problem(f"{path}.{key}", "'id' is always visible and never writable")
                elif name not in fields:
                    self.problem(f"{path}.{key}", f"{name!r} is not a field of {type_def.name}")
            lists[key] = frozenset(names)
        return TypeRights(
            read=self.right(raw.get("read", False), f"{path}.read"),
            create=self.right(raw.get("create", False), f"{path}.create"),
            update=self.right(raw.get("update", False), f"{path}.update"),
            delete=self.right(raw.get("delete", False), f"{path}.delete"),
            hidden=lists["hidden"],
            readonly=lists["readonly"],
        )

    def group(self, name: str, raw: dict[str, Any], roles: Mapping[str, Role]) -> Group:
        path = f'groups."{name}"'
        if not name.strip() or len(name) > 100:
            self.problem(path, "group names are 1 to 100 characters")
        self.known_keys(raw, path, {"roles"})
        names = self.strings(raw, "roles", path)
        for i, role in enumerate(names):
            if role not in roles:
                self.problem(f"{path}.roles[{i}]", f"unknown role {role!r}")
        return Group(name=name, roles=tuple(names))


def _admin_role(types: Mapping[str, TypeDef]) -> Role:
    full = TypeRights(
        read=Right.everything(),
        create=Right.everything(),
        update=Right.everything(),
        delete=Right.everything(),
    )
    return Role(
        name=ADMIN_ROLE,
        permissions=frozenset(Permission),
        types=MappingProxyType(dict.fromkeys(types, full)),
    )
