"""The list route's parameters as the edge reads them (`rest.v1.list_params.read_pairs`):
exactly the values the route's declarations accept, else None (the route decides)."""

from __future__ import annotations

import pytest

from resolvers import collections as records
from resolvers import query_grammar
from resolvers.errors import Invalid
from rest.v1.list_params import CONTROL, MAX_CURSOR, ListParams, read_pairs


def test_control_names_are_the_routes() -> None:
    assert set(CONTROL) == {
        "_filter",
        "_order",
        "_limit",
        "_offset",
        "_after",
        "_fields",
        "_hide",
        "_count",
        "_noCache",
    }


def test_values_within_their_declarations_are_read() -> None:
    pairs = [
        ("_filter", "name = 'a'"),
        ("_limit", str(records.MAX_LIMIT)),
        ("_offset", "0"),
        ("_count", "1"),
        ("_noCache", "1"),
        ("_order", "-name"),
        ("industry", "retail"),
        ("industry", "public"),
    ]
    assert read_pairs(pairs) == ListParams(
        filter_="name = 'a'",
        limit=records.MAX_LIMIT,
        count=1,
        no_cache=1,
        order="-name",
        equals=(("industry", "retail"), ("industry", "public")),
    )
    assert read_pairs([]) == ListParams()


@pytest.mark.parametrize(
    "pairs",
    [
        [("_limit", "0")],
        [("_limit", str(records.MAX_LIMIT + 1))],
        [("_limit", "abc")],
        [("_limit", "+5")],
        [("_limit", "5"), ("_limit", "5")],
        [("_offset", str(records.MAX_OFFSET + 1))],
        [("_count", "2")],
        [("_noCache", "")],
        [("_filter", "x" * (query_grammar.MAX_TEXT + 1))],
        [("_after", "x" * (MAX_CURSOR + 1))],
    ],
)
def test_what_a_declaration_refuses_is_left_to_the_route(pairs: list[tuple[str, str]]) -> None:
    assert read_pairs(pairs) is None


def test_the_grammar_refuses_when_the_query_is_built() -> None:
    params = read_pairs([("_filter", "name ="), ("_after", "")])
    assert params is not None
    with pytest.raises(Invalid):
        params.list_query()
