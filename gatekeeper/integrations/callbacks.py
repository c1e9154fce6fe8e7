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
from gatekeeper.integrations.azure_devops import AzureDevOpsClient, AzureDevOpsTarget
from gatekeeper.integrations.github_app import GitHubApp, GitHubTarget
from gatekeeper.integrations.notify import Notification
from gatekeeper.integrations.results import CallbackResult
from gatekeeper.integrations.webhook import WebhookAllowed, WebhookSecretResolver, WebhookSender, WebhookTarget
from gatekeeper.ports import PipelineTarget

log = logging.getLogger("gatekeeper.integrations.callbacks")

_HANDLE = TypeAdapter(CallbackHandle)

NOT_CONFIGURED: dict[str, str] = {
    "github": "the GitHub App (GATEKEEPER_GITHUB_APP_ID)",
    "azure-devops": "the Azure DevOps client",
    "webhook": "the webhook sender or the tenant's signing secret",
}
"""Handle type -> what is missing when no adapter serves it (named in the failed result)."""

__all__ = [
    "CallbackResult",
    "PipelineCallbacks",
    "WebhookAllowed",
    "WebhookSecretResolver",
    "failure_alert",
]


class PipelineCallbacks:
    """Looks up the `PipelineTarget` for the callback handle's `type` in one table. A type without an
    adapter is a configuration error reported in the result.

    The keyword arguments build the table for the three built-in CIs; `targets` adds or replaces entries
    (a new CI is an adapter plus its handle type)."""

    def __init__(
        self,
        *,
        github: GitHubApp | None = None,
        azure_devops: AzureDevOpsClient | None = None,
        webhooks: WebhookSender | None = None,
        webhook_secret: WebhookSecretResolver | None = None,
        webhook_allowed: WebhookAllowed | None = None,
        clock: Callable[[], float] = time.time,
        targets: Mapping[str, PipelineTarget] | None = None,
    ):
        table: dict[str, PipelineTarget] = {}
        if github is not None:
            table["github"] = GitHubTarget(github)
        if azure_devops is not None:
            table["azure-devops"] = AzureDevOpsTarget(azure_devops)
        if webhooks is not None and webhook_secret is not None:
            table["webhook"] = WebhookTarget(webhooks, webhook_secret, allowed=webhook_allowed, clock=clock)
        table.update(targets or {})
        self._targets: Mapping[str, PipelineTarget] = table

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
            lambda target, handle: target.complete(tenant_id, handle, approved, comment, context or {}),
        )

    def progress(self, tenant_id: str, callback: CallbackHandle | Mapping[str, Any], comment: str) -> CallbackResult:
        """A status line while the gate waits: a GitHub comment-only review (budgeted), a line in the ADO
        check's console, or a signed `gate.progress` webhook."""
        return self._guard(
            tenant_id, callback, "progress", lambda target, handle: target.progress(tenant_id, handle, comment)
        )

    # --- internals ------------------------------------------------------------------------------------

    def _guard(
        self,
        tenant_id: str,
        callback: Any,
        action: str,
        call: Callable[[PipelineTarget, CallbackHandle], CallbackResult],
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
        target = self._targets.get(handle.type)
        if target is None:
            what = NOT_CONFIGURED.get(handle.type, f"an adapter for {handle.type!r} callbacks")
            return CallbackResult(
                ok=False,
                target=handle.type,
                action=action,  # type: ignore[arg-type]
                detail=f"{handle.type} {action}: {what} is not configured",
            )
        try:
            return call(target, handle)
        except Exception as exc:  # a bug must still reach the audit log and an operator
            log.exception("callback %s for tenant %s failed unexpectedly", action, tenant_id)
            return CallbackResult(
                ok=False,
                target=handle.type,
                action=action,  # type: ignore[arg-type]
                detail=f"{handle.type} {action}: unexpected {type(exc).__name__}",
            )


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
