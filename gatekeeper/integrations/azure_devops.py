"""Azure DevOps "Invoke Azure Function" check callbacks.

The check was acknowledged within 3 seconds when it arrived; the decision goes back later as a
`TaskCompleted` event to the plan's events endpoint, authenticated with the job's `AuthToken`
(`Authorization: Bearer`, as invoke-checks.md says; the older samples used Basic with an empty user name,
which `auth_scheme="basic"` keeps available). Progress lines go to the check's live console feed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import requests

from gatekeeper.events.model import AzureDevOpsCallback
from gatekeeper.integrations.guarded_http import guarded_session
from gatekeeper.integrations.results import CallbackResult, callback_result
from gatekeeper.integrations.retry import RetryPolicy, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url

log = logging.getLogger("gatekeeper.integrations.azure_devops")

EVENTS_API_VERSION = "2.0-preview.1"
FEED_API_VERSION = "4.1"
MAX_FEED_LINE_CHARS = 1024


def plan_base(callback: AzureDevOpsCallback) -> str:
    """`{PlanUrl}{ProjectId}/_apis/distributedtask/hubs/{HubName}/plans/{PlanId}`.

    PlanUrl is `$(system.CollectionUri)`, which ends with `/`; add one only when it is missing so the
    result never contains `//`.
    """
    plan_url = callback.plan_url if callback.plan_url.endswith("/") else callback.plan_url + "/"
    return (
        f"{plan_url}{quote(callback.project_id, safe='')}/_apis/distributedtask/hubs/"
        f"{quote(callback.hub_name, safe='')}/plans/{quote(callback.plan_id, safe='')}"
    )


def task_completed_url(callback: AzureDevOpsCallback) -> str:
    return f"{plan_base(callback)}/events?api-version={EVENTS_API_VERSION}"


def task_completed_body(callback: AzureDevOpsCallback, approved: bool) -> dict[str, str]:
    """Exactly the documented body: taskId is the TaskInstanceId, jobId the JobId."""
    return {
        "name": "TaskCompleted",
        "taskId": callback.task_instance_id,
        "jobId": callback.job_id,
        "result": "succeeded" if approved else "failed",
    }


def feed_url(callback: AzureDevOpsCallback) -> str:
    return (
        f"{plan_base(callback)}/timelines/{quote(callback.timeline_id or '', safe='')}/records/"
        f"{quote(callback.job_id, safe='')}/feed?api-version={FEED_API_VERSION}"
    )


class AzureDevOpsClient:
    """Posts check decisions and progress lines back to Azure Pipelines."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        auth_scheme: Literal["bearer", "basic"] = "bearer",
        allow_loopback_http: bool = False,
    ):
        self._session = session or guarded_session(allow_loopback_http)  # the event names the plan URL
        self._policy = policy or RetryPolicy()
        self._auth_scheme = auth_scheme
        self._allow_loopback_http = allow_loopback_http

    def _headers(self, callback: AzureDevOpsCallback) -> dict[str, str]:
        token = callback.auth_token.get_secret_value()
        if self._auth_scheme == "basic":
            value = "Basic " + base64.b64encode(f":{token}".encode()).decode("ascii")
        else:
            value = f"Bearer {token}"
        return {"Authorization": value, "Content-Type": "application/json", "Accept": "application/json"}

    def _post(
        self, callback: AzureDevOpsCallback, url: str, body: dict, what: str, action: Literal["complete", "progress"]
    ) -> CallbackResult:
        try:
            check_outbound_url(url, field="callback.plan_url", allow_loopback_http=self._allow_loopback_http)
        except OutboundUrlError as exc:
            return CallbackResult(ok=False, target="azure-devops", action=action, detail=str(exc))
        if not callback.auth_token.get_secret_value():
            return CallbackResult(
                ok=False,
                target="azure-devops",
                action=action,
                detail="callback.auth_token: the check's AuthToken is empty",
            )
        outcome = send_with_retry(
            lambda: self._session.post(url, json=body, headers=self._headers(callback), timeout=self._policy.timeout),
            self._policy,
            label=f"azure devops {what}",
        )
        subject = f"azure devops {what} plan {callback.plan_id}"
        secrets = [callback.auth_token.get_secret_value()]
        return callback_result(outcome, subject, secrets, target="azure-devops", action=action, log=log)

    def complete(self, callback: AzureDevOpsCallback, approved: bool) -> CallbackResult:
        """Send `TaskCompleted` with result succeeded (approved) or failed."""
        body = task_completed_body(callback, approved)
        return self._post(callback, task_completed_url(callback), body, f"TaskCompleted {body['result']}", "complete")

    def progress(self, callback: AzureDevOpsCallback, comment: str) -> CallbackResult:
        """Append a line to the check's live console (`.../timelines/{t}/records/{jobId}/feed`)."""
        if not callback.timeline_id:
            return CallbackResult(
                ok=True,
                skipped=True,
                target="azure-devops",
                action="progress",
                detail="azure devops progress: skipped, the check sent no TimelineId header",
            )
        lines = [line[:MAX_FEED_LINE_CHARS] for line in comment.splitlines() if line.strip()] or [""]
        return self._post(
            callback, feed_url(callback), {"value": lines, "count": len(lines)}, "progress feed", "progress"
        )


class AzureDevOpsTarget:
    """The `PipelineTarget` for `azure-devops` handles: `TaskCompleted` with the decision, progress lines
    in the check's console feed."""

    def __init__(self, client: AzureDevOpsClient):
        self._client = client

    def complete(
        self, tenant_id: str, handle: AzureDevOpsCallback, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        return self._client.complete(handle, approved)

    def progress(self, tenant_id: str, handle: AzureDevOpsCallback, comment: str) -> CallbackResult:
        return self._client.progress(handle, comment)
