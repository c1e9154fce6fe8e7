"""A small, thread-safe cache of answers that expire: directory lookups (users, group membership) are asked
once per period, and a change in the directory takes effect within it. Bounded: past `max_entries` the
oldest answers go first. Failures are never cached (callers only `put` answers they got)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


class TtlCache(Generic[K, V]):
    def __init__(self, *, ttl_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds <= 0 or max_entries < 1:
            raise ValueError("ttl_seconds and max_entries must be positive")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._answers: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for an answer that has not expired, else (False, None)."""
        now = self._clock()
        with self._lock:
            cached = self._answers.get(key)
            if cached is not None and cached[0] > now:
                return True, cached[1]
        return False, None

    def put(self, answers: Iterable[tuple[K, V]]) -> None:
        """Remember each answer for the TTL from now, as the newest entries."""
        expires = self._clock() + self._ttl
        with self._lock:
            for key, value in answers:
                self._answers.pop(key, None)
                self._answers[key] = (expires, value)
            while len(self._answers) > self._max:
                self._answers.popitem(last=False)
