"""The prefetch plan and cache of remote checkpoints (pure, no network)."""

from __future__ import annotations

from pedigree.crawler.span_cache import SpanCache, coalesce


def test_coalesce_merges_near_spans_of_one_file_within_the_part_size():
    spans = [("a", 0, 10), ("a", 15, 20), ("a", 100, 110), ("b", 0, 5), ("a", 15, 20)]
    assert coalesce(spans, gap=10, part=1000, max_request=1000) == [("a", 0, 20), ("a", 100, 110), ("b", 0, 5)]
    # the part size bounds a merged request: each stays a request of its own
    assert coalesce([("a", 0, 10), ("a", 12, 22)], gap=10, part=15, max_request=1000) == [("a", 0, 10), ("a", 12, 22)]
    assert coalesce([], gap=10, part=10, max_request=10) == []


def test_a_read_across_adjacent_spans_is_served_and_a_gap_is_not():
    cache = SpanCache(limit=1000, max_span=100)
    cache.put("f", 0, memoryview(bytes(range(10))))
    cache.put("f", 10, memoryview(bytes(range(10, 20))))
    buf = memoryview(bytearray(8))
    assert cache.copy_into("f", 6, buf) and bytes(buf) == bytes(range(6, 14))
    assert cache.pieces("f", 15, 25) is None and cache.pieces("g", 0, 1) is None
    untouched = memoryview(bytearray(b"x" * 4))
    assert not cache.copy_into("f", 18, untouched) and bytes(untouched) == b"xxxx"


def test_the_least_recently_used_span_goes_first_past_the_limit():
    cache = SpanCache(limit=20, max_span=100)
    cache.put("f", 0, memoryview(b"a" * 10))
    cache.put("f", 100, memoryview(b"b" * 10))
    assert cache.pieces("f", 0, 5) is not None  # touch the first: the second is now the oldest
    cache.put("f", 200, memoryview(b"c" * 10))
    assert cache.size == 20
    assert cache.pieces("f", 100, 101) is None and cache.pieces("f", 0, 10) is not None
    cache.clear()
    assert cache.size == 0 and cache.pieces("f", 0, 1) is None
