"""One entry point for answering a waiting pipeline, whatever CI it is.

The orchestrator's callback activity calls `complete` (the decision) or `progress` (a status line while the
gate waits) with the event's callback handle. Failures come back as a `CallbackResult` with ok=False, never
as an exception, so the activity can audit the failure and alert a human: a gate never leaves a pipeline
waiting silently (see `failure_alert`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gatekeeper.events.model import AzureDevOpsCallback, CallbackHandle, GitHubCallback, WebhookCallback
from gatekeeper.integrations.azure_devops import AzureDevOpsClient
from gatekeeper.integrations.github_app import GitHubApp
from gatekeeper.integrations.notify import Notification
from gatekeeper.integrations.results import CallbackResult
from gatekeeper.integrations.webhook import WebhookSender

log = logging.getLogger("gatekeeper.integrations.callbacks")

_HANDLE = TypeAdapter(CallbackHandle)

WebhookSecretResolver = Callable[[str], bytes]
"""tenant id -> that tenant's webhook signing secret (resolved from its secret reference)."""

WebhookAllowed = Callable[[str, str], bool]
"""(tenant id, url) -> whether the URL lies under the tenant's registered callback URL prefixes."""

__all__ = ["CallbackResult", "PipelineCallbacks", "failure_alert"]


class PipelineCallbacks:
    """Dispatches by callback type. A missing adapter is a configuration error reported in the result."""

    def __init__(
        self,
        *,
        github: GitHubApp | None = None,
        azure_devops: AzureDevOpsClient | None = None,
        webhooks: WebhookSender | None = None,
        webhook_secret: WebhookSecretResolver | None = None,
        webhook_allowed: WebhookAllowed | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._github = github
        self._ado = azure_devops
        self._webhooks = webhooks
        self._webhook_secret = webhook_secret
        self._webhook_allowed = webhook_allowed
        self._clock = clock

    def complete(
        self,
        tenant_id: str,
        callback: CallbackHandle | Mapping[str, Any],
        approved: bool,
        comment: str,
        context: Mapping[str, Any] | None = None,
    ) -> CallbackResult:
        """Tell the pipeline the gate's decision: GitHub approved/rejected, ADO succeeded/failed, or a
        signed `gate.completed` webhook."""
        return self._guard(
            tenant_id,
            callback,
            "complete",
            lambda handle: self._complete(tenant_id, handle, approved, comment, context or {}),
        )

    def progress(self, tenant_id: str, callback: CallbackHandle | Mapping[str, Any], comment: str) -> CallbackResult:
        """A status line while the gate waits: a GitHub comment-only review (budgeted), a line in the ADO
        check's console, or a signed `gate.progress` webhook."""
        return self._guard(tenant_id, callback, "progress", lambda handle: self._progress(tenant_id, handle, comment))

    # --- internals ------------------------------------------------------------------------------------

    def _guard(
        self, tenant_id: str, callback: Any, action: str, call: Callable[[CallbackHandle], CallbackResult]
    ) -> CallbackResult:
        try:
            handle = (
                callback
                if isinstance(callback, GitHubCallback | AzureDevOpsCallback | WebhookCallback)
                else _HANDLE.validate_python(callback)
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "callback"
            return CallbackResult(
                ok=False,
                action=action,  # type: ignore[arg-type]
                detail=f"callback.{where}: {first.get('msg', 'invalid')}",
            )
        try:
            return call(handle)
        except Exception as exc:  # a bug must still reach the audit log and an operator
            log.exception("callback %s for tenant %s failed unexpectedly", action, tenant_id)
            return CallbackResult(
                ok=False,
                target=handle.type,
                action=action,  # type: ignore[arg-type]
                detail=f"{handle.type} {action}: unexpected {type(exc).__name__}",
            )

    def _missing(self, handle: CallbackHandle, action: str, what: str) -> CallbackResult:
        return CallbackResult(
            ok=False,
            target=handle.type,
            action=action,  # type: ignore[arg-type]
            detail=f"{handle.type} {action}: {what} is not configured",
        )

    def _complete(
        self, tenant_id: str, handle: CallbackHandle, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        if isinstance(handle, GitHubCallback):
            if self._github is None:
                return self._missing(handle, "complete", "the GitHub App (GATEKEEPER_GITHUB_APP_ID)")
            return self._github.decide(handle, approved, comment, tenant_id=tenant_id)
        if isinstance(handle, AzureDevOpsCallback):
            if self._ado is None:
                return self._missing(handle, "complete", "the Azure DevOps client")
            return self._ado.complete(handle, approved)
        payload = {
            "tenant_id": tenant_id,
            "approved": approved,
            "state": "approved" if approved else "rejected",
            "comment": comment,
            "context": dict(context),
            "sent_at": int(self._clock()),
        }
        return self._send_webhook(tenant_id, handle, "gate.completed", payload, "complete")

    def _progress(self, tenant_id: str, handle: CallbackHandle, comment: str) -> CallbackResult:
        if isinstance(handle, GitHubCallback):
            if self._github is None:
                return self._missing(handle, "progress", "the GitHub App (GATEKEEPER_GITHUB_APP_ID)")
            return self._github.progress(handle, comment, tenant_id=tenant_id)
        if isinstance(handle, AzureDevOpsCallback):
            if self._ado is None:
                return self._missing(handle, "progress", "the Azure DevOps client")
            return self._ado.progress(handle, comment)
        payload = {"tenant_id": tenant_id, "comment": comment, "sent_at": int(self._clock())}
        return self._send_webhook(tenant_id, handle, "gate.progress", payload, "progress")

    def _send_webhook(
        self, tenant_id: str, handle: WebhookCallback, event: str, payload: dict, action: str
    ) -> CallbackResult:
        if self._webhooks is None or self._webhook_secret is None:
            return self._missing(handle, action, "the webhook sender or the tenant's signing secret")
        if self._webhook_allowed is not None and not self._webhook_allowed(tenant_id, handle.url):
            return CallbackResult(
                ok=False,
                target="webhook",
                action=action,  # type: ignore[arg-type]
                detail="callback.url: not under a callback URL prefix registered for the tenant; nothing was sent",
            )
        secret = self._webhook_secret(tenant_id)
        return self._webhooks.send(handle.url, secret, event, payload, action=action)  # type: ignore[arg-type]


def failure_alert(
    result: CallbackResult,
    *,
    recipients: tuple[str, ...] | list[str],
    instance_id: str | None = None,
    link: str | None = None,
) -> Notification:
    """The alert for a callback that finally failed: the pipeline is still waiting and a human must
    finish it by hand (or re-run the callback)."""
    target = {"github": "GitHub", "azure-devops": "Azure DevOps", "webhook": "the CI webhook"}.get(
        result.target or "", "the pipeline"
    )
    return Notification(
        kind="alert",
        recipients=tuple(recipients),
        title=f"Callback to {target} failed; the pipeline may still be waiting",
        text=(
            f"{result.detail}\nThe gate's decision could not be delivered. Complete the deployment "
            "step by hand in the CI, or retry the callback."
        ),
        link=link,
        instance_id=instance_id,
    )
