"""The GraphQL documents of ``bench/graphql``: the REST benchmark list, a get, a nested read.

- ``LIST``: REST's ``?_filter=rank >= 5000 and state = 'open'&_order=-seen_at&_limit=50``
  (``bench/collections``' ``LIST_QUERY``) as a GraphQL list with the same text filter,
  order and limit, selecting every scalar field of ``Item`` (REST's body plus nothing:
  ``group`` is a nested object in GraphQL, read in ``NESTED``); it builds the same
  ``ListQuery`` as REST, so both read one cache entry;
- ``get(id)``: one ``Item`` by id, every scalar field;
- ``NESTED``: 100 Items through the typed ``where``, each with ``group { id name }``
  (one reference read per request through the DataLoader).
"""

from __future__ import annotations

__all__ = ["FIELDS", "LIST", "NESTED", "NO_CACHE_LIST", "get"]

FIELDS = "id created_on updated_on created_by updated_by rank name seen_at state"

_LIST_ARGS = "filter: \"rank >= 5000 and state = 'open'\", order: [{field: seen_at, desc: true}]"
_LIST_ARGS += ", limit: 50"

LIST = f"{{ items({_LIST_ARGS}) {{ items {{ {FIELDS} }} }} }}"
NO_CACHE_LIST = f"{{ items({_LIST_ARGS}, noCache: true) {{ items {{ {FIELDS} }} }} }}"

NESTED = (
    "{ items(where: {rank: {lt: 5000}}, order: [{field: rank}], limit: 100) "
    f"{{ items {{ {FIELDS} group {{ id name }} }} }} }}"
)


def get(record_id: int) -> str:
    return f"{{ item(id: {record_id}) {{ {FIELDS} }} }}"
