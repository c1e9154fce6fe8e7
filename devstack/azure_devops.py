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
        # Pipelines runs API (rollback pipelines): a PAT (Basic), the queued runs, and the result the next
        # runs report once asked about (None: they stay inProgress).
        self.pipelines_pat: str | None = None
        self.pipeline_runs: list[dict[str, Any]] = []
        self.run_result: str | None = "succeeded"

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
        if len(parts) >= 6 and parts[0] == self.organization and parts[2:4] == ["_apis", "pipelines"]:
            return self._pipelines(method, parts, query, headers, body)
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

    def _pipelines(
        self, method: str, parts: list[str], query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        """`POST {org}/{project}/_apis/pipelines/{id}/runs` (queue a run; body: resources, templateParameters)
        and `GET .../runs/{runId}` (state, result), api-version 7.1, PAT as the Basic password."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            password = ""
        if (
            scheme.lower() != "basic"
            or not self.pipelines_pat
            or not secrets.compare_digest(password, self.pipelines_pat)
        ):
            return json_response(401, {"message": "TF400813: The user is not authorized to access this resource."})
        if (query.get("api-version") or [""])[0] != "7.1":
            return json_response(400, {"message": "api-version 7.1 is required"})
        project, pipeline = parts[1], parts[4]
        if not pipeline.isdigit() or parts[5] != "runs":
            return json_response(404, {"message": "The resource cannot be found."})
        if method == "POST" and len(parts) == 6:
            try:
                document = json.loads(body or b"null")
            except ValueError:
                return json_response(400, {"message": "The request body is not valid JSON."})
            if not isinstance(document, dict) or set(document) - {"resources", "templateParameters", "variables"}:
                return json_response(400, {"message": "Expected {resources, templateParameters, variables}."})
            with self._lock:
                run_id = 500 + len(self.pipeline_runs)
                run = {
                    "id": run_id,
                    "project": project,
                    "pipeline": int(pipeline),
                    "body": document,
                    "state": "completed" if self.run_result else "inProgress",
                    "result": self.run_result,
                }
                self.pipeline_runs.append(run)
            return json_response(200, self._run_json(run))
        if method == "GET" and len(parts) == 7 and parts[6].isdigit():
            with self._lock:
                found = next((r for r in self.pipeline_runs if r["id"] == int(parts[6])), None)
            if found is None:
                return json_response(404, {"message": f"Run {parts[6]} was not found."})
            return json_response(200, self._run_json(found))
        return json_response(404, {"message": "The resource cannot be found."})

    def _run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        web = f"{self.url}/{self.organization}/{run['project']}/_build/results?buildId={run['id']}"
        answer = {
            "id": run["id"],
            "name": f"rollback-{run['id']}",
            "state": run["state"],
            "pipeline": {"id": run["pipeline"]},
            "_links": {"web": {"href": web}},
        }
        if run["result"] and run["state"] == "completed":
            answer["result"] = run["result"]
        return answer

    def finish_run(self, run_id: int, result: str) -> None:
        with self._lock:
            for run in self.pipeline_runs:
                if run["id"] == run_id:
                    run.update(state="completed", result=result)

    def report(self) -> list[str]:
        with self._lock:
            lines = [f"Azure DevOps check console: {line}" for entry in self.feed for line in entry["lines"]]
            lines += [
                f"Azure DevOps was called back: TaskCompleted {c['body']['result']} for plan {c['plan']} "
                f"task {c['body']['taskId']}"
                for c in self.completions
            ]
        return lines
