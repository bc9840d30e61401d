"""`resolvers.memo.Lru`: bounded by count, or by weight given `weigh`; the least recently
used entries leave first either way."""

from __future__ import annotations

from resolvers.memo import Lru


def test_a_count_bound_drops_the_least_recently_used() -> None:
    table: Lru[str, int] = Lru(2)
    table.put("a", 1)
    table.put("b", 2)
    assert table.get("a") == 1  # "b" is now the least recently used
    table.put("c", 3)
    assert (table.get("a"), table.get("b"), table.get("c")) == (1, None, 3)
    assert len(table) == table.weight == 2


def test_a_weight_bound_keeps_the_sum_of_weights_under_it() -> None:
    table: Lru[str, bytes] = Lru(10, weigh=len)
    table.put("a", b"aaaa")
    table.put("b", b"bbbb")
    assert table.get("a") == b"aaaa"  # "b" is now the least recently used
    table.put("c", b"cccc")  # 12 > 10: "b" leaves
    assert (table.get("a"), table.get("b"), table.get("c")) == (b"aaaa", None, b"cccc")
    assert table.weight == 8
    table.put("d", b"dddddddd")  # 16: "a" and then "c" leave
    assert (table.get("a"), table.get("c"), table.get("d")) == (None, None, b"dddddddd")
    assert (len(table), table.weight) == (1, 8)


def test_replacing_an_entry_counts_its_new_weight_only() -> None:
    table: Lru[str, bytes] = Lru(10, weigh=len)
    table.put("a", b"aaaaaa")
    table.put("a", b"aa")
    table.put("b", b"bbbbbbbb")  # 2 + 8: both fit
    assert (table.get("a"), table.get("b"), table.weight) == (b"aa", b"bbbbbbbb", 10)


def test_a_value_heavier_than_the_bound_is_returned_but_not_kept() -> None:
    table: Lru[str, bytes] = Lru(10, weigh=len)
    table.put("a", b"aaaa")
    assert table.put("big", b"x" * 11) == b"x" * 11
    assert (table.get("big"), table.get("a"), table.weight) == (None, b"aaaa", 4)
