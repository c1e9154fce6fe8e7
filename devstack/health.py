"""A local service's health endpoint for the post-deploy watch: `GET /health` answers
`200 {"status": "ok"}` until the probe numbered `unhealthy_from` (0-based), then `503 {"status": "degraded"}`;
from `garbled_from` on it answers 200 with a body that is not JSON (a probe that cannot be evaluated).
Every probe is recorded like any local server's request. Development only, never deployed.
"""

from __future__ import annotations

from typing import Any

from devstack.server import LocalServer, Response, json_response


class LocalHealthServer(LocalServer):
    name = "local health endpoint"

    def __init__(self, *, unhealthy_from: int | None = None, garbled_from: int | None = None) -> None:
        super().__init__()
        self.unhealthy_from = unhealthy_from
        self.garbled_from = garbled_from
        self.probes = 0

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method != "GET" or path != "/health":
            return json_response(404, {"message": "Not Found"})
        with self._lock:
            seen = self.probes
            self.probes += 1
        if self.garbled_from is not None and seen >= self.garbled_from:
            return 200, {"Content-Type": "application/json"}, b"<html>gateway says hello</html>"
        if self.unhealthy_from is not None and seen >= self.unhealthy_from:
            return json_response(503, {"status": "degraded", "probe": seen})
        answer: dict[str, Any] = {"status": "ok", "probe": seen}
        return json_response(200, answer)
