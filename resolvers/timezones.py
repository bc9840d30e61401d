"""IANA time zones: validating names from untrusted input, and the display-zone rule."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["display_zone", "is_zone", "parse_instant"]

_MAX_INSTANT = 64
# Instants every display zone can render: near year 1 or 9999 `astimezone` overflows in
# some zones, and a stored value there would break every later read.
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)

# IANA zone keys are letters, digits, "_", "-", "+" in "/"-separated parts; anything else
# (absolute or relative paths, NUL bytes) never reaches the filesystem.
_ZONE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
_MAX_ZONE_KEY = 64
# Files of the system zoneinfo tree that ZoneInfo loads but that are not IANA zones: the
# leap-second and POSIX copies, and aliases whose meaning depends on the host.
_NOT_ZONE_DIRS = frozenset({"posix", "right"})
_NOT_ZONES = frozenset({"localtime", "posixrules"})


def is_zone(name: str) -> bool:
    """Whether `name` is an IANA zone; loads that one zone (ZoneInfo caches it), never lists all."""
    if (
        len(name) > _MAX_ZONE_KEY
        or not _ZONE_KEY.fullmatch(name)
        or name in _NOT_ZONES
        or name.partition("/")[0] in _NOT_ZONE_DIRS
    ):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a file that is not TZif data; OSError: a directory such as "Europe".
        return False
    return True


def display_zone(user_zone: str | None, tenant_zone: str) -> ZoneInfo:
    """The zone a user sees times in: their own, else the tenant's default, else UTC."""
    for name in (user_zone, tenant_zone):
        if name and is_zone(name):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def parse_instant(value: object, zone: ZoneInfo) -> dt.datetime:
    """An ISO 8601 instant; a naive one is read in `zone` (DESIGN §6). Returns aware UTC.

    A naive time that does not exist in `zone` (skipped by a DST change) or exists twice
    (repeated by one) is refused rather than guessed, and so is one outside 1900 to 9998.
    """
    try:
        instant = _parse_instant(value, zone)
    except OverflowError:
        instant = None
    if instant is None or not EARLIEST <= instant < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y} and {LATEST:%Y}")
    return instant


def _parse_instant(value: object, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= _MAX_INSTANT:
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("expected an ISO 8601 date-time") from None
    else:
        raise ValueError("expected an ISO 8601 date-time")
    if parsed.tzinfo is not None:
        return parsed.astimezone(dt.UTC)
    earlier = parsed.replace(tzinfo=zone, fold=0)
    if earlier.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != parsed:
        raise ValueError(f"{value} does not exist in {zone.key} (a DST change); add an offset")
    if earlier.utcoffset() != parsed.replace(tzinfo=zone, fold=1).utcoffset():
        raise ValueError(f"{value} happens twice in {zone.key} (a DST change); add an offset")
    return earlier.astimezone(dt.UTC)
