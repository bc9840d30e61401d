"""The list route's query parameters and the one mapping from them to a `ListQuery`.

`GET /api/v1/collections/{T}?...` is read in two places: by its Litestar route
(`rest.v1.collections`), which declares the parameters below (`DECLARED`) so Litestar
validates and documents them, and by the ASGI edge (`rest.hot_reads`), which reads the
query string itself (`read_pairs`) and takes only values these declarations accept.
Both end in `ListParams.list_query`, so the two cannot read a request differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, get_args

from litestar.params import QueryParameter

from resolvers import collections as records
from resolvers import query_grammar

__all__ = ["CONTROL", "DECLARED", "MAX_CURSOR", "ListParams", "equalities", "read_pairs"]

MAX_CURSOR = 4096
"""The longest `_after` taken (cursors are far shorter)."""


def _query(python_type: Any, name: str, description: str, **constraints: Any) -> Any:
    return Annotated[python_type, QueryParameter(name=name, description=description, **constraints)]


DECLARED: dict[str, Any] = {
    "filter_": _query(
        str,
        "_filter",
        "Query grammar, e.g. `status in ('open','won') and amount >= 10`.",
        max_length=query_grammar.MAX_TEXT,
    ),
    "order": _query(
        str, "_order", "Comma-separated fields, `-` for descending, e.g. `name,-created_on`."
    ),
    "limit": _query(
        int,
        "_limit",
        f"Page size, at most {records.MAX_LIMIT}.",
        ge=1,
        le=records.MAX_LIMIT,
    ),
    "offset": _query(
        int, "_offset", "Rows to skip (or use `_after`).", ge=0, le=records.MAX_OFFSET
    ),
    "after": _query(
        str, "_after", "The `meta.next` cursor of the previous page.", max_length=MAX_CURSOR
    ),
    "fields": _query(str, "_fields", "Comma-separated fields to show (id always shown)."),
    "hide": _query(str, "_hide", "Comma-separated fields to hide."),
    "count": _query(Literal[0, 1], "_count", "1 adds `meta.total`, the exact count."),
    "no_cache": _query(Literal[0, 1], "_noCache", "1 bypasses the response cache."),
}
"""The typed control parameters, by handler keyword (the gets take `no_cache` too)."""

CONTROL = {get_args(declared)[1].name: keyword for keyword, declared in DECLARED.items()}
"""Control parameter name (`_filter`) → keyword (`filter_`); other names are equalities."""


@dataclasses.dataclass(frozen=True, slots=True)
class ListParams:
    """The list route's query parameters, once within their declared bounds."""

    filter_: str = ""
    order: str = ""
    limit: int = records.DEFAULT_LIMIT
    offset: int = 0
    after: str = ""
    fields: str = ""
    hide: str = ""
    count: int = 0
    no_cache: int = 0
    equals: tuple[tuple[str, str], ...] = ()

    def list_query(self) -> records.ListQuery:
        """The resolvers' request value; raises `Invalid` for what the grammar refuses."""
        return records.list_query(
            filter=self.filter_,
            order=self.order,
            limit=self.limit,
            offset=self.offset,
            after=self.after or None,
            fields=self.fields,
            hide=self.hide,
            count=self.count,
            equals=self.equals,
        )


def equalities(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The `prop=value` filters among a query string's pairs."""
    return tuple((name, value) for name, value in pairs if name not in CONTROL)


def read_pairs(pairs: Sequence[tuple[str, str]]) -> ListParams | None:
    """The parameters of a decoded query string, or None where the route must decide: a
    control parameter given twice or a value its declaration would not take."""
    values: dict[str, Any] = {}
    for name, text in pairs:
        keyword = CONTROL.get(name)
        if keyword is None:
            continue
        value = _accepted(text, DECLARED[keyword])
        if value is None or keyword in values:
            return None
        values[keyword] = value
    return ListParams(**values, equals=equalities(pairs))


def _accepted(text: str, declared: Any) -> int | str | None:
    """`text` as its declaration takes it: a string within `max_length`, plain digits
    within `ge`/`le` or among a `Literal`'s values; otherwise None."""
    python_type, rule = get_args(declared)
    if python_type is str:
        return text if rule.max_length is None or len(text) <= rule.max_length else None
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    value = int(text)
    if allowed := get_args(python_type):
        return value if value in allowed else None
    return value if rule.ge <= value <= rule.le else None
