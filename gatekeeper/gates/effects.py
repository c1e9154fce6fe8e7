"""The side effects a gate needs, as small interfaces, plus the adapters that bind them to the product.

Activities see only these interfaces, so a test can run a whole gate against Azurite, a local HTTP
server and the local outbox, and Azure runs the same code against GitHub, Azure DevOps and Graph
(`gatekeeper.services` builds the callbacks and the notifier; `gatekeeper.audit.log.AuditLog`
is the audit trail).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from gatekeeper.events.model import CallbackHandle, PipelineEvent
from gatekeeper.integrations.results import CallbackResult
from gatekeeper.policy import GateDecision, PolicyDocument, evaluate
from gatekeeper.quality.evidence import QualityEvidence


class Decider(Protocol):
    """Decides the gate level for an event (the policy engine over the tenant's policy)."""

    def decide(self, event: PipelineEvent, at: datetime) -> GateDecision: ...

    def unresolved_requester(self, tenant_id: str) -> str:
        """The tenant's policy for a requester without an Entra identity: "raise" or "deny"."""
        ...


class AuditTrail(Protocol):
    """One tenant's audit log (gatekeeper.audit.log.AuditLog has this shape)."""

    def append(
        self,
        kind: str,
        actor: str,
        instance_id: str | None,
        subject: str | None,
        data: dict[str, Any],
        at: datetime | None = None,
    ) -> Any: ...


class PipelineCallbacks(Protocol):
    """Answers the pipeline that waits on the gate (gatekeeper.integrations.callbacks.PipelineCallbacks).
    Returns a result; never raises for remote failures."""

    def complete(
        self,
        tenant_id: str,
        callback: CallbackHandle,
        approved: bool,
        comment: str,
        context: Mapping[str, Any] | None = None,
    ) -> CallbackResult: ...

    def progress(self, tenant_id: str, callback: CallbackHandle, comment: str) -> CallbackResult: ...


class PolicyDecider:
    """The policy engine over a per-tenant policy source; evidence comes from the event's inline refs
    (evidence stored elsewhere is fetched by whoever builds the event)."""

    def __init__(self, policy_for: Callable[[str], PolicyDocument]):
        self._policy_for = policy_for

    def decide(self, event: PipelineEvent, at: datetime) -> GateDecision:
        return evaluate(self._policy_for(event.tenant_id), event, QualityEvidence.from_refs(event.evidence), at)

    def unresolved_requester(self, tenant_id: str) -> str:
        return self._policy_for(tenant_id).unresolved_requester
