"""The whole gate on one machine: the real orchestrators and activities in the local runner, the real
dispatcher and decision route, over storage and services you pass in (Azurite, local keys, local servers).

Used by the end-to-end tests and the demo; in Azure the Functions host and the Durable extension play the
runner's part and nothing else changes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devstack.runner import LocalOrchestrationRunner, ManualClock, RunnerGateway
from gatekeeper.approvals.authenticate import approver_from_headers
from gatekeeper.events.model import PipelineEvent
from gatekeeper.gates.decisions import DecisionService
from gatekeeper.gates.effects import AuditTrail, Decider, PipelineCallbacks
from gatekeeper.ingest.dispatcher import EventDispatcher
from gatekeeper.integrations.github_app import GitHubWorkflows
from gatekeeper.integrations.notify import Notifier
from gatekeeper.rollback.steps import HealthProbe
from gatekeeper.security.identity import TokenValidator
from gatekeeper.security.principal import Principal
from gatekeeper.security.requester import UserDirectory
from gatekeeper.services import Services, build_services, using_services
from gatekeeper.settings import Settings
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount
from orchestrators import bp


@dataclass
class LocalGates:
    runner: LocalOrchestrationRunner
    services: Services
    decisions: DecisionService
    dispatcher: EventDispatcher
    gateway: RunnerGateway
    identify: Callable[[Mapping[str, str]], Principal]
    """The approval route's authentication (headers -> the deciding person), as the trigger does it."""

    @property
    def clock(self) -> ManualClock:
        return self.runner.clock

    def submit(self, event: PipelineEvent) -> str:
        """Dispatch a gate request as the queue trigger would, and run until nothing moves."""
        result = self.dispatcher.dispatch(event, event_id=str(uuid.uuid4()))
        self.runner.run_until_idle()
        assert result.instance_id is not None, "only gate requests start gates"
        return result.instance_id

    def connector_event(self, event: PipelineEvent) -> list[dict[str, Any]]:
        """A connector event off the queue, as the dispatcher trigger handles it: recorded (deduped), then a
        PSA change decision applied to the gates linked to its ticket; then let the runner react."""
        self.dispatcher.dispatch(event, event_id=str(uuid.uuid4()))
        outcomes = self.decisions.psa_change(event)
        self.runner.run_until_idle()
        return outcomes

    def decide(
        self, instance_id: str, headers: Mapping[str, str], decision: str, comment: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """POST /api/approvals/{id}/decisions through the route logic, then let the runner react."""
        body = json.dumps({"decision": decision, "comment": comment}).encode()
        answer = self.decisions.decide(instance_id, self.identify(headers), body)
        self.runner.run_until_idle()
        return answer


def local_runner(clock: ManualClock | None = None) -> LocalOrchestrationRunner:
    """A runner over every orchestrator and activity registered on the blueprint. It lives here, not in
    `orchestrators`, so the deployed orchestrators never import development code: the runner imports them."""
    return LocalOrchestrationRunner.from_blueprint(bp, clock)


def _serving(services: Services, activity: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(payload: Any) -> Any:
        with using_services(services):
            return activity(payload)

    return run


def local_gates(
    storage: StorageAccount,
    cipher: EnvelopeCipher,
    *,
    decider: Decider,
    audit_for: Callable[[str], AuditTrail],
    notifier: Notifier,
    callbacks: PipelineCallbacks,
    entra_tenants_for: Callable[[str], Iterable[str]],
    token_validator: TokenValidator | None = None,
    operators_for: Callable[[str], tuple[str, ...]] | None = None,
    clock: ManualClock | None = None,
    approval_base_url: str = "http://localhost:7071",
    settings: Settings | None = None,
    directory: UserDirectory | None = None,
    health_probe: HealthProbe | None = None,
    github_workflows: GitHubWorkflows | None = None,
    allow_loopback_http: bool = False,
) -> LocalGates:
    """Build the local gate: the product's `Services` over the given storage and adapters, and a runner over
    the orchestrators and activities registered on the blueprint whose activities are served those services
    (`gatekeeper.services.using_services`), so nothing process-wide is installed."""
    clock = clock or ManualClock()
    now: Callable[[], datetime] = clock.now
    settings = settings or Settings.from_environ({})
    services = build_services(
        settings,
        storage=storage,
        sealer=cipher,
        decider=decider,
        audit_for=audit_for,
        notifier=notifier,
        callbacks=callbacks,
        approval_base_url=approval_base_url,
        clock=now,
        directory=directory,
        operators_for=operators_for,
        token_validator=token_validator,
        health_probe=health_probe,
        github_workflows=github_workflows,
        allow_loopback_http=allow_loopback_http,
    )
    runner = local_runner(clock)
    runner.activities = {name: _serving(services, fn) for name, fn in runner.activities.items()}
    gateway = RunnerGateway(runner)
    decisions = DecisionService(
        storage,
        cipher,
        gateway,
        entra_tenants_for=entra_tenants_for,
        audit_for=audit_for,
        clock=now,
        directory=directory,
        base_url=approval_base_url,
        tenant_for=services.registry.get,
    )

    def identify(headers: Mapping[str, str]) -> Principal:
        return approver_from_headers(headers, token_validator, trust_easyauth=settings.trust_easyauth_header)

    return LocalGates(runner, services, decisions, EventDispatcher(storage, cipher, gateway), gateway, identify)
