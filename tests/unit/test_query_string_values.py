"""`schema.prepared._unquoted`: a GraphQL GET's `variables` value decoded as
`unquote_to_bytes` decodes it (the prepared path's fast way for JSON escapes)."""

from __future__ import annotations

import json
import random
from urllib.parse import quote, quote_plus, unquote_to_bytes

from schema.prepared import _unquoted


def _expected(value: bytes) -> bytes:
    return unquote_to_bytes(value.replace(b"+", b" "))


def test_encoded_json_objects_decode_as_unquote_decodes_them() -> None:
    objects = [{"id": 4999}, {"a": "é x&y=z", "l": [1, 2.5, None]}, {"s": "%7B 100% [ok]"}, {}]
    for value in objects:
        for encoded in (quote_plus(json.dumps(value)), quote(json.dumps(value), safe="")):
            assert _unquoted(encoded.encode()) == _expected(encoded.encode()), encoded
            assert json.loads(_unquoted(encoded.encode())) == value


def test_any_mix_of_escapes_and_stray_percents_decodes_as_unquote_does() -> None:
    # Lower-case escapes, `%` with one hex digit or none, escapes that only look JSON
    # once another is decoded (`%%2222`), and plain text: the same bytes in every case.
    alphabet = b"%%%2257BbDdAa3C:,{}+x0"
    chosen = random.Random(20261207)  # noqa: S311 - test inputs, not secrets
    values = [b"%%2222", b"%2%22", b"%", b"%7b%22id%22%3a1%7d", b"+%2B+", b"%zz%22", b"plain"]
    values += [bytes(chosen.choices(alphabet, k=chosen.randint(0, 14))) for _ in range(20_000)]
    for value in values:
        assert _unquoted(value) == _expected(value), value
