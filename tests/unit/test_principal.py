"""Effective rights: the union of roles and groups' roles, and a fingerprint that moves."""

from __future__ import annotations

import datetime as dt

from resolvers.principal import Scope, UserState, build_principal, effective_roles
from resolvers.tenant import Permission, Right, parse_tenant

TENANT = parse_tenant(
    """
[tenant]
name = "t"
default_timezone = "Europe/Prague"

[types.Deal.properties]
title = { kind = "string" }
margin = { kind = "decimal" }
owner_note = { kind = "text" }

[roles.seller]
permissions = ["useApi"]
[roles.seller.types.Deal]
read = "own"
update = "title ^= 'A'"
hidden = ["margin", "owner_note"]
readonly = ["title"]

[roles.auditor]
permissions = ["useApi", "manageCache"]
[roles.auditor.types.Deal]
read = "margin > 0"
hidden = ["owner_note"]

[roles.nobody]

[groups."Sales"]
roles = ["seller"]
"""
)


def user(roles: tuple[str, ...] = (), groups: tuple[str, ...] = (), **changes: object) -> UserState:
    fields: dict[str, object] = {
        "id": 7,
        "login": "u",
        "active": True,
        "valid_from": None,
        "valid_to": None,
        "timezone": None,
        "roles": roles,
        "groups": groups,
        "security_version": 1,
    }
    fields.update(changes)
    return UserState(**fields)  # type: ignore[arg-type]


def test_group_roles_count_as_the_users_own() -> None:
    assert effective_roles(TENANT, (), ("Sales",)) == {"seller"}
    assert effective_roles(TENANT, ("auditor", "gone"), ("Sales", "No such group")) == {
        "seller",
        "auditor",
    }


def test_rights_are_the_union_of_roles() -> None:
    principal = build_principal(TENANT, user(("auditor",), ("Sales",)))
    deal = principal.on("Deal")
    assert deal.read == Scope(own=True, filters=("margin > 0",))
    assert deal.update == Scope(filters=("title ^= 'A'",))
    assert deal.delete.none
    # A field is hidden only if every reading role hides it.
    assert deal.hidden == {"owner_note"}
    assert principal.permissions == {Permission.USE_API, Permission.MANAGE_CACHE}


def test_all_wins_over_scopes() -> None:
    assert Scope.union([Right("own"), Right.everything(), Right("filter", "x = 1")]) == Scope(
        all=True
    )
    assert Scope.union([Right.nothing()]).none


def test_the_admin_role_holds_everything() -> None:
    principal = build_principal(TENANT, user(("admin",)))
    assert principal.permissions == frozenset(Permission)
    assert principal.on("Deal").delete.all


def test_unknown_types_grant_nothing() -> None:
    assert build_principal(TENANT, user(("seller",))).on("Nope").read.none


def test_display_zone_prefers_the_users_own() -> None:
    assert build_principal(TENANT, user()).zone.key == "Europe/Prague"
    assert build_principal(TENANT, user(timezone="America/New_York")).zone.key == "America/New_York"


def test_fingerprint_moves_with_every_input_to_rights() -> None:
    base = build_principal(TENANT, user(("seller",))).fingerprint
    changed = [
        user(("seller", "auditor")),
        user(("seller",), ("Sales",), security_version=2),
        user(("seller",), timezone="America/New_York"),
        user(("seller",), valid_to=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
        user(("seller",), id=8),
    ]
    prints = {build_principal(TENANT, u).fingerprint for u in changed}
    assert base not in prints
    assert len(prints) == len(changed)
    assert build_principal(TENANT, user(("seller",))).fingerprint == base


def test_validity_window() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    assert user().within_window(now)
    assert user(valid_from=now - day, valid_to=now + day).within_window(now)
    assert not user(valid_from=now + day).within_window(now)
    assert not user(valid_to=now).within_window(now)
