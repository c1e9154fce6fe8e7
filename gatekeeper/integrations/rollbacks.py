"""Rollback runs on the deployment's CI, behind the `RollbackRunner` port, looked up by the policy target's
`type` (one table, like `PipelineCallbacks`):

- `github`: `POST /repos/{owner}/{repo}/actions/workflows/{id}/dispatches` with the target ref and inputs,
  then the newest `workflow_dispatch` run of that workflow since the dispatch, to its conclusion;
- `azure-devops`: `POST {organization}/{project}/_apis/pipelines/{id}/runs` with the last good commit as
  the `self` repository's version and the configured template parameters, then `GET .../runs/{runId}` to
  its result; authenticated with the tenant's `azure_devops_pipelines` PAT (Basic), and only against an
  organization registered for the tenant;
- `webhook`: a signed `rollback.requested` body to a URL under the tenant's callback URL prefixes; the CI
  acknowledges it and reports the rollback's own deployment (labelled `rollback`) through `POST /api/events`.

Failures are results (ok False), never exceptions; details never carry a token.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from gatekeeper.integrations.github_app import GitHubAppError, GitHubWorkflows
from gatekeeper.integrations.guarded_http import guarded_session
from gatekeeper.integrations.retry import RetryPolicy, describe, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url
from gatekeeper.integrations.webhook import WebhookAllowed, WebhookSecretResolver, WebhookSender
from gatekeeper.ports import RollbackOrder, RollbackRunner, RollbackStatus

PIPELINES_API_VERSION = "7.1"
ADO_RESULTS = {"succeeded": "success", "failed": "failure", "canceled": "cancelled"}


def _expand(value: str, order: RollbackOrder) -> str:
    """`{ref}`, `{commit}` and `{run_id}` in a configured value are the last known good deployment's."""
    return (
        value.replace("{ref}", order.to_ref or "")
        .replace("{commit}", order.to_commit or "")
        .replace("{run_id}", order.to_run_id or "")
    )


class GitHubRollbacks:
    def __init__(self, workflows: GitHubWorkflows):
        self._workflows = workflows

    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus:
        owner, _, repo = (order.repository or "").partition("/")
        if not owner or not repo:
            return RollbackStatus(ok=False, detail="github: the deployment names no owner/repository")
        target = order.target
        ref = _expand(target["ref"], order) if target.get("ref") else (order.to_ref or "")
        if not ref:
            return RollbackStatus(ok=False, detail="github: no ref to roll back to (target.ref or the last good ref)")
        inputs = {k: _expand(str(v), order) for k, v in (target.get("inputs") or {}).items()}
        result = self._workflows.dispatch(tenant_id, owner, repo, str(target["workflow"]), ref, inputs)
        return RollbackStatus(ok=result.ok, detail=result.detail)

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus:
        owner, _, repo = (order.repository or "").partition("/")
        if not isinstance(order.ordered_at, datetime):
            return RollbackStatus(ok=False, detail="github: the rollback was never dispatched")
        since = order.ordered_at - timedelta(seconds=60)  # clock skew between us and GitHub
        try:
            found = self._workflows.latest_run(tenant_id, owner, repo, str(order.target["workflow"]), since)
        except GitHubAppError as exc:
            return RollbackStatus(ok=False, detail=exc.result.detail)
        if found is None:
            return RollbackStatus(ok=True, detail="the rollback run is not listed yet")
        done = found["status"] == "completed"
        return RollbackStatus(
            ok=True,
            done=done,
            conclusion=str(found["conclusion"] or "unknown") if done else None,
            run_id=found["id"],
            url=found["html_url"],
            detail=f"run {found['id']} is {found['conclusion'] if done else found['status']}",
        )


class AzureDevOpsRollbacks:
    """Queues the configured pipeline and follows the run (Pipelines REST API 7.1)."""

    def __init__(
        self,
        pat_for: Callable[[str], str | None],
        organization_allowed: Callable[[str, str], bool],
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        allow_loopback_http: bool = False,
    ):
        self._pat_for = pat_for
        self._allowed = organization_allowed
        self._session = session or guarded_session(allow_loopback_http)  # the tenant names the organization
        self._policy = policy or RetryPolicy()
        self._allow_loopback_http = allow_loopback_http

    def _base(self, tenant_id: str, target: Mapping[str, Any]) -> tuple[str, str] | RollbackStatus:
        organization = str(target["organization"]).rstrip("/")
        if not self._allowed(tenant_id, organization):
            return RollbackStatus(
                ok=False,
                detail=(
                    "target.organization: not an Azure DevOps organization registered for the tenant; nothing was sent"
                ),
            )
        try:
            check_outbound_url(organization, field="target.organization", allow_loopback_http=self._allow_loopback_http)
        except OutboundUrlError as exc:
            return RollbackStatus(ok=False, detail=str(exc))
        pat = self._pat_for(tenant_id)
        if not pat:
            return RollbackStatus(ok=False, detail="azure devops: the tenant has no azure_devops_pipelines secret")
        base = f"{organization}/{quote(str(target['project']), safe='')}/_apis/pipelines/{int(target['pipeline_id'])}"
        return base, pat

    def _headers(self, pat: str) -> dict[str, str]:
        token = base64.b64encode(f":{pat}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}", "Content-Type": "application/json", "Accept": "application/json"}

    def _status(self, body: Any, detail: str) -> RollbackStatus:
        state = str(body.get("state") or "")
        result = body.get("result")
        done = state == "completed"
        links = body.get("_links") or {}
        return RollbackStatus(
            ok=True,
            done=done,
            conclusion=ADO_RESULTS.get(str(result), str(result or "unknown")) if done else None,
            run_id=str(body.get("id")) if body.get("id") is not None else None,
            url=(links.get("web") or {}).get("href"),
            detail=detail,
        )

    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus:
        found = self._base(tenant_id, order.target)
        if isinstance(found, RollbackStatus):
            return found
        base, pat = found
        body: dict[str, Any] = {
            "templateParameters": {k: _expand(str(v), order) for k, v in (order.target.get("parameters") or {}).items()}
        }
        if order.to_commit or order.to_ref:
            self_repo = {k: v for k, v in (("refName", order.to_ref), ("version", order.to_commit)) if v}
            body["resources"] = {"repositories": {"self": self_repo}}
        url = f"{base}/runs?api-version={PIPELINES_API_VERSION}"
        outcome = send_with_retry(
            lambda: self._session.post(url, json=body, headers=self._headers(pat), timeout=self._policy.timeout),
            self._policy,
            label="azure devops pipeline run",
        )
        detail = describe(outcome, f"azure devops run of pipeline {order.target['pipeline_id']}", [pat])
        if not outcome.ok or outcome.response is None:
            return RollbackStatus(ok=False, detail=detail)
        return self._status(outcome.response.json(), detail)

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus:
        if not run_id or not run_id.isdigit():
            return RollbackStatus(ok=False, detail="azure devops: the rollback run has no id to follow")
        found = self._base(tenant_id, order.target)
        if isinstance(found, RollbackStatus):
            return found
        base, pat = found
        url = f"{base}/runs/{run_id}?api-version={PIPELINES_API_VERSION}"
        outcome = send_with_retry(
            lambda: self._session.get(url, headers=self._headers(pat), timeout=self._policy.timeout),
            self._policy,
            label="azure devops pipeline run state",
        )
        detail = describe(outcome, f"azure devops run {run_id}", [pat])
        if not outcome.ok or outcome.response is None:
            return RollbackStatus(ok=False, detail=detail)
        return self._status(outcome.response.json(), f"run {run_id}")


class WebhookRollbacks:
    """A signed `rollback.requested` webhook; the CI's acknowledgement is the end Gatekeeper can see, and
    the rollback's own deployment comes back as an event labelled `rollback` (watched, never rolled back)."""

    def __init__(
        self,
        sender: WebhookSender,
        secret: WebhookSecretResolver,
        allowed: WebhookAllowed,
        clock: Callable[[], float] = time.time,
    ):
        self._sender = sender
        self._secret = secret
        self._allowed = allowed
        self._clock = clock

    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus:
        url = str(order.target["url"])
        if not self._allowed(tenant_id, url):
            return RollbackStatus(
                ok=False,
                detail="target.url: not under a callback URL prefix registered for the tenant; nothing was sent",
            )
        try:
            secret = self._secret(tenant_id)
        except LookupError as exc:
            return RollbackStatus(ok=False, detail=str(exc))
        payload = {
            "tenant_id": tenant_id,
            "watch_id": order.watch_id,
            "repository": order.repository,
            "environment": order.environment,
            "to": {"ref": order.to_ref, "commit": order.to_commit, "run_id": order.to_run_id},
            "labels": ["rollback"],
            "sent_at": int(self._clock()),
        }
        result = self._sender.send(url, secret, "rollback.requested", payload, delivery_id=order.watch_id)
        return RollbackStatus(
            ok=result.ok, done=result.ok, conclusion="success" if result.ok else None, detail=result.detail
        )

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus:
        return RollbackStatus(ok=True, done=True, conclusion="success", detail="acknowledged by the CI")


class RollbackRunners:
    """The `RollbackRunner` for a target's `type`; a type without one is a result naming what is missing."""

    def __init__(self, runners: Mapping[str, RollbackRunner]):
        self._runners = dict(runners)

    def _runner(self, order: RollbackOrder) -> RollbackRunner | RollbackStatus:
        kind = str(order.target.get("type", ""))
        runner = self._runners.get(kind)
        if runner is None:
            missing = {"github": "the GitHub App (GATEKEEPER_GITHUB_APP_ID)"}.get(kind, f"a {kind!r} runner")
            return RollbackStatus(ok=False, detail=f"{kind} rollback: {missing} is not configured")
        return runner

    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus:
        runner = self._runner(order)
        if isinstance(runner, RollbackStatus):
            return runner
        try:
            return runner.dispatch(tenant_id, order)
        except Exception as exc:  # a bug must still reach the audit log and people, as a failed rollback
            return RollbackStatus(ok=False, detail=f"rollback dispatch: unexpected {type(exc).__name__}")

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus:
        runner = self._runner(order)
        if isinstance(runner, RollbackStatus):
            return runner
        try:
            return runner.follow(tenant_id, order, run_id)
        except Exception as exc:
            return RollbackStatus(ok=False, detail=f"rollback follow: unexpected {type(exc).__name__}")
