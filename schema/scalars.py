"""GraphQL scalars and the fixed filter inputs: values exactly as REST renders and reads them.

Outputs are the strings and numbers of the REST JSON body, passed through unchanged, so a
GraphQL result compares 1:1 with REST's. Inputs stay as the resolvers read them: instants,
dates and months as text (the resolvers apply the time rules of DESIGN §6), decimals as
exact `decimal.Decimal`s (never a float), ids and integers as 64-bit ints (GraphQL's `Int`
is 32-bit).
"""

from __future__ import annotations

import decimal
import re
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

__all__ = [
    "SCALARS",
    "BigInt",
    "BigIntFilter",
    "BooleanFilter",
    "Date",
    "DateFilter",
    "DateTime",
    "DateTimeFilter",
    "Decimal",
    "DecimalFilter",
    "File",
    "FileFilter",
    "Month",
    "MonthFilter",
    "StringFilter",
    "passed",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_TEXT = 64  # resolvers.values: a longer date, month, instant or decimal is never valid

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,19}")

BigInt = NewType("BigInt", int)
Decimal = NewType("Decimal", str)
DateTime = NewType("DateTime", str)
Date = NewType("Date", str)
Month = NewType("Month", str)


def _big_int(value: object) -> int:
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected a whole number")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("must fit in a signed 64-bit integer")
    return value


def _decimal(value: object) -> decimal.Decimal:
    """Exact: text or an integer; a float only as the shortest text that names it."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError('expected a decimal number as text, like "12.50"')
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if len(text) > _MAX_TEXT:
        raise ValueError("too long for a decimal")
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError('expected a decimal number as text, like "12.50"') from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise ValueError(f"expected text of at most {_MAX_TEXT} characters")
    return value


def passed(value: object) -> object:
    """The serialization of scalars whose values are already their JSON form."""
    return value


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A signed 64-bit integer (ids and integer properties).",
        serialize=passed,
        parse_value=_big_int,
    ),
    Decimal: strawberry.scalar(
        name="Decimal",
        description='An exact decimal as text, e.g. "12.50" (with the property\'s scale).',
        serialize=passed,
        parse_value=_decimal,
    ),
    DateTime: strawberry.scalar(
        name="DateTime",
        description="ISO 8601 with the offset of the caller's zone; an input without an "
        "offset is read in the caller's zone.",
        serialize=passed,
        parse_value=_text,
    ),
    Date: strawberry.scalar(
        name="Date", description="A calendar day, YYYY-MM-DD.", serialize=passed, parse_value=_text
    ),
    Month: strawberry.scalar(
        name="Month", description="A calendar month, YYYY-MM.", serialize=passed, parse_value=_text
    ),
}
"""`StrawberryConfig.scalar_map`."""


@strawberry.type(description="A stored file; `url` streams it back.")
class File:
    name: str
    size: BigInt
    content_type: str
    sha256: str
    url: str


# The filters of the query grammar's JSON form (DESIGN §5), one per kind of value. `in` is
# a Python keyword: its attribute is `in_`, its GraphQL name `in`.

_IN = "Any of these values."
_ISNULL = "true: no value; false: a value."


@strawberry.input(description="Conditions on an integer or an id.")
class BigIntFilter:
    eq: BigInt | None = strawberry.UNSET
    ne: BigInt | None = strawberry.UNSET
    lt: BigInt | None = strawberry.UNSET
    lte: BigInt | None = strawberry.UNSET
    gt: BigInt | None = strawberry.UNSET
    gte: BigInt | None = strawberry.UNSET
    in_: list[BigInt] | None = strawberry.field(
        name="in", default=strawberry.UNSET, description=_IN
    )
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description="Conditions on a decimal.")
class DecimalFilter:
    eq: Decimal | None = strawberry.UNSET
    ne: Decimal | None = strawberry.UNSET
    lt: Decimal | None = strawberry.UNSET
    lte: Decimal | None = strawberry.UNSET
    gt: Decimal | None = strawberry.UNSET
    gte: Decimal | None = strawberry.UNSET
    in_: list[Decimal] | None = strawberry.field(
        name="in", default=strawberry.UNSET, description=_IN
    )
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description="Conditions on text; `contains` and `startswith` ignore case.")
class StringFilter:
    eq: str | None = strawberry.UNSET
    ne: str | None = strawberry.UNSET
    lt: str | None = strawberry.UNSET
    lte: str | None = strawberry.UNSET
    gt: str | None = strawberry.UNSET
    gte: str | None = strawberry.UNSET
    contains: str | None = strawberry.UNSET
    startswith: str | None = strawberry.UNSET
    in_: list[str] | None = strawberry.field(name="in", default=strawberry.UNSET, description=_IN)
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description="Conditions on a boolean.")
class BooleanFilter:
    eq: bool | None = strawberry.UNSET
    ne: bool | None = strawberry.UNSET
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description='Conditions on an instant; "$now" is the current one.')
class DateTimeFilter:
    eq: DateTime | None = strawberry.UNSET
    ne: DateTime | None = strawberry.UNSET
    lt: DateTime | None = strawberry.UNSET
    lte: DateTime | None = strawberry.UNSET
    gt: DateTime | None = strawberry.UNSET
    gte: DateTime | None = strawberry.UNSET
    in_: list[DateTime] | None = strawberry.field(
        name="in", default=strawberry.UNSET, description=_IN
    )
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description='Conditions on a date; "$now" is the caller\'s today.')
class DateFilter:
    eq: Date | None = strawberry.UNSET
    ne: Date | None = strawberry.UNSET
    lt: Date | None = strawberry.UNSET
    lte: Date | None = strawberry.UNSET
    gt: Date | None = strawberry.UNSET
    gte: Date | None = strawberry.UNSET
    in_: list[Date] | None = strawberry.field(name="in", default=strawberry.UNSET, description=_IN)
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description='Conditions on a month; "$now" is the caller\'s current one.')
class MonthFilter:
    eq: Month | None = strawberry.UNSET
    ne: Month | None = strawberry.UNSET
    lt: Month | None = strawberry.UNSET
    lte: Month | None = strawberry.UNSET
    gt: Month | None = strawberry.UNSET
    gte: Month | None = strawberry.UNSET
    in_: list[Month] | None = strawberry.field(name="in", default=strawberry.UNSET, description=_IN)
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)


@strawberry.input(description="Files can only be tested for presence.")
class FileFilter:
    isnull: bool | None = strawberry.field(default=strawberry.UNSET, description=_ISNULL)
