"""Gates waiting for approval, stored as the gate steps store them, for the approval page's tests and the
registered functions served over HTTP (devstack.functions_host) with the local Durable HTTP API behind them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.durable_api import DurableApiServer
from devstack.functions_host import LocalFunctionsHost, SignedInUser
from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.gates.store import GateIndex, GateRecord, GateStore
from gatekeeper.security.requester import Requester
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount
from tests.support.gatekeeper_env import ENTRA_TENANT, GatekeeperEnv, app_functions
from tests.support.worker_loop import run_on_worker

ANNA = "0000000a-0000-4000-8000-00000000000a"
PIET = "0000000b-0000-4000-8000-00000000000b"
SARA = "0000000c-0000-4000-8000-00000000000c"  # not an approver of any gate here
DEV = "000000de-0000-4000-8000-0000000000de"  # the requester
PEOPLE = {
    ANNA: SignedInUser(ANNA, ENTRA_TENANT, "Anna Jansen", "anna@contoso.com"),
    PIET: SignedInUser(PIET, ENTRA_TENANT, "Piet de Vries", "piet@contoso.com"),
    SARA: SignedInUser(SARA, ENTRA_TENANT, "Sara Visser", "sara@contoso.com"),
    DEV: SignedInUser(DEV, ENTRA_TENANT, "Dev Eloper", "dev@contoso.com"),
}
HOSTILE_REPOSITORY = 'contoso/<script>alert(1)</script>"><img src=x onerror=alert(2)>[click](javascript:alert(3))'


def store_waiting_gate(
    storage: StorageAccount, tenant_id: str, sealer: EnvelopeCipher, approvers: tuple[str, ...]
) -> str:
    """A plain L2 gate of `tenant_id` waiting at its one stage (quorum 1), indexed and stored as the gate steps
    store it; for channel tests that need a gate to vote on, not the approval page's rich one (`PageRig.gate`)."""
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    GateIndex(storage).put(gate_id, tenant_id)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": list(approvers), "quorum": 1, "timeout": "PT1H"}]}
    )
    record = GateRecord.model_validate(
        {
            "instance_id": gate_id,
            "tenant_id": tenant_id,
            "status": GateStatus.AWAITING_APPROVAL,
            "level": "L2",
            "rule": "production-deploy",
            "reasons": ("production deployments need approval",),
            "title": "deploy contoso/webshop to production",
            "subject": {"source": "github", "action": "deploy", "environment": "production"},
            "requester": (DEV, "dev@contoso.com"),
            "created_at": now - timedelta(minutes=5),
            "updated_at": now,
            "chain_instance_id": chain_instance_id(gate_id),
            "plan": plan,
            "stage": 0,
            "stage_started_at": now - timedelta(minutes=5),
            "deadline": now + timedelta(minutes=30),
        }
    )
    GateStore(storage, tenant_id, sealer).save(record)
    return gate_id


@dataclass
class PageRig:
    env: GatekeeperEnv
    host: LocalFunctionsHost
    durable: DurableApiServer

    @property
    def store(self) -> GateStore:
        return GateStore(self.env.storage, self.env.tenant_id, self.env.services.sealer)

    def page_url(self, gate_id: str) -> str:
        return f"{self.host.url}/api/approvals/{gate_id}/page"

    def vote_events(self, gate_id: str) -> list[tuple[str, Any]]:
        """The events the gate's chain orchestration received through the Durable HTTP API."""
        instance = self.durable.instances.get(chain_instance_id(gate_id), {})
        return list(instance.get("events", []))

    def gate(
        self,
        *,
        approvers: tuple[str, ...] = (ANNA, PIET),
        quorum: int = 2,
        status: GateStatus = GateStatus.AWAITING_APPROVAL,
        deadline_in: timedelta = timedelta(minutes=30),
        subject: dict[str, Any] | None = None,
        title: str = "deploy contoso/webshop to production",
        **changes: Any,
    ) -> str:
        """A gate of this tenant waiting at stage 1 (or as `status` says), its chain orchestration running."""
        now = datetime.now(UTC)
        gate_id = "gate-" + uuid.uuid4().hex
        GateIndex(self.env.storage).put(gate_id, self.env.tenant_id)
        plan = ChainPlan.model_validate(
            {"stages": [{"name": "cab", "approvers": list(approvers), "quorum": quorum, "timeout": "PT1H"}]}
        )
        record: dict[str, Any] = {
            "instance_id": gate_id,
            "tenant_id": self.env.tenant_id,
            "status": status,
            "level": "L2",
            "rule": "production-deploy",
            "reasons": ("production deployments need the change advisory board",),
            "title": title,
            "subject": subject
            if subject is not None
            else {
                "source": "github",
                "action": "deploy",
                "environment": "production",
                "repository": "contoso/webshop",
                "ref": "refs/heads/main",
                "commit": "a1b2c3d4e5f6",
            },
            "repository_url": "https://github.com/contoso/webshop",
            "commit_url": "https://github.com/contoso/webshop/commit/a1b2c3d4e5f6",
            "quality_failing": [{"name": "coverage", "detail": "71% < 80%"}],
            "compliance": [{"framework": "SOC2", "control": "CC8.1"}],
            "requester": (DEV, "dev@contoso.com"),
            "requested_by": Requester(
                oid=DEV, resolved=True, seen_as=("github:login:dev-octo",), aliases=("dev@contoso.com",)
            ),
            "created_at": now - timedelta(minutes=30),
            "updated_at": now,
            "chain_instance_id": chain_instance_id(gate_id),
            "plan": plan,
            "stage": 0,
            "stage_started_at": now - timedelta(minutes=30),
            "deadline": now + deadline_in,
            "quality": "warn",
            "quality_score": 0.72,
            **changes,
        }
        if status in (GateStatus.APPROVED, GateStatus.REJECTED):
            record.setdefault("decided_at", now - timedelta(minutes=5))
        self.store.save(GateRecord.model_validate(record))
        running = "Running" if status is GateStatus.AWAITING_APPROVAL else "Completed"
        self.durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": running}
        return gate_id


@contextmanager
def page_rig(env: GatekeeperEnv) -> Iterator[PageRig]:
    """The function app served on 127.0.0.1 with App Service authentication played in front and the local
    Durable HTTP API behind; the page's own URL is the app's public URL (GATEKEEPER_APPROVAL_BASE_URL)."""
    with DurableApiServer() as durable:
        host = LocalFunctionsHost(app_functions(), durable_binding=durable.client_binding, run_async=run_on_worker)
        with host:
            env.services.approval_base_url = host.url
            yield PageRig(env, host, durable)
