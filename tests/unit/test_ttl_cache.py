"""The shared TTL cache behind the directory lookups: answers expire, the oldest go first, bounds are refused."""

from __future__ import annotations

import pytest

from gatekeeper.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_the_ttl_and_not_a_moment_longer():
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(ttl_seconds=10, max_entries=5, clock=clock)
    assert cache.get("a") == (False, None)
    cache.put([("a", None), ("b", 2)])
    assert cache.get("a") == (True, None)  # "nobody" is an answer too
    clock.now += 9.999
    assert cache.get("b") == (True, 2)
    clock.now += 0.001
    assert cache.get("b") == (False, None)


def test_past_the_bound_the_oldest_answers_go_first_and_a_refreshed_one_is_newest():
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_seconds=10, max_entries=2, clock=clock)
    cache.put([("a", 1), ("b", 2)])
    cache.put([("a", 3)])  # refreshed: now the newest
    cache.put([("c", 4)])
    assert [cache.get(k) for k in "abc"] == [(True, 3), (False, None), (True, 4)]


@pytest.mark.parametrize(("ttl", "size"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_bounds_are_refused(ttl, size):
    with pytest.raises(ValueError, match="positive"):
        TtlCache(ttl_seconds=ttl, max_entries=size)
