"""DESIGN §5: the filter language, parsed from either spelling into one typed tree.

The text form (`_filter`, role row-scopes) goes through a tokenizer and a small
recursive-descent parser; the JSON form (SEARCH bodies, GraphQL `where`) is walked
as the decoded value it already is. Both build the same `Node` tree and both refuse
bad input with `Invalid`, naming where: `position 17` (1-based character offset)
in the text form, `and[1].status.in[2]` in the JSON form. Values stay untyped here
(a bare date is `text` as written, numbers are exact `Decimal`s); the compiler
types them by the property they meet.

Limits, the same for both spellings: the tree may hold at most `MAX_NODES` nodes
and nest `and`/`or`/`not` at most `MAX_DEPTH` levels; the way it is written may not
nest deeper either (parentheses and `not` in text, `and`/`or`/`not` keys in JSON).
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal, TypeAlias

from resolvers.errors import FieldError, Invalid

__all__ = [
    "MAX_DEPTH",
    "MAX_IN",
    "MAX_NODES",
    "MAX_TEXT",
    "And",
    "Compare",
    "In",
    "IsNull",
    "Node",
    "Not",
    "Op",
    "Or",
    "Path",
    "Value",
    "ValueKind",
    "parse_filter",
    "parse_json",
    "parse_text",
    "paths",
    "strip_locations",
]

MAX_TEXT = 4000
MAX_DEPTH = 10
MAX_IN = 1000
MAX_NODES = 500

ValueKind: TypeAlias = Literal["text", "number", "bool", "null", "me", "now"]
Op: TypeAlias = Literal["eq", "ne", "lt", "lte", "gt", "gte", "contains", "startswith"]


@dataclass(frozen=True, slots=True)
class Path:
    """`name ("." name)*`; `at` is where it was written."""

    parts: tuple[str, ...]
    at: str


@dataclass(frozen=True, slots=True)
class Value:
    """A literal: text `str`, number `Decimal`, bool, or `None` for null, `$me`, `$now`."""

    kind: ValueKind
    raw: str | Decimal | bool | None
    at: str


@dataclass(frozen=True, slots=True)
class Compare:
    path: Path
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class In:
    path: Path
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class IsNull:
    """`is null` (null=True) or `is not null` (null=False)."""

    path: Path
    null: bool


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = Compare | In | IsNull | And | Or | Not
_Leaf: TypeAlias = Compare | In | IsNull

_TEXT_OPS: dict[str, Op] = {
    "=": "eq",
    "!=": "ne",
    "<": "lt",
    "<=": "lte",
    ">": "gt",
    ">=": "gte",
    "~": "contains",
    "^=": "startswith",
}
_JSON_OPS: dict[str, Op] = {op: op for op in _TEXT_OPS.values()}
_OP_CHARS = frozenset("=!<>~^")
_NAME_START = frozenset(string.ascii_letters + "_")
_NAME_CHARS = _NAME_START | frozenset(string.digits)
_MOMENT_CHARS = frozenset(string.digits + "-:.+TZ")
_RESERVED = frozenset({"and", "or", "not", "in", "is", "true", "false", "null"})
_PARAMETERS: dict[str, ValueKind] = {"me": "me", "now": "now"}


class _Refused(Exception):
    """A syntax error at `at`; the public parsers turn it into `Invalid` for their field."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


def _invalid(field: str, at: str, message: str) -> Invalid:
    where = f"{field} ({at})" if at else field
    return Invalid("the filter is not valid", [FieldError(where, message)])


# --- shared tree building and limits -------------------------------------------------


def _join(kind: type[And] | type[Or], items: list[Node]) -> Node:
    """One item stands alone; several become `kind`, absorbing nested nodes of that kind."""
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        if isinstance(item, kind):
            flat.extend(item.items)
        else:
            flat.append(item)
    return kind(tuple(flat))


def _too_deep(at: str) -> _Refused:
    return _Refused(at, f"nesting deeper than {MAX_DEPTH} levels")


def _too_many(at: str) -> _Refused:
    return _Refused(at, f"the filter has more than {MAX_NODES} parts")


class _Budget:
    """Counts conditions as they are parsed so a huge input stops early."""

    def __init__(self) -> None:
        self._leaves = 0

    def spend(self, at: str) -> None:
        self._leaves += 1
        if self._leaves > MAX_NODES:
            raise _too_many(at)


def _check_tree(root: Node) -> None:
    """Apply the node and depth limits to the finished (flattened) tree."""
    count = 0

    def walk(node: Node, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise _too_many(next(paths(node)).at)
        match node:
            case And(items=items) | Or(items=items):
                for item in items:
                    walk(item, depth + 1)
            case Not(item=item):
                walk(item, depth + 1)
            case _:
                if depth > MAX_DEPTH:
                    raise _too_deep(node.path.at)

    walk(root, 0)


# --- the text form: tokens -----------------------------------------------------------

_TokenKind: TypeAlias = Literal[
    "name", "text", "number", "moment", "param", "op", "(", ")", ",", ".", "end"
]


_PUNCTUATION: dict[str, _TokenKind] = {"(": "(", ")": ")", ",": ",", ".": "."}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    value: str  # the operator, name, parameter or number; a text's content unquoted
    written: str  # the source slice, for messages
    pos: int  # 1-based

    @property
    def at(self) -> str:
        return f"position {self.pos}"

    def shown(self) -> str:
        return "the end" if self.kind == "end" else f"`{self.written}`"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        token = _read_token(text, i)
        tokens.append(token)
        i += len(token.written)
    tokens.append(_Token("end", "", "", len(text) + 1))
    return tokens


def _read_token(text: str, start: int) -> _Token:
    """The token that starts at `start` (not whitespace)."""
    char = text[start]
    kind: _TokenKind
    if char in _PUNCTUATION:
        end, kind = start + 1, _PUNCTUATION[char]
    elif char == "'":
        content, end = _scan_text(text, start)
        return _Token("text", content, text[start:end], start + 1)
    elif char in _NAME_START:
        end, kind = _scan_name(text, start), "name"
    elif char.isdigit() and _looks_like_moment(text, start):
        end, kind = _scan_moment(text, start), "moment"
    elif char.isdigit() or (char in "+-" and text[start + 1 : start + 2].isdigit()):
        end, kind = _scan_number(text, start), "number"
    elif char in _OP_CHARS:
        end, kind = _scan_operator(text, start), "op"
    elif char == "$":
        end = _scan_parameter(text, start)
        return _Token("param", text[start + 1 : end].lower(), text[start:end], start + 1)
    elif char == '"':
        raise _Refused(f"position {start + 1}", "text values use single quotes: 'like this'")
    else:
        raise _Refused(f"position {start + 1}", f"unexpected character `{char}`")
    return _Token(kind, text[start:end], text[start:end], start + 1)


def _scan_operator(text: str, i: int) -> int:
    start = i
    while i < len(text) and text[i] in _OP_CHARS:
        i += 1
    if text[start:i] not in _TEXT_OPS:
        raise _Refused(
            f"position {start + 1}",
            f"unknown operator `{text[start:i]}`; use one of {' '.join(_TEXT_OPS)}",
        )
    return i


def _scan_parameter(text: str, i: int) -> int:
    """`$me` or `$now`, in any case."""
    end = _scan_name(text, i + 1)
    if text[i + 1 : end].lower() not in _PARAMETERS:
        raise _Refused(f"position {i + 1}", f"unknown parameter `{text[i:end]}`; use $me or $now")
    return end


def _scan_name(text: str, i: int) -> int:
    while i < len(text) and text[i] in _NAME_CHARS:
        i += 1
    return i


def _scan_text(text: str, i: int) -> tuple[str, int]:
    """Read `'...'` from the quote at `i`; a doubled `''` stands for one quote."""
    start, i = i, i + 1
    chunks: list[str] = []
    while True:
        close = text.find("'", i)
        if close < 0:
            raise _Refused(f"position {start + 1}", "unterminated text: a `'` is never closed")
        chunks.append(text[i:close])
        if text[close + 1 : close + 2] != "'":
            return "".join(chunks), close + 1
        chunks.append("'")
        i = close + 2


def _scan_number(text: str, i: int) -> int:
    """An optional sign, digits, and optionally `.` and more digits."""
    if text[i] in "+-":
        i += 1
    while i < len(text) and text[i].isdigit():
        i += 1
    if text[i : i + 1] == "." and text[i + 1 : i + 2].isdigit():
        i += 1
        while i < len(text) and text[i].isdigit():
            i += 1
    return i


def _looks_like_moment(text: str, i: int) -> bool:
    """`YYYY-` starts a bare date; anything else starting with a digit is a number."""
    return text[i : i + 4].isdigit() and text[i + 4 : i + 5] == "-"


def _scan_moment(text: str, i: int) -> int:
    """A bare ISO date or datetime (`T` between date and time), checked for validity."""
    start = i
    while i < len(text) and text[i] in _MOMENT_CHARS:
        i += 1
    glued = i < len(text) and text[i] in _NAME_CHARS
    if i - start == 10 and _looks_like_time(text[i:].lstrip()):
        raise _Refused(
            f"position {start + 1}",
            "a date and time apart need quotes ('2026-05-22 09:00:00') or a T between them",
        )
    if glued or not _is_moment(text[start:i]):
        raise _Refused(
            f"position {start + 1}",
            "not a valid ISO month, date or datetime (2026-05, 2026-05-22, 2026-05-22T09:00:00Z);"
            " quote other text",
        )
    return i


def _looks_like_time(rest: str) -> bool:
    return rest[:2].isdigit() and rest[2:3] == ":"


def _is_moment(written: str) -> bool:
    if len(written) == 7:  # a bare month, `2026-05`, for month properties
        return written[4] == "-" and written[5:].isdigit() and 1 <= int(written[5:]) <= 12
    if len(written) < 10 or written[7] != "-" or (len(written) > 10 and written[10] != "T"):
        return False
    try:
        if len(written) == 10:
            dt.date.fromisoformat(written)
        else:
            dt.datetime.fromisoformat(written)
    except ValueError:
        return False
    return True


# --- the text form: grammar ----------------------------------------------------------


class _TextParser:
    """`expr := and_expr ("or" and_expr)*; and_expr := term ("and" term)*`."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._budget = _Budget()

    def parse(self) -> Node:
        node = self._expr(0)
        token = self._peek()
        if token.kind == ")":
            raise _Refused(token.at, "unbalanced parentheses: this `)` has no `(`")
        if token.kind != "end":
            raise _Refused(token.at, f"expected `and`, `or` or the end, found {token.shown()}")
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _take(self) -> _Token:
        token = self._tokens[self._i]
        if token.kind != "end":
            self._i += 1
        return token

    def _keyword(self, word: str) -> bool:
        """Consume the keyword `word` (any case) if it is next."""
        token = self._peek()
        if token.kind == "name" and token.value.lower() == word:
            self._i += 1
            return True
        return False

    def _expr(self, depth: int) -> Node:
        items = [self._conjunction(depth)]
        while self._keyword("or"):
            items.append(self._conjunction(depth))
        return _join(Or, items)

    def _conjunction(self, depth: int) -> Node:
        items = [self._term(depth)]
        while self._keyword("and"):
            items.append(self._term(depth))
        return _join(And, items)

    def _term(self, depth: int) -> Node:
        token = self._peek()
        if token.kind == "name" and token.value.lower() == "not":
            self._take()
            if depth >= MAX_DEPTH:
                raise _too_deep(token.at)
            return Not(self._term(depth + 1))
        if token.kind == "(":
            self._take()
            if depth >= MAX_DEPTH:
                raise _too_deep(token.at)
            inner = self._expr(depth + 1)
            close = self._take()
            if close.kind == "end":
                raise _Refused(token.at, "unbalanced parentheses: this `(` is never closed")
            if close.kind != ")":
                raise _Refused(close.at, f"expected `and`, `or` or `)`, found {close.shown()}")
            return inner
        if token.kind == "end":
            raise _Refused(token.at, "unexpected end: expected a condition")
        return self._condition()

    def _condition(self) -> _Leaf:
        path = self._path()
        self._budget.spend(path.at)
        token = self._take()
        if token.kind == "op":
            value = self._value()
            if value.kind == "null":
                hint = "is not null" if token.value == "!=" else "is null"
                raise _Refused(value.at, f"null cannot be compared; use `{hint}`")
            return Compare(path, _TEXT_OPS[token.value], value)
        if token.kind == "name" and token.value.lower() == "in":
            return In(path, self._in_list())
        if token.kind == "name" and token.value.lower() == "is":
            negated = self._keyword("not")
            if not self._keyword("null"):
                found = self._peek()
                wanted = "`null`" if negated else "`null` or `not null`"
                raise _Refused(found.at, f"expected {wanted} after `is`, found {found.shown()}")
            return IsNull(path, not negated)
        if token.kind == "end":
            raise _Refused(token.at, "unexpected end: expected an operator, `in` or `is`")
        raise _Refused(token.at, f"expected an operator, `in` or `is`, found {token.shown()}")

    def _path(self) -> Path:
        first = self._take()
        if first.kind == "end":
            raise _Refused(first.at, "unexpected end: expected a property name")
        is_value = first.kind in ("text", "number", "moment", "param") or (
            first.kind == "name" and first.value.lower() in ("true", "false", "null")
        )
        if is_value:
            raise _Refused(first.at, f"expected a property name, found the value {first.shown()}")
        if first.kind != "name" or first.value.lower() in _RESERVED:
            raise _Refused(first.at, f"expected a property name, found {first.shown()}")
        parts = [first.value]
        while self._peek().kind == ".":
            self._take()
            name = self._take()
            if name.kind != "name":
                raise _Refused(name.at, f"expected a name after `.`, found {name.shown()}")
            parts.append(name.value)
        return Path(tuple(parts), first.at)

    def _in_list(self) -> tuple[Value, ...]:
        opening = self._take()
        if opening.kind != "(":
            raise _Refused(opening.at, f"expected `(` after `in`, found {opening.shown()}")
        if self._peek().kind == ")":
            raise _Refused(self._peek().at, "empty `in ()`: list at least one value")
        values: list[Value] = []
        while True:
            value = self._value()
            if value.kind == "null":
                raise _Refused(value.at, "null cannot be listed in `in`; use `is null`")
            values.append(value)
            if len(values) > MAX_IN:
                raise _Refused(value.at, f"`in` lists more than {MAX_IN} values")
            token = self._take()
            if token.kind == ")":
                return tuple(values)
            if token.kind == "end":
                raise _Refused(opening.at, "unbalanced parentheses: this `(` is never closed")
            if token.kind != ",":
                raise _Refused(token.at, f"expected `,` or `)`, found {token.shown()}")

    def _value(self) -> Value:
        token = self._take()
        match token.kind:
            case "text" | "moment":
                return Value("text", token.value, token.at)
            case "number":
                return Value("number", Decimal(token.value), token.at)
            case "param":
                return Value(_PARAMETERS[token.value], None, token.at)
            case "name" if token.value.lower() in ("true", "false"):
                return Value("bool", token.value.lower() == "true", token.at)
            case "name" if token.value.lower() == "null":
                return Value("null", None, token.at)
            case "name":
                raise _Refused(
                    token.at,
                    f"expected a value, found {token.shown()}; quote text as '{token.value}'",
                )
            case "end":
                raise _Refused(token.at, "unexpected end: expected a value")
            case _:
                raise _Refused(token.at, f"expected a value, found {token.shown()}")


# --- the JSON form -------------------------------------------------------------------


def _child(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


class _JsonParser:
    """Walks a decoded JSON value: logic keys `and`/`or`/`not`, other keys are properties."""

    def __init__(self) -> None:
        self._budget = _Budget()

    def node(self, document: object, at: str, depth: int) -> Node:
        if not isinstance(document, dict):
            raise _Refused(at, "expected an object of conditions")
        if not document:
            raise _Refused(at, "an empty object is not a condition")
        items: list[Node] = []
        for key, body in document.items():
            if not isinstance(key, str):
                raise _Refused(at, "object keys must be strings")
            where = _child(at, key)
            if key in ("and", "or", "not") and depth >= MAX_DEPTH:
                raise _too_deep(where)
            if key in ("and", "or"):
                if not isinstance(body, list) or not body:
                    raise _Refused(where, f"`{key}` takes a non-empty list of conditions")
                parts = [self.node(item, f"{where}[{n}]", depth + 1) for n, item in enumerate(body)]
                items.append(_join(And if key == "and" else Or, parts))
            elif key == "not":
                if isinstance(body, list):
                    raise _Refused(where, "`not` takes one object, not a list")
                items.append(Not(self.node(body, where, depth + 1)))
            else:
                items.extend(self._property(key, body, where))
        return _join(And, items)

    def _property(self, key: str, body: object, at: str) -> list[Node]:
        path = Path(_split_path(key, at), at)
        if not isinstance(body, dict):
            raise _Refused(at, 'expected an object of operators, like {"eq": ...}')
        if not body:
            raise _Refused(at, "an empty object names no operator")
        self._budget.spend(at)
        conditions: list[Node] = []
        for op, operand in body.items():
            where = _child(at, str(op))
            if op == "in":
                conditions.append(In(path, self._in_list(operand, where)))
            elif op == "isnull":
                if not isinstance(operand, bool):
                    raise _Refused(where, "`isnull` takes true or false")
                conditions.append(IsNull(path, operand))
            elif op in _JSON_OPS:
                conditions.append(Compare(path, _JSON_OPS[op], _json_value(operand, where)))
            else:
                raise _Refused(
                    where,
                    f"unknown operator `{op}`; use one of {' '.join(sorted(_JSON_OPS))} in isnull",
                )
        return conditions

    @staticmethod
    def _in_list(operand: object, at: str) -> tuple[Value, ...]:
        if not isinstance(operand, list) or not operand:
            raise _Refused(at, "`in` takes a non-empty list of values")
        if len(operand) > MAX_IN:
            raise _Refused(at, f"`in` lists more than {MAX_IN} values")
        return tuple(_json_value(item, f"{at}[{n}]") for n, item in enumerate(operand))


def _split_path(key: str, at: str) -> tuple[str, ...]:
    parts = tuple(key.split("."))
    for part in parts:
        if not part or part[0] not in _NAME_START or not set(part) <= _NAME_CHARS:
            raise _Refused(at, f"`{key}` is not a property path (name or name.name)")
    return parts


def _json_value(operand: object, at: str) -> Value:
    if isinstance(operand, bool):
        return Value("bool", operand, at)
    if operand is None:
        raise _Refused(at, 'null cannot be compared; use {"isnull": true} or {"isnull": false}')
    if isinstance(operand, str):
        if operand in ("$me", "$now"):
            return Value(_PARAMETERS[operand[1:]], None, at)
        return Value("text", operand, at)
    number: Decimal | None = None
    if isinstance(operand, int):
        number = Decimal(operand)
    elif isinstance(operand, float):
        number = Decimal(repr(operand))
    elif isinstance(operand, Decimal):
        number = operand
    if number is None:
        raise _Refused(at, "expected a text, a number, true or false")
    if not number.is_finite():
        raise _Refused(at, "numbers must be finite")
    return Value("number", number, at)


# --- public entry points -------------------------------------------------------------


def _parse_text(text: str) -> Node:
    if len(text) > MAX_TEXT:
        raise _Refused(
            f"position {MAX_TEXT + 1}", f"the filter is longer than {MAX_TEXT} characters"
        )
    tree = _TextParser(_tokenize(text)).parse()
    _check_tree(tree)
    return tree


def _parse_json(document: object) -> Node:
    tree = _JsonParser().node(document, "", 0)
    _check_tree(tree)
    return tree


def parse_text(text: str, *, field: str = "_filter") -> Node:
    """Parse the text spelling; `Invalid` names `field (position N)` on a syntax error."""
    try:
        return _parse_text(text)
    except _Refused as exc:
        raise _invalid(field, exc.at, exc.message) from None


def parse_json(document: object, *, field: str = "filter") -> Node:
    """Parse the JSON spelling from its decoded value; `Invalid` names `field (and[0].x)`."""
    try:
        return _parse_json(document)
    except _Refused as exc:
        raise _invalid(field, exc.at, exc.message) from None


def parse_filter(value: object, *, field: str) -> Node:
    """A text goes to `parse_text`, an object to `parse_json`; nothing else is a filter."""
    if isinstance(value, str):
        return parse_text(value, field=field)
    if isinstance(value, dict):
        return parse_json(value, field=field)
    raise _invalid(field, "", "expected a text filter or a JSON object")


def paths(node: Node) -> Iterator[Path]:
    """Every property path in the tree, in the order written (for permission checks)."""
    match node:
        case Compare(path=path) | In(path=path) | IsNull(path=path):
            yield path
        case And(items=items) | Or(items=items):
            for item in items:
                yield from paths(item)
        case Not(item=item):
            yield from paths(item)


def strip_locations(node: Node) -> Node:
    """The same tree with every `at` emptied, to compare trees from either spelling."""
    match node:
        case Compare():
            return replace(node, path=_bare(node.path), value=replace(node.value, at=""))
        case In():
            values = tuple(replace(value, at="") for value in node.values)
            return replace(node, path=_bare(node.path), values=values)
        case IsNull():
            return replace(node, path=_bare(node.path))
        case And() | Or():
            return replace(node, items=tuple(strip_locations(item) for item in node.items))
        case Not():
            return Not(strip_locations(node.item))


def _bare(path: Path) -> Path:
    return replace(path, at="")
