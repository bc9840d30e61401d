"""DESIGN §6 for instants: offsets are instants, naive input is read in the display zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from resolvers.timezones import display_zone, parse_instant

PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")
STORED = dt.datetime(2026, 5, 22, 7, 0, tzinfo=dt.UTC)


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
    instant = parse_instant(sent, PRAGUE)
    assert instant == STORED
    assert instant.astimezone(PRAGUE).isoformat() == "2026-05-22T09:00:00+02:00"
    assert instant.astimezone(NEW_YORK).isoformat() == "2026-05-22T03:00:00-04:00"


def test_naive_input_follows_the_zone() -> None:
    assert parse_instant("2026-05-22 09:00:00", NEW_YORK) == dt.datetime(
        2026, 5, 22, 13, 0, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("2026-03-29 02:30:00", "does not exist"),  # Prague springs forward 02:00 -> 03:00
        ("2026-10-25 02:30:00", "happens twice"),  # and falls back 03:00 -> 02:00
    ],
)
def test_dst_gaps_and_overlaps_are_refused(sent: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_instant(sent, PRAGUE)
    # With an offset the same wall time is unambiguous.
    assert parse_instant(sent + "+01:00", PRAGUE).tzinfo is not None


@pytest.mark.parametrize("bad", ["", "tomorrow", "2026-13-01", 20260522, None, "9" * 100])
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant(bad, PRAGUE)


def test_display_zone_falls_back_to_the_tenant_then_utc() -> None:
    assert display_zone("America/New_York", "Europe/Prague").key == "America/New_York"
    assert display_zone(None, "Europe/Prague").key == "Europe/Prague"
    assert display_zone("Not/AZone", "Europe/Prague").key == "Europe/Prague"
    assert display_zone(None, "").key == "UTC"


@pytest.mark.parametrize(
    "far", ["0001-01-01T00:00:00", "9999-12-31T23:59:59+00:00", "1899-12-31T00:00Z"]
)
def test_instants_outside_the_renderable_range_are_refused(far: str) -> None:
    with pytest.raises(ValueError, match="between 1900 and 9999"):
        parse_instant(far, PRAGUE)
