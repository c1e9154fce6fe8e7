"""A CONTRACT DOUBLE of the action-approval API (`/api/actions`), for the clients' tests only.

It speaks the issue-13 contract (docs/guard-a-step.md; the real routes are built on branch wt-actions): the
tenant API key (`X-Gatekeeper-Tenant` + `x-functions-key`) or a bearer token, 200/202 answers by level,
idempotent re-requests, 409 `idempotency-key-reused`, long polling with `?wait=0..25` (422 naming `wait`
beyond), cancel (409 once decided), report (409 `not-approved` for `executed` on a denied action), RFC 9457
problems naming the field. It stands in for the server so the clients can be tested before (and besides)
the end-to-end tests against the real registered functions; it decides nothing itself: a test sets each
action's level and decides it (`decide`), or lets `auto_decide` do it after a number of polls.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.server import LocalServer, Response, bearer_token, json_response

KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
KINDS = {
    "build",
    "test",
    "deploy",
    "rollback",
    "infrastructure_change",
    "privilege_escalation",
    "data_export",
    "secret_access",
}


def command_text(command: str | list[str]) -> str:
    """The command as the server shows it: text as given, argv shell-quoted."""
    return shlex.join(command) if isinstance(command, list) else command


def problem(status: int, code: str, detail: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"type": f"https://gatekeeper.dev/problems/{code}", "title": code, "status": status}
    body["detail"] = detail
    if field:
        body["field"] = field
    return status, {"Content-Type": "application/problem+json"}, json.dumps(body).encode()


@dataclass
class Action:
    id: str
    tenant: str
    requester: str
    body: dict[str, Any]
    level: str
    status: str
    decision: str | None = None
    reason: str = "awaiting approval"
    decided_by: str | None = None
    decided_at: str | None = None
    outcome: str | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0


class ActionsContractDouble(LocalServer):
    name = "actions contract double"

    def __init__(self) -> None:
        super().__init__()
        self.api_keys: dict[str, str] = {}  # tenant -> key
        self.tokens: dict[str, tuple[str, str]] = {}  # bearer token -> (tenant, requester)
        self.level_for: Callable[[dict[str, Any]], str] = lambda body: "L2"
        self.auto_decide: tuple[int, str, str] | None = None  # (after N polls, status, decided_by)
        self.actions: dict[str, Action] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.audit: list[tuple[str, str, str]] = []  # (action id, what, detail)
        self.redirect_next: str | None = None  # answer the next request with a 307 to this URL
        self._changed = threading.Condition()
        self._counter = 0

    # -- what a test does -----------------------------------------------------------------------------------

    def decide(self, action_id: str, status: str, decided_by: str = "Jane Approver", reason: str | None = None) -> None:
        with self._changed:
            action = self.actions[action_id]
            action.status = status
            action.decision = "approved" if status == "approved" else "denied"
            action.decided_by = decided_by
            action.reason = reason or f"approval chain {status}"
            action.decided_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.audit.append((action_id, status, decided_by))
            self._changed.notify_all()

    def decide_when_requested(self, status: str, after: float = 0.3, decided_by: str = "Jane Approver") -> None:
        """From a thread: once the first action exists, decide it `after` seconds later (a person clicking)."""

        def run() -> None:
            deadline = time.monotonic() + 10
            while not self.actions and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(after)
            if self.actions:
                self.decide(next(iter(self.actions)), status, decided_by)

        threading.Thread(target=run, daemon=True, name="decide-later").start()

    def only_action(self) -> Action:
        assert len(self.actions) == 1, list(self.actions)
        return next(iter(self.actions.values()))

    # -- the contract -----------------------------------------------------------------------------------------

    def _caller(self, headers: dict[str, str]) -> tuple[str, str] | None:
        token = bearer_token(headers)
        if token is not None:
            return self.tokens.get(token)
        tenant, key = headers.get("x-gatekeeper-tenant"), headers.get("x-functions-key")
        if tenant and key and self.api_keys.get(tenant) == key:
            return tenant, f"api-key:{tenant}"
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if self.redirect_next is not None:
            location, self.redirect_next = self.redirect_next, None
            return 307, {"Location": location + path}, b""
        caller = self._caller(headers)
        if caller is None:
            return problem(401, "unauthenticated", "The request could not be authenticated.")
        tenant, requester = caller
        parts = path.strip("/").split("/")
        if parts[:2] != ["api", "actions"]:
            return problem(404, "not-found", "no such route")
        if method == "POST" and len(parts) == 2:
            return self._create(tenant, requester, body)
        if len(parts) < 3 or (action := self.actions.get(parts[2])) is None or action.tenant != tenant:
            return problem(404, "not-found", "no such action", "id")
        if method == "GET" and len(parts) == 3:
            return self._get(action, query)
        if method == "POST" and parts[3:] == ["cancel"]:
            return self._cancel(action)
        if method == "POST" and parts[3:] == ["report"]:
            return self._report(action, body)
        return problem(405, "method-not-allowed", "no such route")

    def _base(self) -> str:
        return self.url

    def _view(self, action: Action) -> dict[str, Any]:
        return {
            "id": action.id,
            "status": action.status,
            "level": action.level,
            "decision": action.decision,
            "reason": action.reason,
            "decided_by": action.decided_by,
            "decided_at": action.decided_at,
            "approval_url": self._approval_url(action),
            "command": command_text(action.body["command"]),
            "action": action.body["action"],
            "environment": action.body["target"]["environment"],
            "outcome": action.outcome,
        }

    def _approval_url(self, action: Action) -> str | None:
        return f"{self._base()}/api/approvals/gate-{action.id}/page" if action.level == "L2" else None

    def _answer(self, action: Action) -> Response:
        """The POST's answer as the contract gives it: 202 pending with the approval URL, else 200 decided."""
        status_url = f"{self._base()}/api/actions/{action.id}"
        body: dict[str, Any] = {"id": action.id, "level": action.level, "status_url": status_url}
        if action.status == "pending":
            body |= {"status": "pending", "approval_url": self._approval_url(action)}
            return json_response(202, body, {"Location": status_url})
        body |= {"status": action.status, "decision": action.decision, "reason": action.reason}
        return json_response(200, body)

    def _create(self, tenant: str, requester: str, raw: bytes) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return problem(400, "malformed-request", "not JSON")
        if not isinstance(body, dict):
            return problem(422, "validation-failed", "expected an object", "$")
        command = body.get("command")
        if not (isinstance(command, str) and command) and not (isinstance(command, list) and command):
            return problem(422, "validation-failed", "command is required", "command")
        if body.get("action") not in KINDS:
            return problem(422, "validation-failed", "unknown action kind", "action")
        target = body.get("target")
        if not isinstance(target, dict) or not isinstance(target.get("environment"), str):
            return problem(422, "validation-failed", "environment is required", "target.environment")
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            return problem(422, "validation-failed", "idempotency_key is required", "idempotency_key")
        with self._changed:
            existing = self.by_key.get((tenant, key))
            if existing is not None:
                action = self.actions[existing]
                if action.body["command"] != command:
                    return problem(409, "idempotency-key-reused", "the key names another command", "idempotency_key")
            else:
                self._counter += 1
                level = self.level_for(body)
                status = {"L0": "approved", "L1": "approved", "L3": "human_only"}.get(level, "pending")
                action = Action(f"act-{self._counter:04d}", tenant, requester, body, level, status)
                if status == "approved":
                    action.decision, action.reason = "approved", f"{level}: approved at once"
                elif status == "human_only":
                    action.decision, action.reason = "denied", "policy: human only"
                self.actions[action.id] = action
                self.by_key[(tenant, key)] = action.id
                self.audit.append((action.id, "requested", requester))
        return self._answer(action)

    def _get(self, action: Action, query: dict[str, list[str]]) -> Response:
        raw = query.get("wait", ["0"])[-1]
        if not raw.isdigit() or int(raw) > 25:
            return problem(422, "validation-failed", "wait must be 0..25 seconds", "wait")
        deadline = time.monotonic() + int(raw)
        with self._changed:
            action.polls += 1
            if self.auto_decide and action.status == "pending" and action.polls >= self.auto_decide[0]:
                _, status, who = self.auto_decide
                self._changed.release()
                try:
                    self.decide(action.id, status, who)
                finally:
                    self._changed.acquire()
            while action.status == "pending" and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return json_response(200, self._view(action))

    def _cancel(self, action: Action) -> Response:
        with self._changed:
            if action.status != "pending":
                return problem(409, "already-decided", "the action is already decided", "id")
            action.status, action.decision, action.reason = "cancelled", "denied", "cancelled by the requester"
            self.audit.append((action.id, "cancelled", action.requester))
            self._changed.notify_all()
            return json_response(200, self._view(action))

    def _report(self, action: Action, raw: bytes) -> Response:
        body = json.loads(raw or b"{}")
        outcome = body.get("outcome")
        if outcome not in ("executed", "skipped"):
            return problem(422, "validation-failed", "outcome must be executed or skipped", "outcome")
        if len(str(body.get("detail", ""))) > 500:
            return problem(422, "validation-failed", "detail is over 500 characters", "detail")
        with self._changed:
            action.reports.append(body)
            if outcome == "executed" and action.status != "approved":
                self.audit.append((action.id, "execution-attempt-refused", outcome))
                return problem(409, "not-approved", "the action was not approved", "outcome")
            action.outcome = outcome
            self.audit.append((action.id, outcome, str(body.get("exit_code"))))
        return 202, {}, b""


class GitHubIdTokenEndpoint(LocalServer):
    """A stand-in for the runner's `ACTIONS_ID_TOKEN_REQUEST_URL`: checks the request token and answers
    `{"value": <token>}` for the audience asked, minting tokens with `mint(audience) -> str`."""

    name = "github id-token endpoint double"

    def __init__(self, request_token: str, mint: Callable[[str], str]) -> None:
        super().__init__()
        self.request_token = request_token
        self.mint = mint

    @property
    def request_url(self) -> str:
        return f"{self.url}/_apis/pipelines/1/runs/2/idtoken?api-version=2.0"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if headers.get("authorization") != f"bearer {self.request_token}":
            return json_response(401, {"message": "bad request token"})
        if query.get("api-version") != ["2.0"] or len(query.get("audience", [])) != 1:
            return json_response(400, {"message": "api-version and one audience expected"})
        return json_response(200, {"value": self.mint(query["audience"][0])})


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped string (no signature) for the contract double, which compares tokens as strings."""
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"
