"""OrchestrationGateway over the Durable Functions client binding (the real Durable HTTP API)."""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df


class DurableClientGateway:
    """Sync facade for sync trigger functions; each call runs the client's coroutine to completion."""

    def __init__(self, client: df.DurableOrchestrationClient):
        self._client = client

    def exists(self, instance_id: str) -> bool:
        status = asyncio.run(self._client.get_status(instance_id))
        return status is not None and status.runtime_status is not None

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None:
        asyncio.run(self._client.start_new(orchestrator, instance_id, payload))

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        asyncio.run(self._client.raise_event(instance_id, event_name, data))
