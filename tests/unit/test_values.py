"""Property values: every kind in and out, DESIGN §6 time rules, exact decimals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.tenant import SYSTEM_FIELDS, Kind, Property, TypeDef
from resolvers.values import (
    MAX_ITEMS,
    SYSTEM_FIELD_KINDS,
    SYSTEM_PROPERTIES,
    USERS,
    coerce,
    coerce_literal,
    coerce_text,
    field,
    render,
)

PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
STORED = dt.datetime(2026, 5, 22, 7, 0, tzinfo=dt.UTC)

STRING = Property("name", Kind.STRING, max_length=10)
TEXT = Property("notes", Kind.TEXT, max_length=100_000)
EMAIL = Property("email", Kind.EMAIL, max_length=254)
PHONE = Property("phone", Kind.PHONE, max_length=32)
INTEGER = Property("count", Kind.INTEGER)
DECIMAL = Property("amount", Kind.DECIMAL, precision=18, scale=2)
BOOLEAN = Property("done", Kind.BOOLEAN)
DATETIME = Property("due", Kind.DATETIME)
DATE = Property("day", Kind.DATE)
MONTH = Property("period", Kind.MONTH)
ENUM = Property("status", Kind.ENUM, values=("open", "won", "in progress"))
REFERENCE = Property("company", Kind.REFERENCE, to="Company")
FILE = Property("attachment", Kind.FILE)
TAGS = Property("tags", Kind.STRING, multiple=True, max_length=10)
LINKS = Property("companies", Kind.REFERENCE, multiple=True, to="Company")
DAYS = Property("days", Kind.DATE, multiple=True)
SHAPES: tuple[Literal["array", "compact"], ...] = ("array", "compact")


def refused(prop: Property, value: object, reason: str, zone: ZoneInfo = PRAGUE) -> None:
    with pytest.raises(ValueError, match=reason):
        coerce(prop, value, zone)


def decimal(precision: int, scale: int) -> Property:
    return Property("amount", Kind.DECIMAL, precision=precision, scale=scale)


# DESIGN §6: time.


@pytest.mark.parametrize(
    "sent",
    [
        "2026-05-22T09:00:00+02:00",
        "2026-05-22T07:00:00Z",
        "2026-05-22T03:00:00-04:00",
        "2026-05-22 09:00:00",
        "2026-05-22T09:00:00",
    ],
)
def test_the_design_table_for_a_prague_user(sent: str) -> None:
    stored = coerce(DATETIME, sent, PRAGUE)
    assert isinstance(stored, dt.datetime)
    assert stored == STORED
    assert stored.tzinfo is not None
    assert render(DATETIME, stored, PRAGUE, shape="array") == "2026-05-22T09:00:00+02:00"
    assert render(DATETIME, stored, NEW_YORK, shape="array") == "2026-05-22T03:00:00-04:00"
    assert render(DATETIME, stored, UTC, shape="array") == "2026-05-22T07:00:00+00:00"


def test_a_naive_datetime_is_read_in_the_users_zone() -> None:
    assert coerce(DATETIME, "2026-05-22 09:00:00", NEW_YORK) == dt.datetime(
        2026, 5, 22, 13, 0, tzinfo=dt.UTC
    )
    assert coerce(DATETIME, dt.datetime(2026, 5, 22, 9, 0), PRAGUE) == STORED  # noqa: DTZ001


def test_microseconds_are_kept_and_shown_only_when_present() -> None:
    stored = coerce(DATETIME, "2026-05-22T09:00:00.250000+02:00", PRAGUE)
    assert render(DATETIME, stored, PRAGUE, shape="array") == "2026-05-22T09:00:00.250000+02:00"


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("2026-03-29 02:30:00", "does not exist"),  # Prague springs forward 02:00 -> 03:00
        ("2026-10-25 02:30:00", "happens twice"),  # and falls back 03:00 -> 02:00
        ("1899-12-31T12:00:00Z", "between 1900 and 9999"),
        ("9999-06-01T00:00:00Z", "between 1900 and 9999"),
        ("tomorrow", "ISO 8601"),
        (1_779_433_200, "ISO 8601"),
    ],
)
def test_bad_datetimes_are_refused(sent: object, reason: str) -> None:
    refused(DATETIME, sent, reason)


def test_a_dst_wall_time_with_an_offset_is_an_instant() -> None:
    assert coerce(DATETIME, "2026-10-25T02:30:00+01:00", PRAGUE) == dt.datetime(
        2026, 10, 25, 1, 30, tzinfo=dt.UTC
    )


def test_a_date_stays_the_written_day() -> None:
    for zone in (PRAGUE, NEW_YORK, ZoneInfo("Pacific/Kiritimati")):
        assert coerce(DATE, "2026-05-22", zone) == dt.date(2026, 5, 22)
        assert render(DATE, dt.date(2026, 5, 22), zone, shape="array") == "2026-05-22"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-05-22T23:30:00-04:00",  # already the 23rd in UTC and Prague
        "2026-05-22T00:30:00+14:00",  # still the 21st in UTC
        "2026-05-22 23:59:59",
        "2026-05-22T09:00:00Z",
        "2026-03-29T02:30:00",  # a Prague DST gap: no instant is made, so no refusal
        dt.datetime(2026, 5, 22, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4))),
    ],
)
def test_a_datetime_sent_to_a_date_or_month_keeps_its_written_date(sent: object) -> None:
    day = coerce(DATE, sent, PRAGUE)
    assert isinstance(day, dt.date)
    assert day == (
        dt.date(2026, 3, 29) if str(sent).startswith("2026-03") else dt.date(2026, 5, 22)
    )
    assert coerce(MONTH, sent, PRAGUE) == day.replace(day=1)


def test_a_month_at_a_month_boundary_is_not_shifted() -> None:
    # 23:00 UTC on 31 May is already June in Prague; the written month wins.
    assert coerce(MONTH, "2026-05-31T23:00:00Z", PRAGUE) == dt.date(2026, 5, 1)
    assert coerce(DATE, "2026-05-31T23:00:00Z", PRAGUE) == dt.date(2026, 5, 31)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-05", dt.date(2026, 5, 1)),
        ("2026-12", dt.date(2026, 12, 1)),
        ("2026-05-22", dt.date(2026, 5, 1)),
        (dt.date(2026, 5, 22), dt.date(2026, 5, 1)),
    ],
)
def test_months(sent: object, stored: dt.date) -> None:
    assert coerce(MONTH, sent, PRAGUE) == stored
    assert render(MONTH, stored, PRAGUE, shape="array") == f"{stored:%Y-%m}"


@pytest.mark.parametrize(
    "sent", ["2026-13", "2026-00", "0000-01", "2026-5", "26-05", "May 2026", "", 202605, None]
)
def test_bad_months_are_refused(sent: object) -> None:
    if sent is None:
        assert coerce(MONTH, sent, PRAGUE) is None
    else:
        refused(MONTH, sent, "expected a month YYYY-MM")


@pytest.mark.parametrize(
    "sent",
    [
        "2026-02-30",
        "2026-5-22",
        "20260522",
        "2026-W21-5",
        "2026-05",
        "2026-05-22Tnoon",
        "2026-05-22T25:00:00",
        "22.05.2026",
        "\uff12\uff10\uff12\uff16-05-22",  # full-width digits
        20260522,
        True,
    ],
)
def test_bad_dates_are_refused(sent: object) -> None:
    refused(DATE, sent, "expected a date YYYY-MM-DD")


# Text kinds.


def test_strings() -> None:
    assert coerce(STRING, "Žluťoučký", PRAGUE) == "Žluťoučký"
    assert coerce(STRING, "", PRAGUE) == ""
    assert coerce(STRING, "a" * 10, PRAGUE) == "a" * 10
    assert coerce(STRING, None, PRAGUE) is None
    assert coerce(TEXT, "line\nline", PRAGUE) == "line\nline"


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("a" * 11, "at most 10 characters"),
        ("🙂" * 11, "at most 10 characters"),  # counted in characters, not bytes
        ("a\x00b", "NUL"),
        ("a\ud800b", "lone surrogate"),
        (12, "expected a string, got an integer"),
        (True, "expected a string, got a boolean"),
        (["a"], "expected a single value, got a list"),
        ({"a": 1}, "expected a string, got an object"),
    ],
)
def test_bad_strings_are_refused(sent: object, reason: str) -> None:
    refused(STRING, sent, reason)


def test_characters_not_bytes_count() -> None:
    assert coerce(STRING, "🙂" * 10, PRAGUE) == "🙂" * 10


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        ("Ann.Smith+crm@Example.COM", "Ann.Smith+crm@example.com"),
        ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
        ("jan@Münster.DE", "jan@münster.de"),
        ("x@xn--mnster-3ya.de", "x@xn--mnster-3ya.de"),
    ],
)
def test_emails_keep_their_local_part_and_lower_case_the_domain(sent: str, stored: str) -> None:
    assert coerce(EMAIL, sent, PRAGUE) == stored


@pytest.mark.parametrize(
    "sent",
    [
        "ann",
        "ann@",
        "@example.com",
        "ann@example",
        "ann@@example.com",
        "ann@exa mple.com",
        "ann smith@example.com",
        ".ann@example.com",
        "ann.@example.com",
        "an..n@example.com",
        "ann@-example.com",
        "ann@example-.com",
        "ann@exa_mple.com",
        "ann@example..com",
        "ann@example.com.",
        "ann@192.168.0.1",
        "ann@[192.168.0.1]",
        '"ann"@example.com',
        "a" * 65 + "@example.com",
        "ann@" + "a" * 64 + ".com",
    ],
)
def test_bad_emails_are_refused(sent: str) -> None:
    refused(EMAIL, sent, "expected an e-mail address")


def test_an_email_is_at_most_254_characters() -> None:
    longest = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + "." + "c" * 6
    assert len(longest) == 254
    assert coerce(EMAIL, longest, PRAGUE) == longest
    refused(EMAIL, "a" + longest, "at most 254 characters")
    refused(Property("email", Kind.EMAIL, max_length=20), "ann@a-long-domain.com", "at most 20")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("+420 603 123 456", "+420603123456"),
        ("(555) 010-0000", "5550100000"),
        ("555.010.0000", "5550100000"),
        ("  +1-555-0100 ", "+15550100"),
        ("1234", "1234"),
        ("+" + "1" * 31, "+" + "1" * 31),
    ],
)
def test_phones_are_stored_normalised(sent: str, stored: str) -> None:
    assert coerce(PHONE, sent, PRAGUE) == stored


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("123", "at least 4 digits"),
        ("+123", "at least 4 digits"),
        ("1" * 33, "at most 32 characters"),
        ("+" + "1" * 32, "at most 32 characters"),
        ("555-CALL-NOW", "expected a phone number"),
        ("++420123456", "expected a phone number"),
        ("420+123456", "expected a phone number"),
        ("1234 ext. 5", "expected a phone number"),
        ("1" * 65, "expected a phone number"),
        (5550100, "expected a string, got an integer"),
    ],
)
def test_bad_phones_are_refused(sent: object, reason: str) -> None:
    refused(PHONE, sent, reason)


def test_enums() -> None:
    assert coerce(ENUM, "in progress", PRAGUE) == "in progress"
    refused(ENUM, "Open", "expected one of: open, won, in progress")
    refused(ENUM, 1, "expected one of")
    many = Property("code", Kind.ENUM, values=tuple(f"v{i}" for i in range(30)))
    with pytest.raises(ValueError, match=r"v19, \.\.\.$"):
        coerce(many, "v30", PRAGUE)


# Numbers and booleans.


@pytest.mark.parametrize("sent", [0, -1, 42, 2**63 - 1, -(2**63)])
def test_integers(sent: int) -> None:
    assert coerce(INTEGER, sent, PRAGUE) == sent
    assert render(INTEGER, sent, PRAGUE, shape="array") == sent


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (3.0, "expected an integer, got a fractional number"),  # strict: JSON 3.0 is a float
        (3.5, "expected an integer, got a fractional number"),
        (Decimal(3), "expected an integer, got a fractional number"),
        ("3", "expected an integer, got a string"),
        (True, "expected an integer, got a boolean"),
        (2**63, "signed 64-bit"),
        (-(2**63) - 1, "signed 64-bit"),
    ],
)
def test_bad_integers_are_refused(sent: object, reason: str) -> None:
    refused(INTEGER, sent, reason)


def test_booleans() -> None:
    assert coerce(BOOLEAN, value=True, zone=PRAGUE) is True
    assert coerce(BOOLEAN, value=False, zone=PRAGUE) is False
    assert render(BOOLEAN, value=False, zone=PRAGUE, shape="array") is False
    for sent, got in ((1, "an integer"), ("true", "a string"), (0.0, "a fractional number")):
        refused(BOOLEAN, sent, f"expected true or false, got {got}")


def test_references() -> None:
    assert coerce(REFERENCE, 7, PRAGUE) == 7
    assert render(REFERENCE, 7, PRAGUE, shape="array") == 7
    for sent in (0, -3, 2**63):
        refused(REFERENCE, sent, r"expected a record id \(a positive integer\)$")
    refused(REFERENCE, "7", "record id .*, got a string")
    refused(REFERENCE, value=True, reason="got a boolean")


# Exact decimals.


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("12.50", "12.50"),
        ("12.5", "12.50"),
        ("12", "12.00"),
        ("12.500000", "12.50"),  # trailing zeros are not extra places
        (" 7.1 ", "7.10"),
        (".5", "0.50"),
        ("5.", "5.00"),
        ("+3.25", "3.25"),
        ("-3.25", "-3.25"),
        ("-0.00", "0.00"),  # no negative zero
        ("0000012.3", "12.30"),
        (12, "12.00"),
        (-12, "-12.00"),
        (Decimal("12.5"), "12.50"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("1.2300E+1"), "12.30"),
        (0.1, "0.10"),  # a float with at most 15 significant digits is exact
        (12.5, "12.50"),
        (-1234567.89, "-1234567.89"),
        ("9999999999999999.99", "9999999999999999.99"),
        ("-9999999999999999.99", "-9999999999999999.99"),
    ],
)
def test_decimals_are_exact(sent: object, stored: str) -> None:
    value = coerce(DECIMAL, sent, PRAGUE)
    assert isinstance(value, Decimal)
    assert str(value) == stored
    assert render(DECIMAL, value, PRAGUE, shape="array") == stored


@pytest.mark.parametrize(
    ("prop", "sent", "reason"),
    [
        (DECIMAL, "12.555", "at most 2 decimal places"),
        (DECIMAL, "0.001", "at most 2 decimal places"),
        (DECIMAL, Decimal("12.501"), "at most 2 decimal places"),
        (DECIMAL, Decimal("1E-30"), "at most 2 decimal places"),
        (decimal(5, 1), "1.25", "at most 1 decimal place$"),
        (decimal(5, 0), "1.5", "at most 0 decimal places"),
        (DECIMAL, "10000000000000000", "at most 16 digits before the decimal point"),
        (DECIMAL, "-10000000000000000.00", "at most 16 digits before the decimal point"),
        (DECIMAL, 10**16, "at most 16 digits before the decimal point"),
        (DECIMAL, 10**400, "at most 16 digits before the decimal point"),
        (DECIMAL, Decimal("1E+16"), "at most 16 digits before the decimal point"),
        (DECIMAL, 1e300, "at most 16 digits before the decimal point"),
        (decimal(4, 2), "100", "at most 2 digits before the decimal point"),
        (decimal(2, 2), "1.00", "at most 0 digits before the decimal point"),
        (DECIMAL, 0.1 + 0.2, "not exact as a JSON number; send it as a string"),
        (DECIMAL, 1234567890123456.8, "not exact as a JSON number"),
        (DECIMAL, float("nan"), "finite"),
        (DECIMAL, float("inf"), "finite"),
        (DECIMAL, Decimal("NaN"), "finite"),
        (DECIMAL, Decimal("-Infinity"), "finite"),
        (DECIMAL, Decimal("sNaN"), "finite"),
        (DECIMAL, "NaN", "expected a decimal number like"),
        (DECIMAL, "Infinity", "expected a decimal number like"),
        (DECIMAL, "1e3", "expected a decimal number like"),
        (DECIMAL, "1_000", "expected a decimal number like"),
        (DECIMAL, "1,5", "expected a decimal number like"),
        (DECIMAL, "", "expected a decimal number like"),
        (DECIMAL, "٣", "expected a decimal number like"),  # an Arabic-Indic digit
        (DECIMAL, "1" * 65, "expected a decimal number like"),
        (DECIMAL, True, "expected a decimal number, got a boolean"),
        (DECIMAL, [1], "expected a single value, got a list"),
    ],
)
def test_bad_decimals_are_refused(prop: Property, sent: object, reason: str) -> None:
    refused(prop, sent, reason)


def test_decimal_arithmetic_stays_exact() -> None:
    a, b = coerce(DECIMAL, "0.1", PRAGUE), coerce(DECIMAL, "0.2", PRAGUE)
    assert isinstance(a, Decimal)
    assert isinstance(b, Decimal)
    assert a + b == coerce(DECIMAL, "0.3", PRAGUE)
    assert render(DECIMAL, a + b, PRAGUE, shape="array") == "0.30"


def test_decimals_at_the_largest_precision_and_scale() -> None:
    fine = decimal(18, 12)
    assert str(coerce(fine, "-999999.999999999999", PRAGUE)) == "-999999.999999999999"
    refused(fine, "0.0000000000001", "at most 12 decimal places")
    assert render(decimal(3, 3), Decimal("0.5"), PRAGUE, shape="array") == "0.500"
    assert render(decimal(3, 0), 7, PRAGUE, shape="array") == "7"


# Files.


def test_files_are_written_through_their_own_route() -> None:
    for sent in ({"name": "a.txt"}, "a.txt", None):
        refused(FILE, sent, "files are uploaded through /files/attachment")
    stored = {"name": "a.pdf", "size": 3, "content_type": "application/pdf", "sha256": "ab"}
    assert render(FILE, stored, PRAGUE, shape="array") is stored
    assert render(FILE, None, PRAGUE, shape="array") is None


# Multi-valued properties.


def test_multiple_values_are_lists_of_coerced_items() -> None:
    assert coerce(TAGS, ["a", "b", "a"], PRAGUE) == ["a", "b", "a"]
    assert coerce(TAGS, [], PRAGUE) == []
    assert coerce(TAGS, None, PRAGUE) == []
    assert coerce(DAYS, ["2026-05-22", "2026-05-23T01:00:00Z"], PRAGUE) == [
        dt.date(2026, 5, 22),
        dt.date(2026, 5, 23),
    ]
    assert coerce(TAGS, ["x"] * MAX_ITEMS, PRAGUE) == ["x"] * MAX_ITEMS


def test_multiple_references_are_deduplicated_in_order() -> None:
    assert coerce(LINKS, [3, 1, 3, 2, 1], PRAGUE) == [3, 1, 2]


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("a", "expected a list, got a string"),
        ({"a": 1}, "expected a list, got an object"),
        (["x"] * (MAX_ITEMS + 1), "at most 1000 items"),
        (["ok", "a" * 11], "item 1: at most 10 characters"),
        (["ok", None], "item 1: must not be null"),
        ([["nested"]], "item 0: expected a string, got a list"),
    ],
)
def test_bad_multiple_values_are_refused(sent: object, reason: str) -> None:
    refused(TAGS, sent, reason)


@pytest.mark.parametrize(
    ("stored", "array", "compact"),
    [
        ([], [], None),
        (None, [], None),
        (["a"], ["a"], "a"),
        (["a", "b"], ["a", "b"], ["a", "b"]),
    ],
)
def test_multiple_value_shapes(stored: object, array: object, compact: object) -> None:
    assert render(TAGS, stored, PRAGUE, shape="array") == array
    assert render(TAGS, stored, PRAGUE, shape="compact") == compact


def test_multiple_items_render_by_kind() -> None:
    stored = [dt.date(2026, 5, 22)]
    assert render(DAYS, stored, PRAGUE, shape="array") == ["2026-05-22"]
    assert render(DAYS, stored, PRAGUE, shape="compact") == "2026-05-22"
    assert render(LINKS, (4, 5), PRAGUE, shape="compact") == [4, 5]


def test_single_values_ignore_the_shape() -> None:
    for shape in SHAPES:
        assert render(STRING, "a", PRAGUE, shape=shape) == "a"
        assert render(STRING, None, PRAGUE, shape=shape) is None


@pytest.mark.parametrize(
    ("prop", "stored"),
    [
        (DECIMAL, 1.5),
        (INTEGER, True),
        (DATETIME, dt.date(2026, 5, 22)),
        (STRING, 5),
        (TAGS, "ab"),
        (FILE, "a.txt"),
    ],
)
def test_rendering_a_wrongly_stored_value_is_a_bug(prop: Property, stored: object) -> None:
    with pytest.raises(TypeError):
        render(prop, stored, PRAGUE, shape="array")


# Round trips: what we render, a client can send back unchanged.


@pytest.mark.parametrize(
    ("prop", "sent"),
    [
        (STRING, "Ärger"),
        (EMAIL, "Ann@Example.com"),
        (PHONE, "+420 603 123 456"),
        (INTEGER, -5),
        (DECIMAL, "-12.5"),
        (BOOLEAN, True),
        (DATETIME, "2026-05-22 09:00:00"),
        (DATETIME, "2026-10-25T02:30:00+01:00"),
        (DATE, "2026-05-22T23:30:00-04:00"),
        (MONTH, "2026-05"),
        (ENUM, "won"),
        (REFERENCE, 9),
        (TAGS, ["b", "a"]),
        (LINKS, [2, 2, 1]),
        (DAYS, ["2026-01-31"]),
        (STRING, None),
    ],
)
@pytest.mark.parametrize("zone", [PRAGUE, NEW_YORK, UTC])
def test_coerce_render_coerce_round_trips(prop: Property, sent: object, zone: ZoneInfo) -> None:
    stored = coerce(prop, sent, zone)
    shown = render(prop, stored, zone, shape="array")
    assert coerce(prop, shown, zone) == stored
    assert render(prop, coerce(prop, shown, zone), zone, shape="array") == shown


@settings(deadline=None, max_examples=300)
@given(
    precision=st.integers(1, 18),
    data=st.data(),
)
def test_decimal_round_trips(precision: int, data: st.DataObject) -> None:
    scale = data.draw(st.integers(0, min(precision, 12)))
    units = data.draw(st.integers(-(10**precision) + 1, 10**precision - 1))
    prop = decimal(precision, scale)
    text = f"{Decimal(units).scaleb(-scale):f}"
    stored = coerce(prop, text, UTC)
    assert isinstance(stored, Decimal)
    assert stored == Decimal(text)
    shown = render(prop, stored, UTC, shape="array")
    assert isinstance(shown, str)
    assert Decimal(shown) == Decimal(text)
    assert len(shown.partition(".")[2]) == scale
    assert coerce(prop, shown, UTC) == stored


@settings(deadline=None, max_examples=200)
@given(
    precision=st.integers(1, 18),
    data=st.data(),
)
def test_decimals_beyond_the_scale_are_refused_not_rounded(
    precision: int, data: st.DataObject
) -> None:
    scale = data.draw(st.integers(0, min(precision, 12)))
    units = data.draw(st.integers(1, 9))
    extra = Decimal(units).scaleb(-(scale + 1))
    with pytest.raises(ValueError, match=f"at most {scale} decimal place"):
        coerce(decimal(precision, scale), f"{extra:f}", UTC)


@settings(deadline=None, max_examples=200)
@given(value=st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_short_floats_are_taken_exactly(value: Decimal) -> None:
    assert coerce(DECIMAL, float(value), UTC) == value


ZONES = [
    PRAGUE,
    NEW_YORK,
    UTC,
    ZoneInfo("Asia/Kathmandu"),
    ZoneInfo("Pacific/Chatham"),
    ZoneInfo("Pacific/Kiritimati"),
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("America/St_Johns"),
]


@settings(deadline=None, max_examples=300)
@given(
    instant=st.datetimes(
        min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=dt.datetime(9998, 12, 31),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    zone=st.sampled_from(ZONES),
)
def test_datetime_round_trips(instant: dt.datetime, zone: ZoneInfo) -> None:
    shown = render(DATETIME, instant, zone, shape="array")
    assert isinstance(shown, str)
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    # RFC 3339 offsets are whole minutes: a local mean time with seconds is shown in UTC.
    expected = offset if offset.seconds % 60 == 0 else dt.timedelta(0)
    assert dt.datetime.fromisoformat(shown).utcoffset() == expected
    assert coerce(DATETIME, shown, zone) == instant
    for other in (UTC, NEW_YORK):
        assert coerce(DATETIME, shown, other) == instant


@settings(deadline=None, max_examples=200)
@given(
    wall=st.datetimes(
        min_value=dt.datetime(1970, 1, 1),  # noqa: DTZ001 - a naive wall time is the input
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
    ),
    zone=st.sampled_from(ZONES),
)
def test_naive_wall_times_come_back_as_written_or_are_refused(
    wall: dt.datetime, zone: ZoneInfo
) -> None:
    try:
        stored = coerce(DATETIME, wall.isoformat(), zone)
    except ValueError as exc:
        assert "DST" in str(exc)  # noqa: PT017 - the refusal must be the DST one
        return
    shown = render(DATETIME, stored, zone, shape="array")
    assert isinstance(shown, str)
    assert dt.datetime.fromisoformat(shown).replace(tzinfo=None) == wall


# Filter literals and URL text.


def test_literals_compare_one_element_of_a_multiple_property() -> None:
    assert coerce_literal(TAGS, "a", PRAGUE) == "a"
    assert coerce_literal(LINKS, 3, PRAGUE) == 3
    assert coerce_literal(DAYS, "2026-05-22T23:00:00Z", PRAGUE) == dt.date(2026, 5, 22)
    with pytest.raises(ValueError, match="expected a single value, got a list"):
        coerce_literal(TAGS, ["a"], PRAGUE)


def test_literals_follow_the_time_rules() -> None:
    assert coerce_literal(DATETIME, "2026-05-22T09:00:00", PRAGUE, op="gte") == STORED
    assert coerce_literal(DATETIME, "2026-05-22", PRAGUE, op="lt") == dt.datetime(
        2026, 5, 21, 22, 0, tzinfo=dt.UTC
    )
    now = dt.datetime(2026, 5, 22, 7, 0, tzinfo=dt.UTC)
    assert coerce_literal(DATETIME, now, PRAGUE) == now
    with pytest.raises(ValueError, match="does not exist"):
        coerce_literal(DATETIME, "2026-03-29 02:30", PRAGUE)


@pytest.mark.parametrize("op", ["contains", "startswith"])
def test_contains_and_startswith_take_any_string_on_text_kinds(op: str) -> None:
    assert coerce_literal(STRING, "a" * 50, PRAGUE, op=op) == "a" * 50
    assert coerce_literal(EMAIL, "@example", PRAGUE, op=op) == "@example"
    assert coerce_literal(ENUM, "prog", PRAGUE, op=op) == "prog"
    assert coerce_literal(TAGS, "x", PRAGUE, op=op) == "x"
    assert coerce_literal(PHONE, "+420 603", PRAGUE, op=op) == "+420603"
    assert coerce_literal(PHONE, "ext", PRAGUE, op=op) == "ext"
    with pytest.raises(ValueError, match="NUL"):
        coerce_literal(STRING, "a\x00", PRAGUE, op=op)
    with pytest.raises(ValueError, match="expected a string, got an integer"):
        coerce_literal(STRING, 5, PRAGUE, op=op)
    for prop in (INTEGER, DECIMAL, DATETIME, DATE, BOOLEAN, REFERENCE, FILE):
        with pytest.raises(ValueError, match=f"{op} applies only to text properties"):
            coerce_literal(prop, "1", PRAGUE, op=op)


def test_literal_null_and_files() -> None:
    assert coerce_literal(INTEGER, None, PRAGUE) is None
    assert coerce_literal(FILE, None, PRAGUE) is None
    with pytest.raises(ValueError, match="files can only be tested for null"):
        coerce_literal(FILE, "a.txt", PRAGUE)


def test_equality_literals_are_as_strict_as_input() -> None:
    with pytest.raises(ValueError, match="at most 2 decimal places"):
        coerce_literal(DECIMAL, "1.005", PRAGUE, op="eq")
    with pytest.raises(ValueError, match="expected one of"):
        coerce_literal(ENUM, "lost", PRAGUE, op="in")
    assert coerce_literal(EMAIL, "Ann@EXAMPLE.com", PRAGUE) == "Ann@example.com"


@pytest.mark.parametrize(
    ("prop", "text", "value"),
    [
        (INTEGER, "42", 42),
        (INTEGER, "-42", -42),
        (REFERENCE, "7", 7),
        (LINKS, "7", 7),
        (BOOLEAN, "true", True),
        (BOOLEAN, "false", False),
        (DECIMAL, "12.5", Decimal("12.50")),
        (DATETIME, "2026-05-22T09:00:00", STORED),
        (DATE, "2026-05-22", dt.date(2026, 5, 22)),
        (MONTH, "2026-05", dt.date(2026, 5, 1)),
        (EMAIL, "ann@EXAMPLE.com", "ann@example.com"),
        (PHONE, "+420 603 123 456", "+420603123456"),
        (STRING, "42", "42"),
    ],
)
def test_url_text_is_typed_by_the_property(prop: Property, text: str, value: object) -> None:
    assert coerce_text(prop, text, PRAGUE) == value


@pytest.mark.parametrize(
    ("prop", "text", "reason"),
    [
        (INTEGER, "4.0", "expected an integer$"),
        (INTEGER, "1" * 21, "expected an integer$"),
        (INTEGER, "9223372036854775808", "signed 64-bit"),
        (INTEGER, "٣", "expected an integer$"),  # an Arabic-Indic digit
        (REFERENCE, "0", "record id"),
        (REFERENCE, "abc", "record id"),
        (BOOLEAN, "1", "expected true or false"),
        (BOOLEAN, "True", "expected true or false"),
        (DECIMAL, "1.005", "at most 2 decimal places"),
        (FILE, "a.txt", "files can only be tested for null"),
    ],
)
def test_bad_url_text_is_refused(prop: Property, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        coerce_text(prop, text, PRAGUE)


# System fields.


def _type_def() -> TypeDef:
    return TypeDef(
        name="Deal",
        table="c_deal",
        properties=MappingProxyType(
            {"title": STRING, "secret": Property("secret", Kind.STRING, api=False)}
        ),
    )


def test_field_finds_properties_and_system_fields() -> None:
    deal = _type_def()
    assert field(deal, "title") is STRING
    assert field(deal, "nope") is None
    assert field(deal, "secret") is None
    assert field(deal, "secret", internal=True) is deal.properties["secret"]
    assert tuple(SYSTEM_PROPERTIES) == SYSTEM_FIELDS
    for name in SYSTEM_FIELDS:
        prop = field(deal, name)
        assert prop is not None
        assert prop.name == name
        assert prop.kind is SYSTEM_FIELD_KINDS[name]


def test_system_fields_coerce_and_render_like_properties() -> None:
    deal = _type_def()
    created_on, created_by, ident = (field(deal, n) for n in ("created_on", "created_by", "id"))
    assert created_on is not None
    assert created_by is not None
    assert ident is not None
    assert created_by.to == USERS
    assert coerce_literal(created_on, "2026-05-22T09:00:00", PRAGUE, op="gte") == STORED
    assert render(created_on, STORED, NEW_YORK, shape="array") == "2026-05-22T03:00:00-04:00"
    assert coerce_literal(created_by, 3, PRAGUE) == 3
    assert render(created_by, 3, PRAGUE, shape="compact") == 3
    assert coerce_text(ident, "12", PRAGUE) == 12
