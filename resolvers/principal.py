"""The acting user as every resolver sees it: identity, effective rights, display zone.

A user's rights are the union of its roles and its groups' roles. `fingerprint`
changes whenever any input to them changes (a role, a group, the validity window,
activation, the timezone, the tenant file), so anything keyed by it — cache entries
above all — becomes unreachable after such a change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from zoneinfo import ZoneInfo

import msgspec

from resolvers.errors import Forbidden
from resolvers.tenant import ADMIN_ROLE, Permission, Right, Tenant, TypeRights
from resolvers.timezones import display_zone

__all__ = [
    "EffectiveRights",
    "Principal",
    "Scope",
    "UserState",
    "build_principal",
    "system_principal",
]


@dataclass(frozen=True, slots=True)
class Scope:
    """The union of several roles' grants of one right on one type."""

    all: bool = False
    own: bool = False
    filters: tuple[str, ...] = ()

    @property
    def none(self) -> bool:
        return not (self.all or self.own or self.filters)

    @classmethod
    def union(cls, rights: Iterable[Right]) -> Scope:
        rights = list(rights)
        if any(r.mode == "all" for r in rights):
            return cls(all=True)
        filters = sorted({r.expression for r in rights if r.mode == "filter" and r.expression})
        return cls(own=any(r.mode == "own" for r in rights), filters=tuple(filters))


@dataclass(frozen=True, slots=True)
class EffectiveRights:
    read: Scope
    create: Scope
    update: Scope
    delete: Scope
    hidden: frozenset[str]
    """Fields hidden by every role that grants reading (a field one role shows is shown)."""
    readonly: frozenset[str]


_NO_RIGHTS = EffectiveRights(
    read=Scope(),
    create=Scope(),
    update=Scope(),
    delete=Scope(),
    hidden=frozenset(),
    readonly=frozenset(),
)


class UserState(msgspec.Struct, frozen=True):
    """What authentication knows of a user; cached with its key, checked on every request."""

    id: int
    login: str
    active: bool
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None
    timezone: str | None
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    security_version: int

    def within_window(self, now: dt.datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_to is None or now < self.valid_to


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    login: str
    roles: frozenset[str]
    """Effective roles: the user's own and its groups'."""
    permissions: frozenset[Permission]
    rights: Mapping[str, EffectiveRights]
    zone: ZoneInfo
    fingerprint: str
    valid_to: dt.datetime | None
    key_id: int | None = None

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"this requires the {permission.value} permission")

    def on(self, type_name: str) -> EffectiveRights:
        return self.rights.get(type_name, _NO_RIGHTS)

    def covers(self, roles: frozenset[str]) -> bool:
        """Whether this principal holds every one of `roles` (the admin holds them all).

        Acting on another user — managing it, minting or revoking its keys — requires
        this, so that no one gains rights through someone more powerful.
        """
        return ADMIN_ROLE in self.roles or roles <= self.roles


def effective_roles(tenant: Tenant, roles: Iterable[str], groups: Iterable[str]) -> frozenset[str]:
    """The user's own roles plus its groups' roles, limited to those the tenant defines."""
    names = set(roles)
    for group in groups:
        if group in tenant.groups:
            names.update(tenant.groups[group].roles)
    return frozenset(n for n in names if n in tenant.roles)


def build_principal(tenant: Tenant, user: UserState, *, key_id: int | None = None) -> Principal:
    roles = effective_roles(tenant, user.roles, user.groups)
    permissions, rights = _merged(tenant, roles)
    zone = display_zone(user.timezone, tenant.default_timezone)
    material = "|".join(
        (
            tenant.digest,
            str(user.id),
            str(user.security_version),
            ",".join(sorted(roles)),
            zone.key,
            user.valid_to.isoformat() if user.valid_to else "",
        )
    )
    return Principal(
        user_id=user.id,
        login=user.login,
        roles=roles,
        permissions=permissions,
        rights=rights,
        zone=zone,
        fingerprint=hashlib.sha256(material.encode()).hexdigest()[:24],
        valid_to=user.valid_to,
        key_id=key_id,
    )


def system_principal(tenant: Tenant, *, login: str, roles: tuple[str, ...]) -> Principal:
    """A principal that no stored user stands behind: id 0, which no row can have.

    For the machine's operator on the command line, and for checks made at start.
    """
    state = UserState(
        id=0,
        login=login,
        active=True,
        valid_from=None,
        valid_to=None,
        timezone=None,
        roles=roles,
        groups=(),
        security_version=0,
    )
    return build_principal(tenant, state)


# Rights depend only on the tenant and the set of roles: merge each combination once.
_MERGED: dict[
    tuple[str, frozenset[str]], tuple[frozenset[Permission], Mapping[str, EffectiveRights]]
] = {}
_MERGED_LIMIT = 4096


def _merged(
    tenant: Tenant, roles: frozenset[str]
) -> tuple[frozenset[Permission], Mapping[str, EffectiveRights]]:
    key = (tenant.digest, roles)
    if (hit := _MERGED.get(key)) is not None:
        return hit
    defs = [tenant.roles[r] for r in sorted(roles)]
    permissions = frozenset(p for d in defs for p in d.permissions)
    rights: dict[str, EffectiveRights] = {}
    for type_name in tenant.types:
        grants = [d.types[type_name] for d in defs if type_name in d.types]
        if grants:
            rights[type_name] = _merge_type(grants)
    if len(_MERGED) >= _MERGED_LIMIT:
        _MERGED.clear()
    merged = (permissions, MappingProxyType(rights))
    _MERGED[key] = merged
    return merged


def _merge_type(grants: list[TypeRights]) -> EffectiveRights:
    readers = [g for g in grants if g.read.mode != "none"] or grants
    updaters = [g for g in grants if g.update.mode != "none"] or grants
    return EffectiveRights(
        read=Scope.union(g.read for g in grants),
        create=Scope.union(g.create for g in grants),
        update=Scope.union(g.update for g in grants),
        delete=Scope.union(g.delete for g in grants),
        hidden=frozenset.intersection(*(g.hidden for g in readers)),
        readonly=frozenset.intersection(*(g.readonly for g in updaters)),
    )
