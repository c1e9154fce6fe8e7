"""OrchestrationGateway over the Durable Functions client binding (the real Durable HTTP API).

Functions with a durable client binding must be coroutines, and the SDK's client keeps one aiohttp
session bound to the worker's event loop. Our dispatch logic is synchronous (table I/O), so it runs in a
worker thread (`asyncio.to_thread`) and this gateway hands each client call back to the worker's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import azure.durable_functions as df

T = TypeVar("T")
CALL_TIMEOUT_SECONDS = 60


class DurableClientGateway:
    """Sync facade over DurableOrchestrationClient, for code running off the event loop's thread."""

    def __init__(self, client: df.DurableOrchestrationClient, loop: asyncio.AbstractEventLoop):
        self._client = client
        self._loop = loop

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_SECONDS)

    def exists(self, instance_id: str) -> bool:
        status = self._run(self._client.get_status(instance_id))
        return status is not None and status.runtime_status is not None

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None:
        self._run(self._client.start_new(orchestrator, instance_id, payload))

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        self._run(self._client.raise_event(instance_id, event_name, data))
