"""Role scopes are compiled when the gateway starts: a broken one stops it, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import DEMO_TENANT_FILE
from resolvers.query_compile import check_scopes
from resolvers.services import utc_now
from resolvers.storage import build_schema
from resolvers.tenant import load_tenant, parse_tenant

TENANTS = Path(__file__).parents[1] / "tenants"

BROKEN_SCOPES = """
[tenant]
name = "Scopes"
default_timezone = "UTC"

[types.Company.properties]
name = { kind = "string" }

[types.Deal.properties]
title = { kind = "string" }
amount = { kind = "decimal", precision = 12, scale = 2 }
company = { kind = "reference", to = "Company" }

[roles.syntax.types.Deal]
read = "amount >= "

[roles.unknown.types.Deal]
read = "owner = $me"
update = "company.nickname = 'x'"

[roles.kinds.types.Deal]
read = "amount = 'lots'"
delete = "title.name = 'x'"

[roles.fine.types.Deal]
read = "created_by = $me or company.name ^= 'A'"
"""


def _problems(text: str) -> list[str]:
    tenant = parse_tenant(text, source="scopes.toml")
    return check_scopes(tenant, build_schema(tenant), utc_now())


def test_every_broken_scope_is_named_with_its_role_type_and_right() -> None:
    problems = _problems(BROKEN_SCOPES)
    where = [p.split(": ", 1)[0] for p in problems]
    assert where == [
        "scopes.toml:roles.syntax.types.Deal.read",
        "scopes.toml:roles.unknown.types.Deal.read",
        "scopes.toml:roles.unknown.types.Deal.update",
        "scopes.toml:roles.kinds.types.Deal.read",
        "scopes.toml:roles.kinds.types.Deal.delete",
    ], problems
    text = "\n".join(problems)
    assert "has no field 'owner'" in text
    assert "has no field 'nickname'" in text
    assert "'title' is not a reference to follow" in text
    assert "amount takes a number, not a text" in text


@pytest.mark.parametrize(
    "path",
    [DEMO_TENANT_FILE, *sorted(TENANTS.glob("*.toml"))],
    ids=lambda p: Path(p).stem,
)
def test_shipped_tenants_have_sound_scopes(path: Path) -> None:
    tenant = load_tenant(path)
    assert check_scopes(tenant, build_schema(tenant), utc_now()) == []
