"""Property values: client input to the Python value storage takes, and back to JSON.

One layer for REST, GraphQL and the filter compiler, so every transport types a value
the same way (DESIGN §3, §6). Every refusal is a `ValueError` whose text is the reason a
client sees; callers wrap it in `Invalid` with the property name as the field.

Decimals never pass through binary floating point: they render as strings with exactly
`scale` places, and a JSON number (a float) is taken only when it is exact (`_from_float`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Context, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from resolvers.tenant import Kind, Property, TypeDef
from resolvers.timezones import parse_instant

__all__ = [
    "MAX_ITEMS",
    "SYSTEM_FIELD_KINDS",
    "SYSTEM_PROPERTIES",
    "TEXT_KINDS",
    "USERS",
    "coerce",
    "coerce_literal",
    "coerce_text",
    "field",
    "render",
]

MAX_ITEMS = 1000
"""Most values one multi-valued property holds."""

USERS = "@users"
"""The `to` of `created_by`/`updated_by`: the gateway's users, never a tenant type name."""

TEXT_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.PHONE, Kind.ENUM})
"""Kinds stored as text: the ones `contains` and `startswith` apply to."""

SYSTEM_PROPERTIES: Mapping[str, Property] = MappingProxyType(
    {
        "id": Property("id", Kind.INTEGER, required=True, unique=True, indexed=True),
        "created_on": Property("created_on", Kind.DATETIME, required=True, indexed=True),
        "updated_on": Property("updated_on", Kind.DATETIME, required=True, indexed=True),
        "created_by": Property("created_by", Kind.REFERENCE, indexed=True, to=USERS),
        "updated_by": Property("updated_by", Kind.REFERENCE, to=USERS),
    }
)
"""Pseudo-properties for the system fields every record has."""

SYSTEM_FIELD_KINDS: Mapping[str, Kind] = MappingProxyType(
    {name: prop.kind for name, prop in SYSTEM_PROPERTIES.items()}
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_TEXT_INPUT = 64  # dates, months, phone numbers, decimal strings: longer is never valid
_FLOAT_DIGITS = 15  # DBL_DIG: every decimal of at most 15 significant digits survives a float
_DECIMAL_CONTEXT = Context(prec=60)  # room for 18 digits and 12 places; never rounds them

_BAD_CHAR = re.compile(r"[\x00\ud800-\udfff]")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_DATE_HEAD = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ].*)?", re.DOTALL)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_PHONE = re.compile(r"\+?[0-9 ().-]+")
_PHONE_SEPARATORS = re.compile(r"[ ().-]")
# A dot-atom local part (no quoted forms); any non-ASCII letter is allowed (RFC 6531).
_ATOM = r"[^\s\x00-\x1f\x7f@\"(),:;<>\[\]\\.]+"
_EMAIL_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_EMAIL = 254
_MAX_EMAIL_LOCAL = 64
_MIN_PHONE_DIGITS = 4
_MAX_PHONE = 32
_MAX_ENUM_LISTED = 20


def field(type_def: TypeDef, name: str, *, internal: bool = False) -> Property | None:
    """The property `name` of `type_def`, or a system pseudo-property; None if unknown.

    A property with `api = false` is unknown unless `internal` (tenant-file row scopes
    may name it; clients may not).
    """
    prop = type_def.properties.get(name)
    if prop is not None:
        return prop if prop.api or internal else None
    return SYSTEM_PROPERTIES.get(name)


def coerce(prop: Property, value: object, zone: ZoneInfo) -> object:
    """One JSON-decoded input value → the value storage takes for `prop`.

    Naive date-times are read in `zone`. None stays None (a multi-valued property gets
    an empty list); whether a value is required is the caller's business.
    """
    if prop.kind is Kind.FILE:
        raise ValueError(f"files are uploaded through /files/{prop.name}")
    if not prop.multiple:
        if isinstance(value, list | tuple):
            raise _wrong_type("a single value", value)
        return None if value is None else _coerce_one(prop, value, zone)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _wrong_type("a list", value)
    if len(value) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS} items")
    items: list[object] = []
    for position, item in enumerate(value):
        if item is None:
            raise ValueError(f"item {position}: must not be null")
        try:
            items.append(_coerce_one(prop, item, zone))
        except ValueError as exc:
            raise ValueError(f"item {position}: {exc}") from None
    if prop.kind is Kind.REFERENCE:
        return list(dict.fromkeys(items))
    return items


def coerce_literal(prop: Property, value: object, zone: ZoneInfo, *, op: str = "eq") -> object:
    """A filter literal compared with `prop` by `op` (eq, lt, in, contains, ...).

    Like `coerce` for one value, but a multi-valued property takes one element (filters
    compare elements), and `contains`/`startswith` on a text kind take any string.
    """
    if op in ("contains", "startswith"):
        if prop.kind not in TEXT_KINDS:
            raise ValueError(f"{op} applies only to text properties")
        text = _text(value)
        if prop.kind is Kind.PHONE and _PHONE.fullmatch(text):
            return _PHONE_SEPARATORS.sub("", text)
        return text
    if value is None:
        return None
    if prop.kind is Kind.FILE:
        raise ValueError("files can only be tested for null")
    if isinstance(value, list | tuple):
        raise _wrong_type("a single value", value)
    return _coerce_one(prop, value, zone)


def coerce_text(prop: Property, text: str, zone: ZoneInfo) -> object:
    """A value written as URL text (`?prop=value`, `/by/{property}/{value}`), one element.

    Numbers and booleans are read from their text; every other kind takes the string.
    """
    if prop.kind in (Kind.INTEGER, Kind.REFERENCE):
        if not _INTEGER_TEXT.fullmatch(text):
            raise ValueError(_expected(prop))
        return _coerce_one(prop, int(text), zone)
    if prop.kind is Kind.BOOLEAN:
        if text not in ("true", "false"):
            raise ValueError("expected true or false")
        return text == "true"
    return coerce_literal(prop, text, zone)


def render(
    prop: Property, value: object, zone: ZoneInfo, *, shape: Literal["array", "compact"]
) -> object:
    """A stored value → its JSON form; instants carry the offset of `zone`.

    With the tenant's `"compact"` shape a multi-valued property renders none as null and
    one value bare; with `"array"` it is always a list.
    """
    if not prop.multiple:
        return None if value is None else _render_one(prop, value, zone)
    if value is None:
        items: list[object] = []
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = [_render_one(prop, item, zone) for item in value]
    else:
        raise TypeError(f"{prop.name}: stored multiple value is {type(value).__name__}")
    if shape == "compact" and len(items) <= 1:
        return items[0] if items else None
    return items


Renderer = Callable[[object], object]


@functools.lru_cache(maxsize=4096)
def renderer(prop: Property, zone: ZoneInfo) -> Renderer:
    """`render` of one single-valued property for `zone`, as a function of the stored value.

    Lists render every row through these: each takes the plain stored type of its kind
    (`str`, `int`, `bool`, a UTC `datetime`, a `date`) straight to its JSON form, and
    hands anything else to `render`'s own path (which also raises the same errors).
    """

    def slow(value: object) -> object:
        return None if value is None else _render_one(prop, value, zone)

    match prop.kind:
        case Kind.STRING | Kind.TEXT | Kind.EMAIL | Kind.PHONE | Kind.ENUM:
            return lambda value: value if type(value) is str else slow(value)
        case Kind.INTEGER | Kind.REFERENCE:
            return lambda value: value if type(value) is int else slow(value)
        case Kind.BOOLEAN:
            return lambda value: value if type(value) is bool else slow(value)
        case Kind.DATE:
            return lambda value: value.isoformat() if type(value) is dt.date else slow(value)
        case Kind.DATETIME if zone.key == "UTC":
            return lambda value: (
                value.isoformat()
                if type(value) is dt.datetime and value.tzinfo is dt.UTC
                else slow(value)
            )
    return slow


def _coerce_one(prop: Property, value: object, zone: ZoneInfo) -> object:
    match prop.kind:
        case Kind.STRING | Kind.TEXT:
            return _string(value, prop.max_length)
        case Kind.EMAIL:
            return _email(value, prop.max_length)
        case Kind.PHONE:
            return _phone(value, prop.max_length)
        case Kind.INTEGER | Kind.REFERENCE:
            return _integer(value, prop)
        case Kind.DECIMAL:
            return _decimal(value, prop.precision, prop.scale)
        case Kind.BOOLEAN:
            if not isinstance(value, bool):
                raise _wrong_type("true or false", value)
            return value
        case Kind.DATETIME:
            return parse_instant(value, zone)
        case Kind.DATE:
            return _date(value)
        case Kind.MONTH:
            return _month(value)
        case Kind.ENUM:
            return _enum(value, prop.values)
        case Kind.FILE:
            raise ValueError(f"files are uploaded through /files/{prop.name}")
    raise AssertionError(prop.kind)  # pragma: no cover - the match is exhaustive


def _render_one(prop: Property, value: object, zone: ZoneInfo) -> object:
    match prop.kind:
        case Kind.DATETIME if isinstance(value, dt.datetime):
            instant = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
            local = instant.astimezone(zone)
            offset = local.utcoffset()
            if offset is not None and offset.seconds % 60:
                # Historical local mean times (e.g. Monrovia before 1972) have offsets with
                # seconds, which RFC 3339 cannot write: show the same instant in UTC.
                local = instant.astimezone(dt.UTC)
            return local.isoformat()
        case Kind.DATE if isinstance(value, dt.date):
            return value.isoformat()
        case Kind.MONTH if isinstance(value, dt.date):
            return f"{value.year:04d}-{value.month:02d}"
        case Kind.DECIMAL if isinstance(value, Decimal | int) and not isinstance(value, bool):
            return f"{_quantize(Decimal(value), prop.scale):f}"
        case Kind.INTEGER | Kind.REFERENCE if isinstance(value, int) and not isinstance(
            value, bool
        ):
            return value
        case Kind.BOOLEAN if isinstance(value, bool):
            return value
        case Kind.STRING | Kind.TEXT | Kind.EMAIL | Kind.PHONE | Kind.ENUM if isinstance(
            value, str
        ):
            return value
        case Kind.FILE if isinstance(value, dict):
            return value
    raise TypeError(f"{prop.name}: a stored {prop.kind.value} cannot be {type(value).__name__}")


def _describe(value: object) -> str:
    """The JSON name of a value's type, for "expected X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float | Decimal):
        return "a fractional number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong_type(expected: str, value: object) -> ValueError:
    """Bad input of the wrong JSON type: still a ValueError, reported like any bad value."""
    return ValueError(f"expected {expected}, got {_describe(value)}")


def _expected(prop: Property) -> str:
    if prop.kind is Kind.REFERENCE:
        return "expected a record id (a positive integer)"
    return "expected an integer"


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type("a string", value)
    bad = _BAD_CHAR.search(value)
    if bad is not None:
        if bad.group() == "\x00":
            raise ValueError("must not contain NUL characters")
        raise ValueError("must be valid Unicode (it holds a lone surrogate)")
    return value


def _string(value: object, max_length: int | None) -> str:
    text = _text(value)
    if max_length is not None and len(text) > max_length:
        raise ValueError(f"at most {max_length} characters")
    return text


def _email(value: object, max_length: int | None) -> str:
    text = _text(value)
    limit = min(_MAX_EMAIL, max_length or _MAX_EMAIL)
    if len(text) > limit:
        raise ValueError(f"at most {limit} characters")
    local, at, domain = text.rpartition("@")
    if not at or not _valid_local(local) or not _valid_domain(domain):
        raise ValueError("expected an e-mail address like name@example.com")
    return f"{local}@{domain.lower()}"


def _valid_local(local: str) -> bool:
    return len(local) <= _MAX_EMAIL_LOCAL and _EMAIL_LOCAL.fullmatch(local) is not None


def _valid_domain(domain: str) -> bool:
    """A host name of two or more labels; non-ASCII labels must have an IDNA form."""
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    return (
        len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _phone(value: object, max_length: int | None) -> str:
    text = _text(value).strip()
    if len(text) > _MAX_TEXT_INPUT or not _PHONE.fullmatch(text):
        raise ValueError(
            "expected a phone number: digits, an optional leading +, spaces, dashes, dots"
            " or parentheses"
        )
    number = _PHONE_SEPARATORS.sub("", text)
    limit = min(_MAX_PHONE, max_length or _MAX_PHONE)
    if len(number.lstrip("+")) < _MIN_PHONE_DIGITS or len(number) > limit:
        raise ValueError(
            f"a phone number has at least {_MIN_PHONE_DIGITS} digits and at most {limit} characters"
        )
    return number


def _integer(value: object, prop: Property) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(_expected(prop).removeprefix("expected "), value)
    if prop.kind is Kind.REFERENCE:
        if not 1 <= value <= _INT64_MAX:
            raise ValueError(_expected(prop))
    elif not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("must fit in a signed 64-bit integer")
    return value


def _decimal(value: object, precision: int, scale: int) -> Decimal:
    if isinstance(value, bool):
        raise _wrong_type("a decimal number", value)
    if isinstance(value, int):
        if abs(value) >= 10 ** (precision - scale):
            raise ValueError(f"at most {precision - scale} digits before the decimal point")
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = _from_float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_TEXT_INPUT or not _DECIMAL_TEXT.fullmatch(text):
            raise ValueError('expected a decimal number like "12.50"')
        number = Decimal(text)
    else:
        raise _wrong_type("a decimal number", value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    _check_fits(number, precision, scale)
    return _quantize(number, scale)


def _from_float(value: float) -> Decimal:
    """A float is exact when its shortest form has at most 15 significant digits.

    Such a decimal is the one the client wrote (each decimal of 15 digits or fewer maps
    to its own double and back); longer ones, like 0.1 + 0.2, may not be and are refused.
    """
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    number = Decimal(repr(value))
    if len(_significant(number)) > _FLOAT_DIGITS:
        raise ValueError('not exact as a JSON number; send it as a string, e.g. "0.30"')
    return number


def _significant(number: Decimal) -> str:
    digits = "".join(map(str, number.as_tuple().digits)).lstrip("0")
    return digits.rstrip("0")


def _check_fits(number: Decimal, precision: int, scale: int) -> None:
    """Refuse a value NUMERIC(precision, scale) cannot hold exactly; never rounds."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # noqa: S101 - finite, checked by the caller
    places = max(0, -exponent)
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    places = max(0, places - trailing) if any(digits) else 0
    if places > scale:
        unit = "place" if scale == 1 else "places"
        raise ValueError(f"at most {scale} decimal {unit}")
    whole = number.adjusted() + 1 if any(digits) else 0
    if whole > precision - scale:
        raise ValueError(f"at most {precision - scale} digits before the decimal point")


def _quantize(number: Decimal, scale: int) -> Decimal:
    if not number:
        number = abs(number)  # no "-0.00"
    try:
        return number.quantize(Decimal((0, (1,), -scale)), context=_DECIMAL_CONTEXT)
    except InvalidOperation:  # pragma: no cover - _check_fits bounds every stored value
        raise ValueError("cannot be stored exactly") from None


def _date(value: object) -> dt.date:
    """A calendar day; a date-time keeps its date as written, never shifted to a zone."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) <= _MAX_TEXT_INPUT:
        text = value.strip()
        head = _DATE_HEAD.fullmatch(text)
        if head is not None:
            try:
                if len(text) > len("YYYY-MM-DD"):
                    return dt.datetime.fromisoformat(text).date()
                return dt.date(int(head[1]), int(head[2]), int(head[3]))
            except ValueError:
                pass
    raise ValueError("expected a date YYYY-MM-DD")


def _month(value: object) -> dt.date:
    """A calendar month as its first day; a date or date-time keeps its year and month."""
    if isinstance(value, str) and len(value) <= _MAX_TEXT_INPUT:
        month = _MONTH.fullmatch(value.strip())
        if month is not None:
            if 1 <= int(month[2]) <= 12 and int(month[1]) >= 1:
                return dt.date(int(month[1]), int(month[2]), 1)
            raise ValueError("expected a month YYYY-MM")
    try:
        return _date(value).replace(day=1)
    except ValueError:
        raise ValueError("expected a month YYYY-MM") from None


def _enum(value: object, values: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in values:
        return value
    listed = ", ".join(values[:_MAX_ENUM_LISTED])
    more = ", ..." if len(values) > _MAX_ENUM_LISTED else ""
    raise ValueError(f"expected one of: {listed}{more}")
