"""A small local server that answers the Durable Functions extension's HTTP API, as the Functions host
does for out-of-process workers (`rpcBaseUrl`): start an orchestration, get an instance's status, and
raise an event. The real `DurableOrchestrationClient` is pointed at it."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

START = re.compile(r"^/durabletask/orchestrators/(?P<name>[^/?]+)(/(?P<id>[^/?]+))?")
STATUS = re.compile(r"^/durabletask/instances/(?P<id>[^/?]+)(\?.*)?$")
RAISE = re.compile(r"^/durabletask/instances/(?P<id>[^/?]+)/raiseEvent/(?P<event>[^/?]+)")


class DurableApiServer:
    def __init__(self, task_hub: str = "GatekeeperTest"):
        self.task_hub = task_hub
        self.instances: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next_starts = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def do_POST(self) -> None:
                body = self._body()
                if START.match(self.path) and isinstance(body, str):
                    # The Python SDK sends the input already serialised: a JSON string holding JSON.
                    body = json.loads(body)
                server.requests.append(("POST", self.path, body))
                if match := RAISE.match(self.path):
                    instance = server.instances.get(match["id"])
                    if instance is None:
                        return self._send(404)
                    instance.setdefault("events", []).append((match["event"], body))
                    return self._send(202)
                if match := START.match(self.path):
                    if server.fail_next_starts:
                        server.fail_next_starts -= 1
                        return self._send(500, {"Message": "storage unavailable"})
                    instance_id = match["id"] or "generated"
                    now = datetime.now(UTC).isoformat()
                    server.instances[instance_id] = {
                        "name": match["name"],
                        "instanceId": instance_id,
                        "runtimeStatus": "Pending",
                        "input": body,
                        "createdTime": now,
                        "lastUpdatedTime": now,
                    }
                    base = f"http://127.0.0.1:{server.port}/runtime/webhooks/durabletask/instances/{instance_id}"
                    return self._send(202, {"id": instance_id, "statusQueryGetUri": base})
                return self._send(404)

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path, None))
                if match := STATUS.match(self.path):
                    instance = server.instances.get(match["id"])
                    if instance is None:
                        return self._send(404)
                    public = {k: v for k, v in instance.items() if k != "events"}
                    return self._send(202, public)
                return self._send(404)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def client_binding(self) -> str:
        """The JSON the Functions host hands a `durable_client_input` binding."""
        base = f"http://127.0.0.1:{self.port}"
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {},
                "managementUrls": {},
                "baseUrl": f"{base}/runtime/webhooks/durabletask",
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": f"{base}/durabletask/",
            }
        )

    def __enter__(self) -> DurableApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
