"""A new instance's first request runs with the cyclic garbage collector paused.

Why: the first request of a new instance imports about 430 modules and builds the process's services, and
nearly everything it allocates lives as long as the process (modules, classes, compiled validators, clients).
The collections those allocations set off scan objects that can never be garbage: about 16 ms of a ~200 ms
first answer (`python -m bench coldstart`, docs/cold-start.md). So the first request pauses the collector
and, when it ends, freezes what survived into the permanent generation (`gc.freeze`, as `function_app.py`
does for the heap built while indexing) and resumes it: later collections scan only what is built after.

What it does not change: reference counting frees every object as usual inside the window; only reference
cycles that became garbage during that one request stay in memory, once. The window belongs to the first
request alone and closes for good when it ends; concurrent and later requests never hold it open, so a
stream of overlapping requests cannot keep the collector off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StartupWindow:
    """The first `hold()` of the process pauses the collector until it ends; every other one is a no-op."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True

    @property
    def open(self) -> bool:
        """Whether the next `hold()` would still pause the collector."""
        return self._open

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._open:  # the common case, without the lock
            yield
            return
        with self._lock:
            first, self._open = self._open, False
            resume = first and gc.isenabled()
            if first:
                gc.disable()
        try:
            yield
        finally:
            if first:
                gc.freeze()
                if resume:  # a collector paused by someone else stays paused
                    gc.enable()


FIRST_REQUEST = StartupWindow()
"""The process's window: held by the HTTP routes' `handle` and by the first build of the services."""
