"""A small local server that answers the Durable Functions extension's HTTP API, as the Functions host
does for out-of-process workers (`rpcBaseUrl`): start an orchestration, get an instance's status, and
raise an event. The real `DurableOrchestrationClient` is pointed at it.

It answers as the extension's `HttpApiHandler` does (azure-functions-durable-extension,
src/WebJobs.Extensions.DurableTask/HttpApiHandler.cs, with the default `overridableExistingInstanceStates`
of `NonRunningStates`):
- start: 202 with the management links; a body that is not JSON is 400 "Invalid JSON content"; an instance
  id whose instance is Pending/Running/ContinuedAsNew/Suspended is refused (`OrchestrationAlreadyExists`,
  an InvalidOperationException the handler turns into 500 "Something went wrong..."; the SDK raises); a
  finished instance (Completed/Failed/Terminated/Canceled) is replaced;
- status: 404 unknown, 202 while running (with Location and Retry-After), 200 once finished;
- raiseEvent: 404 unknown, 410 Gone when Completed/Failed/Terminated/Canceled (checked first), then 400
  unless the content type is application/json and the body is JSON, else 202.
`delay(path_contains, seconds)` holds matching requests that long before they take effect, to widen races.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from devstack.server import LocalServer, Response

START = re.compile(r"^/durabletask/orchestrators/(?P<name>[^/]+)(/(?P<id>[^/]+))?$")
STATUS = re.compile(r"^/durabletask/instances/(?P<id>[^/]+)$")
RAISE = re.compile(r"^/durabletask/instances/(?P<id>[^/]+)/raiseEvent/(?P<event>[^/]+)$")

RUNNING_STATES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})
FINISHED_STATES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


def _answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    payload = b"" if body is None else json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, payload


def _error(status: int, message: str, exception: str | None = None, kind: str | None = None) -> Response:
    """The shape of ASP.NET's `CreateErrorResponse(status, message, exception)`."""
    body: dict[str, Any] = {"Message": message}
    if exception is not None:
        body |= {"ExceptionMessage": exception, "ExceptionType": kind or "System.Exception"}
    return _answer(status, body)


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
        self._instances_lock = threading.Lock()  # the task hub's create is atomic per instance id
        self._delays: list[tuple[str, float]] = []

    def posts(self, path_contains: str) -> list[tuple[str, Any]]:
        """(path, JSON body) of every POST whose path contains the text, oldest first."""
        return [(r.path, _decoded(r.path, r.body)) for r in self.requests_to(path_contains, "POST")]

    def delay(self, path_contains: str, seconds: float) -> None:
        """Hold every request whose path contains the text for `seconds` before it takes effect."""
        self._delays.append((path_contains, seconds))

    def finish(self, instance_id: str, status: str = "Completed", output: Any = None) -> None:
        """Move an instance to a terminal state, as its orchestrator (or a terminate) would."""
        assert status in FINISHED_STATES, status
        with self._instances_lock:
            self.instances[instance_id] |= {
                "runtimeStatus": status,
                "output": output,
                "lastUpdatedTime": datetime.now(UTC).isoformat(),
            }

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        for fragment, seconds in self._delays:
            if fragment in path:
                time.sleep(seconds)
        if method == "POST" and (match := RAISE.match(path)):
            return self._raise_event(match["id"], match["event"], path, headers, body)
        if method == "POST" and (match := START.match(path)):
            return self._start(match["name"], match["id"] or "generated", path, body)
        if method == "GET" and (match := STATUS.match(path)):
            return self._status(match["id"])
        return _answer(404)

    def _start(self, name: str, instance_id: str, path: str, body: bytes) -> Response:
        try:
            data = _decoded(path, body)
        except ValueError as exc:
            return _error(400, "Invalid JSON content", str(exc), "Newtonsoft.Json.JsonReaderException")
        now = datetime.now(UTC).isoformat()
        with self._instances_lock:
            existing = self.instances.get(instance_id)
            if existing is not None and existing.get("runtimeStatus") not in FINISHED_STATES:
                status = existing.get("runtimeStatus")
                return _error(
                    500,
                    "Something went wrong while processing your request",
                    f"An Orchestration instance with the status {status} already exists.",
                    "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
                )
            self.instances[instance_id] = {
                "name": name,
                "instanceId": instance_id,
                "runtimeStatus": "Pending",
                "input": data,
                "createdTime": now,
                "lastUpdatedTime": now,
            }
        status_uri = f"{self.url}/runtime/webhooks/durabletask/instances/{instance_id}"
        return _answer(202, {"id": instance_id, "statusQueryGetUri": status_uri}, {"Location": status_uri})

    def _status(self, instance_id: str) -> Response:
        with self._instances_lock:
            instance = self.instances.get(instance_id)
            shown = None if instance is None else {k: v for k, v in instance.items() if k != "events"}
        if shown is None:
            return _answer(404)
        if shown.get("runtimeStatus") in FINISHED_STATES:
            return _answer(200, shown)
        location = f"{self.url}/durabletask/instances/{instance_id}"
        return _answer(202, shown, {"Location": location, "Retry-After": "5"})

    def _raise_event(self, instance_id: str, event: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        with self._instances_lock:
            instance = self.instances.get(instance_id)
            if instance is None:
                return _answer(404)
            if instance.get("runtimeStatus") in FINISHED_STATES:
                return _answer(410)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _error(400, "Only application/json request content is supported")
        try:
            data = _decoded(path, body)
        except ValueError as exc:
            return _error(400, "Invalid JSON content", str(exc), "Newtonsoft.Json.JsonReaderException")
        with self._instances_lock:
            instance.setdefault("events", []).append((event, data))
        return _answer(202)

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
