"""Local Log Analytics query API for the watch's KQL probes: `POST /v1/workspaces/{id}/query` with
`{"query", "timespan"}` over TLS (the SDK sends bearer tokens over https only: a throw-away CA, as the local
Key Vault does), answering in the documented shape `{"tables": [{"name", "columns", "rows"}]}`.

The value a query returns is `current` for the probe's own span (an ISO 8601 duration such as `PT15M`) and
`baseline` for a span with a start and end (`start/end`: the pre-deploy baseline); `partial` adds the
service's partial-error body. Only `workspaces` answer (404 otherwise); a wrong token is 401.
"""

from __future__ import annotations

import json
from typing import Any

from devstack.server import Response, StaticTokenCredential, bearer_token, json_response
from devstack.tls import TlsLocalServer


class LocalLogAnalyticsServer(TlsLocalServer):
    name = "local Log Analytics"

    def __init__(self, workspaces: set[str], *, token: str = "local-log-analytics-token") -> None:  # noqa: S107
        super().__init__()
        self.workspaces = {w.lower() for w in workspaces}
        self.token = token
        self.current: float | None = 0.01
        self.baseline: float | None = 0.01
        self.partial = False
        self.queries: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def credential(self) -> StaticTokenCredential:
        return StaticTokenCredential(self.token)

    def client_kwargs(self) -> dict[str, Any]:
        return {"connection_verify": self.ca_file, "retry_total": 0}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 4 or parts[0] != "v1" or parts[1] != "workspaces" or parts[3] != "query":
            return json_response(404, {"error": {"code": "PathNotFoundError", "message": "Not found"}})
        if bearer_token(headers) != self.token:
            return json_response(
                401,
                {"error": {"code": "AuthorizationRequiredError", "message": "Valid authentication was not provided"}},
            )
        if parts[2].lower() not in self.workspaces:
            return json_response(404, {"error": {"code": "WorkspaceNotFoundError", "message": "Workspace not found"}})
        try:
            document = json.loads(body or b"null")
        except ValueError:
            return json_response(
                400, {"error": {"code": "BadArgumentError", "message": "The request had invalid JSON"}}
            )
        if not isinstance(document, dict) or not isinstance(document.get("query"), str):
            return json_response(400, {"error": {"code": "BadArgumentError", "message": "query is required"}})
        timespan = str(document.get("timespan") or "")
        with self._lock:
            self.queries.append({"workspace": parts[2], "query": document["query"], "timespan": timespan})
        value = self.baseline if "/" in timespan else self.current
        rows = [] if value is None else [[value]]
        answer: dict[str, Any] = {
            "tables": [{"name": "PrimaryResult", "columns": [{"name": "value", "type": "real"}], "rows": rows}]
        }
        if self.partial:
            answer["error"] = {"code": "PartialError", "message": "There were some errors when processing your query."}
        return json_response(200, answer)
