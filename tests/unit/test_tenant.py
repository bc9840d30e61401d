"""The tenant model: the demo tenant loads as expected; broken files report every problem."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from resolvers.errors import TenantFileError
from resolvers.tenant import (
    ADMIN_ROLE,
    MAX_IDENTIFIER,
    Kind,
    Permission,
    Right,
    Tenant,
    TypeRights,
    identifier,
    load_tenant,
    parse_tenant,
)

ROOT = Path(__file__).parents[2]
DEMO_TENANT_FILE = ROOT / "gateway" / "demo" / "tenant.toml"
BROKEN = ROOT / "tests" / "tenants" / "broken"

MINIMAL = """
[tenant]
name = "Minimal"
default_timezone = "{zone}"

[types.Note.properties]
title = {{ kind = "string" }}
"""

# file name -> every (key.path, reason fragment) its problems must be, in order.
EXPECTED_PROBLEMS: dict[str, list[tuple[str, str]]] = {
    "unknown_kind": [("types.Note.properties.body.kind", "unknown kind 'txt'")],
    "missing_kind": [("types.Note.properties.body.kind", "is required")],
    "reference_missing_type": [
        ("types.Note.properties.author.to", "references unknown type 'Person'")
    ],
    "unknown_timezone": [("tenant.default_timezone", "unknown timezone 'Europe/Praha'")],
    "timezone_path": [("tenant.default_timezone", "unknown timezone '../../../../etc/passwd'")],
    "unknown_permission": [("roles.viewer.permissions[1]", "unknown permission 'useAPI'")],
    "enum_without_values": [("types.Note.properties.status.values", "non-empty list of values")],
    "reserved_id": [("types.Note.properties.id", "'id' is a reserved system field")],
    "reserved_created_on": [
        ("types.Note.properties.created_on", "'created_on' is a reserved system field")
    ],
    "bad_type_name": [("types.note_book", "PascalCase")],
    "bad_property_name": [("types.Note.properties.Title", "lower_snake_case")],
    "table_collision": [
        ("types.HttpServer", "table 'c_http_server' collides with type 'HTTPServer'")
    ],
    "unknown_key_typo": [("types.Note.properties.title.requird", "unknown key")],
    "unknown_top_level_key": [("command", "unknown key")],
    "redefine_admin": [("roles.admin", "built-in role and cannot be redefined")],
    "group_unknown_role": [('groups."Support".roles[1]', "unknown role 'helpdesk'")],
    "rights_unknown_type": [("roles.viewer.types.Nota", "unknown type 'Nota'")],
    "hidden_unknown_field": [("roles.viewer.types.Note.hidden", "'secret' is not a field of Note")],
    "hidden_not_strings": [("roles.viewer.types.Note.hidden[0]", "expected string, got table")],
    "string_for_bool": [("types.Note.properties.title.required", "expected boolean, got string")],
    "int_for_bool": [("types.Note.read_access_logging", "expected boolean, got integer")],
    "bad_right": [("roles.viewer.types.Note.read", "must be true, false, 'own' or a filter")],
    "unique_multiple": [
        ("types.Note.properties.tags.unique", "multiple property cannot be unique")
    ],
    "unique_text": [("types.Note.properties.body.unique", "text property cannot be unique")],
    "multiple_files": [("types.Note.properties.attachments.multiple", "holds one file")],
    "precision_on_integer": [
        ("types.Note.properties.count.precision", "only decimals have precision")
    ],
    "several_problems": [
        ("tenant.name", "is required"),
        ("tenant.default_timezone", "unknown timezone 'Mars/Olympus_Mons'"),
        ("tenant.multiple_value_shape", "must be 'array' or 'compact'"),
        ("types.Note.properties.title.max_length", "must be positive"),
        ("types.Note.properties.status.values", "must be distinct"),
        ("types.Note.properties.price.precision", "must be between 1 and 18"),
        ("types.Note.properties.owner.to", "names its target type"),
        ("types.Note.label", "'tags' is not a single-valued property of Note"),
        ("roles.viewer.permissions[0]", "unknown permission 'readEverything'"),
        ("roles.viewer.types.Note.readonly", "'id' is always visible and never writable"),
        ('groups."Everyone".roles[0]', "unknown role 'nobody'"),
    ],
}


@pytest.fixture(scope="module")
def demo() -> Tenant:
    return load_tenant(DEMO_TENANT_FILE)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(TenantFileError) as caught:
        load_tenant(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- the demo tenant ---------------------------------------------------------------------------


def test_demo_tenant_header(demo: Tenant) -> None:
    assert demo.name == "Acme CRM (demo)"
    assert demo.default_timezone == "Europe/Prague"
    assert demo.multiple_value_shape == "array"
    assert demo.commands == ("gateway.demo.commands",)
    assert demo.source == str(DEMO_TENANT_FILE)
    assert demo.digest == hashlib.sha256(DEMO_TENANT_FILE.read_bytes()).hexdigest()


def test_demo_types_and_tables(demo: Tenant) -> None:
    assert list(demo.types) == ["Company", "Contact", "Deal", "Activity", "Document", "SyncCursor"]
    assert demo.types["Company"].table == "c_company"
    assert demo.types["SyncCursor"].table == "c_sync_cursor"
    assert {t.name: t.label for t in demo.types.values()} == {
        "Company": "name",
        "Contact": "full_name",
        "Deal": "title",
        "Activity": "subject",
        "Document": "title",
        "SyncCursor": None,
    }
    assert [t.name for t in demo.types.values() if t.read_access_logging] == ["Activity"]


def test_demo_internal_type_and_property(demo: Tenant) -> None:
    assert demo.types["SyncCursor"].api is False
    assert "SyncCursor" not in [t.name for t in demo.api_types()]
    assert len(demo.api_types()) == 5
    company = demo.types["Company"].properties
    assert company["internal_rating"].api is False
    assert all(p.api for name, p in company.items() if name != "internal_rating")


def test_demo_property_kinds_and_flags(demo: Tenant) -> None:
    company = demo.types["Company"].properties
    name = company["name"]
    assert (name.kind, name.required, name.indexed, name.unique) == (Kind.STRING, True, True, False)
    assert name.max_length == 200
    assert company["registration_no"].unique is True
    assert company["industry"].kind is Kind.ENUM
    assert company["industry"].values == (
        "software",
        "manufacturing",
        "retail",
        "finance",
        "public sector",
    )
    assert company["employees"].kind is Kind.INTEGER
    revenue = company["annual_revenue"]
    assert (revenue.kind, revenue.precision, revenue.scale) == (Kind.DECIMAL, 16, 2)
    tags = company["tags"]
    assert (tags.multiple, tags.max_length) == (True, 40)
    assert demo.types["Company"].child_table(tags) == "c_company__tags"

    deal = demo.types["Deal"].properties
    assert (deal["company"].kind, deal["company"].to) == (Kind.REFERENCE, "Company")
    assert (deal["contacts"].to, deal["contacts"].multiple) == ("Contact", True)
    assert deal["status"].values == ("open", "won", "lost")
    assert deal["expected_close"].kind is Kind.MONTH
    assert deal["closed_on"].kind is Kind.DATETIME
    assert demo.types["Contact"].properties["birthday"].kind is Kind.DATE
    assert demo.types["Contact"].properties["newsletter"].kind is Kind.BOOLEAN
    assert demo.types["Document"].properties["file"].kind is Kind.FILE
    assert demo.types["Activity"].properties["body"].max_length == 20000


def test_demo_default_max_lengths(demo: Tenant) -> None:
    contact = demo.types["Contact"].properties
    assert (contact["email"].kind, contact["email"].max_length) == (Kind.EMAIL, 254)
    assert (contact["phone"].kind, contact["phone"].max_length) == (Kind.PHONE, 32)
    assert (contact["notes"].kind, contact["notes"].max_length) == (Kind.TEXT, 100_000)
    assert demo.types["SyncCursor"].properties["position"].max_length == 255
    assert demo.types["Company"].properties["employees"].max_length is None
    default_decimal = parse_tenant(MINIMAL.replace('"string"', '"decimal"').format(zone="UTC"))
    price = default_decimal.types["Note"].properties["title"]
    assert (price.precision, price.scale) == (18, 2)


def test_demo_roles(demo: Tenant) -> None:
    assert set(demo.roles) == {"integration", "reporter", "registrar", "operator", ADMIN_ROLE}
    assert demo.roles["registrar"].permissions == {
        Permission.USE_API,
        Permission.REGISTER_USERS,
        Permission.RESET_PASSWORDS,
    }
    assert demo.roles["registrar"].types == {}

    integration = demo.roles["integration"]
    assert integration.permissions == {Permission.USE_API}
    assert "SyncCursor" not in integration.types
    assert integration.types["Company"] == TypeRights(
        read=Right("all"), create=Right("all"), update=Right("all"), delete=Right("none")
    )
    assert integration.types["Contact"].delete == Right("own")
    deal = integration.types["Deal"]
    assert deal.update == Right("filter", "status = 'open'")
    assert deal.hidden == {"margin_percent"}
    document = integration.types["Document"]
    assert document.read == Right("filter", "confidential = false or confidential is null")
    assert document.readonly == {"confidential"}

    reporter = demo.roles["reporter"]
    assert reporter.types["Contact"].hidden == {"phone", "birthday", "notes"}
    assert reporter.types["Activity"].read == Right("filter", "done = true")
    assert reporter.types["Activity"].create.mode == "none"


def test_builtin_admin_has_everything(demo: Tenant) -> None:
    admin = demo.roles[ADMIN_ROLE]
    assert admin.permissions == frozenset(Permission)
    assert set(admin.types) == set(demo.types)
    for rights in admin.types.values():
        modes = {rights.read.mode, rights.create.mode, rights.update.mode, rights.delete.mode}
        assert modes == {"all"}
        assert rights.hidden == rights.readonly == frozenset()


def test_demo_groups(demo: Tenant) -> None:
    assert {name: g.roles for name, g in demo.groups.items()} == {
        "Application access": ("integration",),
        "Reporting": ("reporter",),
    }


def test_models_are_frozen(demo: Tenant) -> None:
    # mypy already rejects these writes (hence the ignores); this checks the runtime does too.
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.name = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.types["Company"].properties["name"].required = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.roles[ADMIN_ROLE].types["Deal"].read.mode = "none"  # type: ignore[misc]
    with pytest.raises(TypeError):
        demo.types["Spy"] = demo.types["Company"]  # type: ignore[index]
    with pytest.raises(TypeError):
        demo.roles["integration"].types["Deal"] = TypeRights()  # type: ignore[index]


# --- parse_tenant on text ----------------------------------------------------------------------


def test_parse_tenant_text_and_digest() -> None:
    text = MINIMAL.format(zone="UTC")
    tenant = parse_tenant(text)
    assert tenant.source == "<tenant>"
    assert tenant.multiple_value_shape == "array"
    assert tenant.roles.keys() == {ADMIN_ROLE}
    assert tenant.digest == parse_tenant(text.encode()).digest
    assert tenant.digest == hashlib.sha256(text.encode()).hexdigest()
    assert parse_tenant(text + "\n# a comment\n").digest != tenant.digest
    assert parse_tenant(MINIMAL.format(zone="Europe/Prague")).digest != tenant.digest


def test_parse_tenant_names_its_source() -> None:
    with pytest.raises(TenantFileError) as caught:
        parse_tenant(MINIMAL.format(zone="Nowhere"), source="inline.toml")
    assert caught.value.problems == [
        "inline.toml:tenant.default_timezone: unknown timezone 'Nowhere'"
    ]


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Prague", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "US/Pacific"]
)
def test_known_timezones(zone: str) -> None:
    assert parse_tenant(MINIMAL.format(zone=zone)).default_timezone == zone


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Praha",
        "europe/prague",  # keys are case-sensitive
        "Europe",  # a directory of the zone database
        "right/UTC",  # leap-second copy in the system tree
        "posix/Europe/Prague",
        "posixrules",
        "localtime",  # depends on the host
        "zone1970.tab",  # a data file, not a zone
        "/etc/localtime",
        "Europe/../UTC",
        "",
        "Europe/" + "x" * 300,
    ],
)
def test_unknown_timezones(zone: str) -> None:
    with pytest.raises(TenantFileError) as caught:
        parse_tenant(MINIMAL.format(zone=zone))
    assert caught.value.problems == [f"<tenant>:tenant.default_timezone: unknown timezone {zone!r}"]


def test_invalid_utf8_and_surrogates_are_reported() -> None:
    with pytest.raises(TenantFileError, match="invalid TOML"):
        parse_tenant(b'[tenant]\nname = "\xff"\n')
    with pytest.raises(TenantFileError, match="invalid TOML"):
        parse_tenant('[tenant]\nname = "\ud800"\n')


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert problems_of(missing) == [f"{missing}: cannot read: No such file or directory"]


def test_identifier_fits_postgres_limit() -> None:
    assert identifier("c", "company") == "c_company"
    long = identifier("c", "x" * 80)
    assert len(long) == MAX_IDENTIFIER
    assert long == identifier("c", "x" * 80)
    assert long != identifier("c", "x" * 81)


# --- broken tenant files -----------------------------------------------------------------------


def test_every_broken_file_has_expectations() -> None:
    assert {p.stem for p in BROKEN.glob("*.toml")} == {*EXPECTED_PROBLEMS, "invalid_toml"}


@pytest.mark.parametrize("name", sorted(EXPECTED_PROBLEMS))
def test_broken_tenant(name: str) -> None:
    path = BROKEN / f"{name}.toml"
    problems = problems_of(path)
    expected = EXPECTED_PROBLEMS[name]
    assert len(problems) == len(expected), problems
    for problem, (key_path, fragment) in zip(problems, expected, strict=True):
        assert problem.startswith(f"{path}:{key_path}: "), problem
        assert fragment in problem, problem


def test_invalid_toml_names_the_file() -> None:
    path = BROKEN / "invalid_toml.toml"
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: invalid TOML: ")
    assert "line 3" in problems[0]


def test_broken_file_through_tmp_path(tmp_path: Path) -> None:
    path = tmp_path / "tenant.toml"
    path.write_text(MINIMAL.format(zone="UTC").replace('"string"', '"string", api = 1'))
    assert problems_of(path) == [
        f"{path}:types.Note.properties.title.api: expected boolean, got integer"
    ]


FILES_TENANT = """
[tenant]
name = "Files"

[types.Note.properties]
title = {{ kind = "string" }}
scan = {{ kind = "file", content_types = {types} }}
"""


def test_file_content_types_are_read_lower_case_and_deduplicated() -> None:
    tenant = parse_tenant(FILES_TENANT.format(types='["Image/PNG", "image/*", "image/png"]'))
    scan = tenant.types["Note"].properties["scan"]
    assert scan.content_types == ("image/png", "image/*")
    assert tenant.types["Note"].properties["title"].content_types == ()


@pytest.mark.parametrize(
    ("types", "path", "reason"),
    [
        ('["png"]', "types.Note.properties.scan.content_types[0]", "'png' is not a media type"),
        ('["*/*"]', "types.Note.properties.scan.content_types[0]", "is not a media type"),
        ('["image/png; q=1"]', "types.Note.properties.scan.content_types[0]", "not a media"),
        ("[]", "types.Note.properties.scan.content_types", "at least one media type"),
        ('"image/png"', "types.Note.properties.scan.content_types", "expected array"),
        ("[1]", "types.Note.properties.scan.content_types[0]", "expected string"),
    ],
)
def test_bad_file_content_types(types: str, path: str, reason: str) -> None:
    with pytest.raises(TenantFileError) as caught:
        parse_tenant(FILES_TENANT.format(types=types))
    assert len(caught.value.problems) == 1, caught.value.problems
    assert f":{path}: " in caught.value.problems[0]
    assert reason in caught.value.problems[0]


def test_content_types_only_on_file_properties() -> None:
    text = FILES_TENANT.format(types='["image/png"]').replace(
        'title = { kind = "string" }', 'title = { kind = "string", content_types = ["text/plain"] }'
    )
    with pytest.raises(TenantFileError) as caught:
        parse_tenant(text)
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "only file properties have content types"
    ]
