"""DESIGN §5: both spellings of the filter grammar parse to one tree, and refuse precisely."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.errors import FieldError, Invalid
from resolvers.query_grammar import (
    MAX_DEPTH,
    MAX_IN,
    MAX_NODES,
    MAX_TEXT,
    And,
    Compare,
    In,
    IsNull,
    Node,
    Not,
    Op,
    Or,
    Path,
    Value,
    parse_filter,
    parse_json,
    parse_text,
    paths,
    strip_locations,
)

# --- building expected trees (locations empty) ----------------------------------------


def p(dotted: str) -> Path:
    return Path(tuple(dotted.split(".")), "")


def num(written: str | int) -> Value:
    return Value("number", Decimal(written), "")


def txt(raw: str) -> Value:
    return Value("text", raw, "")


def cmp(path: str, op: Op, value: Value) -> Compare:
    return Compare(p(path), op, value)


def eq(path: str, number: int) -> Compare:
    return cmp(path, "eq", num(number))


def text_tree(text: str) -> Node:
    return strip_locations(parse_text(text))


def json_tree(document: object) -> Node:
    return strip_locations(parse_json(document))


def refusal(error: pytest.ExceptionInfo[Invalid]) -> FieldError:
    assert error.value.detail == "the filter is not valid"
    [field_error] = error.value.errors
    return field_error


# --- precedence, grouping, flattening -------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    assert text_tree("a = 1 or b = 2 and c = 3") == Or((eq("a", 1), And((eq("b", 2), eq("c", 3)))))
    assert text_tree("a = 1 and b = 2 or c = 3 and d = 4") == Or(
        (And((eq("a", 1), eq("b", 2))), And((eq("c", 3), eq("d", 4))))
    )


def test_parentheses_group() -> None:
    assert text_tree("(a = 1 or b = 2) and c = 3") == And(
        (Or((eq("a", 1), eq("b", 2))), eq("c", 3))
    )
    assert text_tree("((a = 1))") == eq("a", 1)


def test_not_takes_one_term() -> None:
    assert text_tree("not a = 1 and b = 2") == And((Not(eq("a", 1)), eq("b", 2)))
    assert text_tree("not (a = 1 and b = 2)") == Not(And((eq("a", 1), eq("b", 2))))
    assert text_tree("not not a = 1") == Not(Not(eq("a", 1)))
    assert text_tree("a = 1 or not b is null") == Or((eq("a", 1), Not(IsNull(p("b"), null=True))))


def test_same_kind_nesting_is_flattened() -> None:
    three = And((eq("a", 1), eq("b", 2), eq("c", 3)))
    assert text_tree("a = 1 and b = 2 and c = 3") == three
    assert text_tree("a = 1 and (b = 2 and c = 3)") == three
    assert json_tree(
        {"and": [{"a": {"eq": 1}}, {"and": [{"b": {"eq": 2}}, {"c": {"eq": 3}}]}]}
    ) == (three)
    assert text_tree("(a = 1 or b = 2) or c = 3") == Or((eq("a", 1), eq("b", 2), eq("c", 3)))
    assert json_tree({"or": [{"a": {"eq": 1}}]}) == eq("a", 1)


def test_json_node_with_several_keys_is_their_and() -> None:
    document = {"status": {"eq": "open"}, "or": [{"a": {"eq": 1}}, {"b": {"eq": 2}}]}
    assert json_tree(document) == And(
        (cmp("status", "eq", txt("open")), Or((eq("a", 1), eq("b", 2))))
    )
    assert json_tree({"amount": {"gte": 1, "lt": 9}}) == And(
        (cmp("amount", "gte", num(1)), cmp("amount", "lt", num(9)))
    )
    assert json_tree({"a": {"eq": 1}, "b": {"eq": 2}, "not": {"c": {"eq": 3}}}) == And(
        (eq("a", 1), eq("b", 2), Not(eq("c", 3)))
    )


# --- operators, values, paths, quoting ------------------------------------------------

OPERATORS: list[tuple[str, Op]] = [
    ("=", "eq"),
    ("!=", "ne"),
    ("<", "lt"),
    ("<=", "lte"),
    (">", "gt"),
    (">=", "gte"),
    ("~", "contains"),
    ("^=", "startswith"),
]


@pytest.mark.parametrize(("symbol", "op"), OPERATORS)
def test_every_operator_in_both_forms(symbol: str, op: Op) -> None:
    expected = cmp("name", op, txt("x"))
    assert text_tree(f"name {symbol} 'x'") == expected
    assert text_tree(f"name{symbol}'x'") == expected
    assert json_tree({"name": {op: "x"}}) == expected


def test_in_and_is_null_in_both_forms() -> None:
    listed = In(p("status"), (txt("open"), txt("won"), num(3)))
    assert text_tree("status in ('open', 'won', 3)") == listed
    assert json_tree({"status": {"in": ["open", "won", 3]}}) == listed
    assert text_tree("status in ('open')") == In(p("status"), (txt("open"),))
    assert text_tree("owner is null") == IsNull(p("owner"), null=True)
    assert text_tree("owner is not null") == IsNull(p("owner"), null=False)
    assert json_tree({"owner": {"isnull": True}}) == IsNull(p("owner"), null=True)
    assert json_tree({"owner": {"isnull": False}}) == IsNull(p("owner"), null=False)


@pytest.mark.parametrize(
    ("written", "sent", "expected"),
    [
        ("'open'", "open", txt("open")),
        ("''", "", txt("")),
        ("42", 42, num(42)),
        ("-7", -7, num(-7)),
        ("+7", 7, num(7)),
        ("0.1", 0.1, num("0.1")),
        ("-1234.5678", -1234.5678, num("-1234.5678")),
        (
            "123456789012345678901234567890",
            123456789012345678901234567890,
            num(123456789012345678901234567890),
        ),
        ("true", True, Value("bool", raw=True, at="")),
        ("FALSE", False, Value("bool", raw=False, at="")),
        ("$me", "$me", Value("me", None, "")),
        ("$NOW", "$now", Value("now", None, "")),
        ("2026-05", "2026-05", txt("2026-05")),
        ("2026-05-22", "2026-05-22", txt("2026-05-22")),
        ("2026-05-22T09:00:00", "2026-05-22T09:00:00", txt("2026-05-22T09:00:00")),
        ("2026-05-22T09:00:00Z", "2026-05-22T09:00:00Z", txt("2026-05-22T09:00:00Z")),
        (
            "2026-05-22T09:00:00.123+02:00",
            "2026-05-22T09:00:00.123+02:00",
            txt("2026-05-22T09:00:00.123+02:00"),
        ),
        ("'2026-05-22 09:00:00'", "2026-05-22 09:00:00", txt("2026-05-22 09:00:00")),
    ],
)
def test_every_value_kind_in_both_forms(written: str, sent: object, expected: Value) -> None:
    assert text_tree(f"x = {written}") == cmp("x", "eq", expected)
    assert json_tree({"x": {"eq": sent}}) == cmp("x", "eq", expected)


def test_numbers_are_exact_decimals() -> None:
    tree = parse_text("x = 0.1")
    assert isinstance(tree, Compare)
    assert tree.value.raw == Decimal("0.1")
    assert type(tree.value.raw) is Decimal
    from_json = parse_json({"x": {"eq": 0.1}})
    assert isinstance(from_json, Compare)
    assert from_json.value.raw == Decimal("0.1")
    assert parse_json({"x": {"eq": Decimal("2.50")}}) == Compare(
        Path(("x",), "x"), "eq", Value("number", Decimal("2.50"), "x.eq")
    )


def test_quoting() -> None:
    assert text_tree("name = 'it''s'") == cmp("name", "eq", txt("it's"))
    assert text_tree("name = ''''") == cmp("name", "eq", txt("'"))
    assert text_tree("name = 'a = 1 and (b'") == cmp("name", "eq", txt("a = 1 and (b"))
    assert text_tree("name = 'Žluťoučký kůň'") == cmp("name", "eq", txt("Žluťoučký kůň"))
    assert text_tree("name = '$me'") == cmp("name", "eq", txt("$me"))


def test_paths_through_references() -> None:
    assert text_tree("customer.owner.login = 'eva'") == cmp(
        "customer.owner.login", "eq", txt("eva")
    )
    assert json_tree({"customer.owner.login": {"eq": "eva"}}) == cmp(
        "customer.owner.login", "eq", txt("eva")
    )
    assert text_tree("_x9.in = 1") == eq("_x9.in", 1)


def test_keywords_are_case_insensitive_and_whitespace_is_free() -> None:
    expected = Or((Not(IsNull(p("a"), null=False)), And((In(p("b"), (num(1),)), eq("c", 2)))))
    assert text_tree("NOT a IS NOT NULL Or b In (1) AnD c = 2") == expected
    assert text_tree("not a is not null\n\tor b in(1)and c=2") == expected
    assert text_tree("  (  a=1  )  ") == eq("a", 1)


def test_the_design_example_in_both_forms() -> None:
    text = "created_on >= 2026-05-22T09:00:00+02:00 and status in ('open','won')"
    document = {
        "and": [
            {"created_on": {"gte": "2026-05-22T09:00:00+02:00"}},
            {"status": {"in": ["open", "won"]}},
        ]
    }
    expected = And(
        (
            cmp("created_on", "gte", txt("2026-05-22T09:00:00+02:00")),
            In(p("status"), (txt("open"), txt("won"))),
        )
    )
    assert text_tree(text) == expected
    assert json_tree(document) == expected
    assert text_tree("status in ('open','won') and amount >= 10") == json_tree(
        {"and": [{"status": {"in": ["open", "won"]}}, {"amount": {"gte": 10}}]}
    )


def test_locations_are_recorded() -> None:
    tree = parse_text("created_on >= 2026-05-22 and status in ('open','won')")
    assert tree == And(
        (
            Compare(
                Path(("created_on",), "position 1"),
                "gte",
                Value("text", "2026-05-22", "position 15"),
            ),
            In(
                Path(("status",), "position 30"),
                (Value("text", "open", "position 41"), Value("text", "won", "position 48")),
            ),
        )
    )
    tree = parse_json({"or": [{"a": {"eq": 1}}, {"not": {"b.c": {"in": [1, "x"]}}}]})
    assert tree == Or(
        (
            Compare(Path(("a",), "or[0].a"), "eq", Value("number", Decimal(1), "or[0].a.eq")),
            Not(
                In(
                    Path(("b", "c"), "or[1].not.b.c"),
                    (
                        Value("number", Decimal(1), "or[1].not.b.c.in[0]"),
                        Value("text", "x", "or[1].not.b.c.in[1]"),
                    ),
                )
            ),
        )
    )


def test_paths_lists_every_path_in_order() -> None:
    tree = parse_text("a = 1 and not (b.c is null or d in (1, 2)) or e ~ 'x'")
    assert [path.parts for path in paths(tree)] == [("a",), ("b", "c"), ("d",), ("e",)]
    assert [path.at for path in paths(tree)] == [
        "position 1",
        "position 16",
        "position 31",
        "position 47",
    ]


def test_parse_filter_dispatches_on_the_spelling() -> None:
    assert strip_locations(parse_filter("a = 1", field="where")) == eq("a", 1)
    assert strip_locations(parse_filter({"a": {"eq": 1}}, field="where")) == eq("a", 1)
    for wrong in (None, 5, ["a = 1"], b"a = 1"):
        with pytest.raises(Invalid) as error:
            parse_filter(wrong, field="where")
        assert refusal(error) == FieldError("where", "expected a text filter or a JSON object")


def test_the_field_name_is_used_in_errors() -> None:
    with pytest.raises(Invalid) as error:
        parse_text("a = ", field="roles scope of deal")
    assert refusal(error).field == "roles scope of deal (position 5)"
    with pytest.raises(Invalid) as error:
        parse_filter({"a": {"eq": None}}, field="body.filter")
    assert refusal(error).field == "body.filter (a.eq)"


# --- refusals with exact positions ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", 1, "unexpected end: expected a condition"),
        ("a = 1 and", 10, "unexpected end: expected a condition"),
        ("a =", 4, "unexpected end: expected a value"),
        ("status", 7, "unexpected end: expected an operator"),
        ("a == 1", 3, "unknown operator `==`"),
        ("a <> 1", 3, "unknown operator `<>`"),
        ("name = 'open", 8, "unterminated text"),
        ("'open' = name", 1, "expected a property name, found the value `'open'`"),
        ("a = 1 and 5 > b", 11, "expected a property name, found the value `5`"),
        ("null is null", 1, "expected a property name, found the value `null`"),
        ("(a = 1 or b = 2", 1, "unbalanced parentheses: this `(` is never closed"),
        ("a = 1) or (b = 2", 6, "unbalanced parentheses: this `)` has no `(`"),
        ("a in (1, 2", 6, "unbalanced parentheses"),
        ("a in ()", 7, "empty `in ()`"),
        ("a = null", 5, "use `is null`"),
        ("a != NULL", 6, "use `is not null`"),
        ("a in (1, null)", 10, "use `is null`"),
        ("a = open", 5, "quote text as 'open'"),
        ('a = "open"', 5, "single quotes"),
        ("a = $you", 5, "unknown parameter `$you`"),
        ("a = 2026-13-01", 5, "not a valid ISO month, date"),
        ("a = 2026-13", 5, "not a valid ISO month, date"),
        ("a = 2026-05-22 09:00:00", 5, "need quotes"),
        ("a = 1 b = 2", 7, "expected `and`, `or` or the end, found `b`"),
        ("(a = 1 b = 2)", 8, "expected `and`, `or` or `)`, found `b`"),
        ("a is 1", 6, "expected `null` or `not null` after `is`"),
        ("a is not true", 10, "expected `null` after `is`"),
        ("a in 1", 6, "expected `(` after `in`"),
        ("a in (1; 2)", 8, "unexpected character `;`"),
        ("a. = 1", 4, "expected a name after `.`"),
        ("a b", 3, "expected an operator, `in` or `is`, found `b`"),
        ("and = 1", 1, "expected a property name, found `and`"),
    ],
)
def test_text_refusals_name_the_position(text: str, position: int, reason: str) -> None:
    with pytest.raises(Invalid) as error:
        parse_text(text)
    found = refusal(error)
    assert found.field == f"_filter (position {position})"
    assert reason in found.message


@pytest.mark.parametrize(
    ("document", "at", "reason"),
    [
        ([{"a": {"eq": 1}}], "", "expected an object of conditions"),
        ({}, "", "an empty object is not a condition"),
        ({"and": []}, "and", "non-empty list"),
        ({"or": {"a": {"eq": 1}}}, "or", "non-empty list"),
        ({"not": [{"a": {"eq": 1}}]}, "not", "one object"),
        ({"and": [{"a": {"eq": 1}}, "b = 2"]}, "and[1]", "expected an object of conditions"),
        ({"a": 1}, "a", "expected an object of operators"),
        ({"a": {}}, "a", "names no operator"),
        ({"or": [{"a": {"equals": 1}}]}, "or[0].a.equals", "unknown operator `equals`"),
        ({"a": {"eq": None}}, "a.eq", '{"isnull": true}'),
        ({"a": {"eq": [1]}}, "a.eq", "expected a text, a number, true or false"),
        ({"a": {"gt": {"x": 1}}}, "a.gt", "expected a text, a number, true or false"),
        ({"a": {"eq": float("inf")}}, "a.eq", "finite"),
        ({"a": {"in": []}}, "a.in", "non-empty list"),
        ({"a": {"in": "x"}}, "a.in", "non-empty list"),
        ({"and": [{"x": {"eq": 1}}, {"a": {"in": [1, None]}}]}, "and[1].a.in[1]", "isnull"),
        ({"a": {"isnull": "yes"}}, "a.isnull", "true or false"),
        ({"not": {"a.": {"eq": 1}}}, "not.a.", "not a property path"),
        ({"1a": {"eq": 1}}, "1a", "not a property path"),
    ],
)
def test_json_refusals_name_the_location(document: object, at: str, reason: str) -> None:
    with pytest.raises(Invalid) as error:
        parse_json(document)
    found = refusal(error)
    assert found.field == (f"filter ({at})" if at else "filter")
    assert reason in found.message


# --- limits ---------------------------------------------------------------------------


def test_text_length_is_bounded() -> None:
    padding = "x = '" + "y" * (MAX_TEXT - 7) + "'"
    assert len(padding) == MAX_TEXT - 1
    parse_text(padding + " ")
    with pytest.raises(Invalid) as error:
        parse_text(padding + "  ")
    assert refusal(error) == FieldError(
        f"_filter (position {MAX_TEXT + 1})",
        f"the filter is longer than {MAX_TEXT} characters",
    )


def _nots(levels: int) -> tuple[str, object]:
    text = "a = 1"
    document: object = {"a": {"eq": 1}}
    for _ in range(levels):
        text, document = f"not {text}", {"not": document}
    return text, document


def _groups(levels: int) -> tuple[str, object]:
    """`x = 0 or (x = 1 and (x = 2 or ...))`: one tree level per group."""
    text = f"x = {levels}"
    document: object = {"x": {"eq": levels}}
    for level in reversed(range(levels)):
        kind = "or" if level % 2 == 0 else "and"
        text = f"x = {level} {kind} ({text})" if level else f"x = 0 or {text}"
        document = {kind: [{"x": {"eq": level}}, document]}
    return text, document


def test_nesting_is_bounded_alike_in_both_forms() -> None:
    for build in (_nots, _groups):
        text, document = build(MAX_DEPTH)
        assert text_tree(text) == json_tree(document)
        text, document = build(MAX_DEPTH + 1)
        with pytest.raises(Invalid) as error:
            parse_text(text)
        assert refusal(error).message == f"nesting deeper than {MAX_DEPTH} levels"
        with pytest.raises(Invalid) as error:
            parse_json(document)
        assert refusal(error).message == f"nesting deeper than {MAX_DEPTH} levels"


def test_nesting_refusals_point_at_the_level_too_many() -> None:
    text, document = _nots(MAX_DEPTH + 1)
    with pytest.raises(Invalid) as error:
        parse_text(text)
    assert refusal(error).field == f"_filter (position {4 * MAX_DEPTH + 1})"
    with pytest.raises(Invalid) as error:
        parse_json(document)
    assert refusal(error).field == "filter (" + ".".join(["not"] * (MAX_DEPTH + 1)) + ")"
    with pytest.raises(Invalid) as error:
        parse_text("(" * (MAX_DEPTH + 1) + "a = 1" + ")" * (MAX_DEPTH + 1))
    assert refusal(error).field == f"_filter (position {MAX_DEPTH + 1})"


def test_node_count_is_bounded_alike_in_both_forms() -> None:
    # An `or` of n conditions is n + 1 nodes.
    fits = MAX_NODES - 1
    parse_text(" or ".join(["a=1"] * fits))
    parse_json({"or": [{"a": {"eq": 1}}] * fits})
    with pytest.raises(Invalid) as error:
        parse_text(" or ".join(["a=1"] * (fits + 1)))
    assert refusal(error) == FieldError(
        f"_filter (position {7 * fits + 1})", f"the filter has more than {MAX_NODES} parts"
    )
    with pytest.raises(Invalid) as error:
        parse_json({"or": [{"a": {"eq": 1}}] * (fits + 1)})
    assert refusal(error).field == f"filter (or[{fits}].a)"
    with pytest.raises(Invalid) as error:
        parse_json({"or": [{"a": {"eq": 1}}] * 100_000})
    assert "more than" in refusal(error).message


def test_in_lists_are_bounded() -> None:
    values = list(range(MAX_IN))
    assert text_tree(f"a in ({','.join(map(str, values))})") == json_tree({"a": {"in": values}})
    over = ",".join(map(str, [*values, MAX_IN]))
    with pytest.raises(Invalid) as error:
        parse_text(f"a in ({over})")
    assert refusal(error) == FieldError(
        f"_filter (position {7 + len(over) - len(str(MAX_IN))})",
        f"`in` lists more than {MAX_IN} values",
    )
    with pytest.raises(Invalid) as error:
        parse_json({"a": {"in": [*values, MAX_IN]}})
    assert refusal(error).field == "filter (a.in)"


# --- property: random trees, rendered both ways, parse back ---------------------------

_RESERVED = {"and", "or", "not", "in", "is", "true", "false", "null"}
_ZONES = [
    None,
    dt.UTC,
    dt.timezone(dt.timedelta(hours=2)),
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
]

names = (
    st.text(string.ascii_letters + "_", min_size=1, max_size=1)
    .flatmap(
        lambda first: st.text(string.ascii_letters + string.digits + "_", max_size=5).map(
            lambda rest: first + rest
        )
    )
    .filter(lambda name: name.lower() not in _RESERVED)
)
tree_paths = st.lists(names, min_size=1, max_size=3).map(lambda parts: Path(tuple(parts), ""))
moments = st.one_of(
    st.dates(min_value=dt.date(1000, 1, 1)).map(dt.date.isoformat),
    st.builds(
        lambda moment, zone, zulu: (
            moment.replace(tzinfo=zone).isoformat().replace("+00:00", "Z" if zulu else "+00:00")
        ),
        st.datetimes(min_value=dt.datetime(1000, 1, 1)),  # noqa: DTZ001 - naive bounds, zone added
        st.sampled_from(_ZONES),
        st.booleans(),
    ),
)
values = st.one_of(
    st.text(max_size=8).filter(lambda raw: raw not in ("$me", "$now")).map(txt),
    moments.map(txt),
    st.integers(-(10**20), 10**20).map(num),
    st.decimals(-(10**6), 10**6, places=3).map(lambda d: Value("number", d, "")),
    st.booleans().map(lambda b: Value("bool", b, "")),
    st.sampled_from([Value("me", None, ""), Value("now", None, "")]),
)
operators: st.SearchStrategy[Op] = st.sampled_from([op for _, op in OPERATORS])
leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, tree_paths, operators, values),
    st.builds(In, tree_paths, st.lists(values, min_size=1, max_size=4).map(tuple)),
    st.builds(IsNull, tree_paths, st.booleans()),
)


def _joined(kind: type[And] | type[Or]) -> Callable[[list[Node]], Node]:
    def join(items: list[Node]) -> Node:
        flat: list[Node] = []
        for item in items:
            flat.extend(item.items if isinstance(item, kind) else (item,))
        return kind(tuple(flat))

    return join


trees: st.SearchStrategy[Node] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(_joined(And)),
        st.lists(children, min_size=2, max_size=3).map(_joined(Or)),
        children.map(Not),
    ),
    max_leaves=12,
)

_SYMBOLS = {op: symbol for symbol, op in OPERATORS}


def _bare_moment(raw: str) -> bool:
    """A date or datetime the text form may write without quotes."""
    if not set(raw) <= set(string.digits + "-:.+TZ"):
        return False
    try:
        dt.datetime.fromisoformat(raw)
    except ValueError:
        return False
    return True


def _render_value(value: Value) -> str:
    match value.kind:
        case "text" if isinstance(value.raw, str) and _bare_moment(value.raw):
            return value.raw
        case "text":
            return "'" + str(value.raw).replace("'", "''") + "'"
        case "number":
            return format(value.raw, "f")
        case "bool":
            return "true" if value.raw else "false"
        case _:
            return "$" + value.kind


def render_text(node: Node, keyword: Callable[[str], str], gap: str) -> str:
    def sub(child: Node, parent: type[Node]) -> str:
        rendered = render_text(child, keyword, gap)
        needs_group = isinstance(child, Or) and parent is And
        needs_group |= isinstance(child, And | Or) and parent is Not
        return f"({rendered})" if needs_group else rendered

    match node:
        case Compare(path=path, op=op, value=value):
            return ".".join(path.parts) + gap + _SYMBOLS[op] + gap + _render_value(value)
        case In(path=path, values=listed):
            inner = ("," + gap).join(_render_value(value) for value in listed)
            return f"{'.'.join(path.parts)} {keyword('in')}{gap}({inner})"
        case IsNull(path=path, null=null):
            middle = " " if null else f" {keyword('not')} "
            return f"{'.'.join(path.parts)} {keyword('is')}{middle}{keyword('null')}"
        case And(items=items) | Or(items=items):
            joint = f" {keyword('and' if isinstance(node, And) else 'or')} "
            return joint.join(sub(item, type(node)) for item in items)
        case Not(item=item):
            return f"{keyword('not')} {sub(item, Not)}"


def _json_value(value: Value) -> object:
    match value.kind:
        case "number":
            assert isinstance(value.raw, Decimal)
            exponent = value.raw.as_tuple().exponent
            return (
                int(value.raw) if isinstance(exponent, int) and exponent >= 0 else float(value.raw)
            )
        case "me" | "now":
            return "$" + value.kind
        case _:
            return value.raw


def render_json(node: Node) -> object:
    match node:
        case Compare(path=path, op=op, value=value):
            return {".".join(path.parts): {op: _json_value(value)}}
        case In(path=path, values=listed):
            return {".".join(path.parts): {"in": [_json_value(value) for value in listed]}}
        case IsNull(path=path, null=null):
            return {".".join(path.parts): {"isnull": null}}
        case And(items=items):
            return {"and": [render_json(item) for item in items]}
        case Or(items=items):
            return {"or": [render_json(item) for item in items]}
        case Not(item=item):
            return {"not": render_json(item)}


def _depth(node: Node) -> int:
    match node:
        case And(items=items) | Or(items=items):
            return 1 + max(_depth(item) for item in items)
        case Not(item=item):
            return 1 + _depth(item)
        case _:
            return 0


@settings(max_examples=200, deadline=None)
@given(
    tree=trees,
    keyword=st.sampled_from([str.lower, str.upper, str.title]),
    gap=st.sampled_from(["", " ", "\n  "]),
)
def test_both_spellings_parse_back_to_the_tree(
    tree: Node, keyword: Callable[[str], str], gap: str
) -> None:
    text = render_text(tree, keyword, gap)
    document = render_json(tree)
    if _depth(tree) <= MAX_DEPTH:
        assert text_tree(text) == tree
        assert json_tree(document) == tree
        assert [path.parts for path in paths(parse_text(text))] == [
            path.parts for path in paths(tree)
        ]
    else:
        with pytest.raises(Invalid):
            parse_text(text)
        with pytest.raises(Invalid):
            parse_json(document)
