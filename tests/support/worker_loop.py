"""One long-lived event loop on a thread, like the Python worker's: async trigger functions are awaited
on it, so the Durable SDK's process-wide aiohttp session stays on a live loop across tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def worker_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="test-worker-loop", daemon=True).start()
        return _loop


def run_on_worker(coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, worker_loop()).result(timeout)
