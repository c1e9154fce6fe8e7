"""A small local server that answers the Durable Functions extension's HTTP API, as the Functions host
does for out-of-process workers (`rpcBaseUrl`): start an orchestration, get an instance's status, and
raise an event. The real `DurableOrchestrationClient` is pointed at it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from gatekeeper.local.protocol_servers import LocalServer, Response

START = re.compile(r"^/durabletask/orchestrators/(?P<name>[^/]+)(/(?P<id>[^/]+))?$")
STATUS = re.compile(r"^/durabletask/instances/(?P<id>[^/]+)$")
RAISE = re.compile(r"^/durabletask/instances/(?P<id>[^/]+)/raiseEvent/(?P<event>[^/]+)$")


def _answer(status: int, body: Any = None) -> Response:
    payload = b"" if body is None else json.dumps(body).encode()
    return status, {"Content-Type": "application/json"}, payload


def _decoded(path: str, body: bytes) -> Any:
    value = json.loads(body) if body else None
    if START.match(path) and isinstance(value, str):
        value = json.loads(value)  # the Python SDK sends the input already serialised: JSON inside JSON
    return value


class DurableApiServer(LocalServer):
    name = "local Durable Functions HTTP API"

    def __init__(self, task_hub: str = "GatekeeperTest"):
        super().__init__()
        self.task_hub = task_hub
        self.instances: dict[str, dict[str, Any]] = {}

    def posts(self, path_contains: str) -> list[tuple[str, Any]]:
        """(path, JSON body) of every POST whose path contains the text, oldest first."""
        return [(r.path, _decoded(r.path, r.body)) for r in self.requests_to(path_contains, "POST")]

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method == "POST" and (match := RAISE.match(path)):
            instance = self.instances.get(match["id"])
            if instance is None:
                return _answer(404)
            instance.setdefault("events", []).append((match["event"], _decoded(path, body)))
            return _answer(202)
        if method == "POST" and (match := START.match(path)):
            instance_id = match["id"] or "generated"
            now = datetime.now(UTC).isoformat()
            self.instances[instance_id] = {
                "name": match["name"],
                "instanceId": instance_id,
                "runtimeStatus": "Pending",
                "input": _decoded(path, body),
                "createdTime": now,
                "lastUpdatedTime": now,
            }
            status_uri = f"{self.url}/runtime/webhooks/durabletask/instances/{instance_id}"
            return _answer(202, {"id": instance_id, "statusQueryGetUri": status_uri})
        if method == "GET" and (match := STATUS.match(path)):
            instance = self.instances.get(match["id"])
            if instance is None:
                return _answer(404)
            return _answer(202, {k: v for k, v in instance.items() if k != "events"})
        return _answer(404)

    @property
    def client_binding(self) -> str:
        """The JSON the Functions host hands a `durable_client_input` binding."""
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {},
                "managementUrls": {},
                "baseUrl": f"{self.url}/runtime/webhooks/durabletask",
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": f"{self.url}/durabletask/",
            }
        )
