"""The side effects a gate needs, as small interfaces, plus the adapters that bind them to the product.

Activities see only these interfaces, so a test can run a whole gate against Azurite, a local HTTP
server and the local outbox, and Azure runs the same code against GitHub, Azure DevOps and Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from gatekeeper.events.model import AzureDevOpsCallback, CallbackHandle, GitHubCallback, PipelineEvent, WebhookCallback
from gatekeeper.integrations.results import CallbackResult
from gatekeeper.policy import GateDecision, PolicyDocument, evaluate
from gatekeeper.quality.evidence import QualityEvidence


class Decider(Protocol):
    """Decides the gate level for an event (the policy engine over the tenant's policy)."""

    def decide(self, event: PipelineEvent, at: datetime) -> GateDecision: ...


class AuditTrail(Protocol):
    """One tenant's audit log (gatekeeper.audit.log.AuditLog has this shape)."""

    def append(self, kind: str, actor: str, instance_id: str | None, subject: str | None, data: dict[str, Any],
               at: datetime | None = None) -> Any: ...


class PipelineCallbacks(Protocol):
    """Answers the pipeline that waits on the gate. Returns a result; never raises for remote failures."""

    def complete(self, tenant_id: str, instance_id: str, callback: CallbackHandle, approved: bool,
                 comment: str) -> CallbackResult: ...


class PolicyDecider:
    """The policy engine over a per-tenant policy source; evidence comes from the event's inline refs
    (evidence stored elsewhere is fetched by whoever builds the event)."""

    def __init__(self, policy_for: Callable[[str], PolicyDocument]):
        self._policy_for = policy_for

    def decide(self, event: PipelineEvent, at: datetime) -> GateDecision:
        return evaluate(self._policy_for(event.tenant_id), event, QualityEvidence.from_refs(event.evidence), at)


class IntegrationCallbacks:
    """Routes a callback handle to its client: the GitHub App, Azure DevOps, or a signed webhook.

    Each client is optional; a handle whose client is missing gets a failed result naming what is missing,
    so the gate audits and alerts instead of pretending the pipeline was told."""

    def __init__(
        self,
        *,
        github: Any | None = None,  # gatekeeper.integrations.github_app.GitHubApp
        azure_devops: Any | None = None,  # gatekeeper.integrations.azure_devops.AzureDevOpsClient
        webhook: Any | None = None,  # gatekeeper.integrations.webhook.WebhookSender
        webhook_secret: Callable[[str], bytes | None] | None = None,
    ):
        self._github = github
        self._azure_devops = azure_devops
        self._webhook = webhook
        self._webhook_secret = webhook_secret

    def complete(self, tenant_id: str, instance_id: str, callback: CallbackHandle, approved: bool,
                 comment: str) -> CallbackResult:
        if isinstance(callback, GitHubCallback):
            if self._github is None:
                return _missing("github", "no GitHub App is configured")
            return self._github.decide(callback, approved, comment or None)
        if isinstance(callback, AzureDevOpsCallback):
            if self._azure_devops is None:
                return _missing("azure-devops", "no Azure DevOps client is configured")
            return self._azure_devops.complete(callback, approved)
        if isinstance(callback, WebhookCallback):
            secret = self._webhook_secret(tenant_id) if self._webhook_secret else None
            if self._webhook is None or not secret:
                return _missing("webhook", "no webhook sender or signing secret is configured for the tenant")
            payload = {"tenant_id": tenant_id, "instance_id": instance_id, "approved": approved,
                       "decision": "approved" if approved else "rejected", "comment": comment}
            return self._webhook.send(callback.url, secret, "gate.completed", payload,
                                      delivery_id=f"{instance_id}.complete")
        return _missing("webhook", f"unknown callback type {type(callback).__name__}")


def _missing(target: Any, detail: str) -> CallbackResult:
    return CallbackResult(ok=False, target=target, detail=detail)
