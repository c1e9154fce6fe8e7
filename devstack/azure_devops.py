"""Local Azure DevOps: the `TaskCompleted` event of a check (server gate callback) and the timeline
records, answering as Azure DevOps documents them."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from devstack.server import LocalServer, Response, empty_response, json_response


class LocalAzureDevOpsServer(LocalServer):
    """The plan events endpoint (`TaskCompleted`) and the timeline record feed of an Azure DevOps
    collection at `plan_url`, accepting the job's AuthToken as Bearer or as Basic password."""

    name = "local Azure DevOps"
    EVENT_KEYS = frozenset({"name", "taskId", "jobId", "result"})

    def __init__(self, auth_token: str, *, organization: str = "fabrikam"):
        super().__init__()
        self.auth_token = auth_token
        self.organization = organization
        self.completions: list[dict[str, Any]] = []
        self.feed: list[dict[str, Any]] = []

    @property
    def plan_url(self) -> str:
        """What `$(system.CollectionUri)` would be: ends with a slash."""
        return f"{self.url}/{self.organization}/"

    def _auth_scheme(self, headers: dict[str, str]) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.strip(), self.auth_token):
            return "bearer"
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if secrets.compare_digest(password, self.auth_token):
                return "basic"
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if "//" in path:
            return json_response(404, {"message": "The resource cannot be found (double slash in the path)."})
        parts = path.strip("/").split("/")
        # {org}/{project}/_apis/distributedtask/hubs/{hub}/plans/{plan}/...
        if (
            len(parts) < 8
            or parts[0] != self.organization
            or parts[2:5] != ["_apis", "distributedtask", "hubs"]
            or parts[6] != "plans"
        ):
            return json_response(404, {"message": "The resource cannot be found."})
        scheme = self._auth_scheme(headers)
        if scheme is None:
            return json_response(401, {"message": "TF400813: The user is not authorized to access this resource."})
        project, hub, plan = parts[1], parts[5], parts[7]
        try:
            document = json.loads(body or b"null")
        except ValueError:
            return json_response(400, {"message": "The request body is not valid JSON."})
        api_version = (query.get("api-version") or [""])[0]
        if method == "POST" and parts[8:] == ["events"]:
            if api_version != "2.0-preview.1":
                return json_response(
                    400, {"message": f"api-version {api_version!r} is not the documented 2.0-preview.1"}
                )
            if (
                not isinstance(document, dict)
                or set(document) != self.EVENT_KEYS
                or document["name"] != "TaskCompleted"
                or document["result"] not in ("succeeded", "failed")
            ):
                return json_response(400, {"message": "Expected {name: TaskCompleted, taskId, jobId, result}."})
            with self._lock:
                self.completions.append(
                    {"project": project, "hub": hub, "plan": plan, "body": document, "auth_scheme": scheme}
                )
            return empty_response(200)
        if (
            method == "POST"
            and len(parts) == 13
            and parts[8] == "timelines"
            and parts[10] == "records"
            and parts[12:] == ["feed"]
        ):
            if (
                not isinstance(document, dict)
                or not isinstance(document.get("value"), list)
                or document.get("count") != len(document["value"])
            ):
                return json_response(400, {"message": "Expected {value: [lines], count: n}."})
            with self._lock:
                self.feed.append({"plan": plan, "timeline": parts[9], "record": parts[11], "lines": document["value"]})
            return empty_response(200)
        return json_response(404, {"message": "The resource cannot be found."})

    def report(self) -> list[str]:
        with self._lock:
            lines = [f"Azure DevOps check console: {line}" for entry in self.feed for line in entry["lines"]]
            lines += [
                f"Azure DevOps was called back: TaskCompleted {c['body']['result']} for plan {c['plan']} "
                f"task {c['body']['taskId']}"
                for c in self.completions
            ]
        return lines
