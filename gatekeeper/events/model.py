"""The one normalised event model every source parser produces.

Everything downstream (policy, orchestrators, audit) sees only `PipelineEvent`, never a raw payload,
so a new CI or connector is one parser, not a change across the product.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class EventSource(StrEnum):
    GITHUB = "github"
    AZURE_DEVOPS = "azure-devops"
    GENERIC = "generic"
    CONNECTWISE = "connectwise"
    AUTOTASK = "autotask"
    HALOPSA = "halopsa"
    NINJARMM = "ninjarmm"
    DATTORMM = "dattormm"


class EventKind(StrEnum):
    """What happened, independent of the source's own vocabulary."""

    GATE_REQUEST = "gate_request"  # a pipeline waits for our decision (GitHub protection rule, ADO check)
    DEPLOYMENT_STATUS = "deployment_status"  # a deployment progressed, succeeded or failed
    RUN_STATUS = "run_status"  # a workflow run / pipeline run changed state
    JOB_STATUS = "job_status"  # a job within a run changed state
    STAGE_STATUS = "stage_status"  # an Azure DevOps stage changed state
    CHANGE_APPROVED = "change_approved"  # a PSA change ticket was approved
    CHANGE_REJECTED = "change_rejected"  # a PSA change ticket was rejected
    ALERT = "alert"  # an RMM device or monitoring alert
    PING = "ping"  # a source checking that the endpoint answers


class ActionKind(StrEnum):
    """The kind of change the event asks for; policy rules match on it."""

    BUILD = "build"
    TEST = "test"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    INFRASTRUCTURE_CHANGE = "infrastructure_change"
    PRIVILEGE_ESCALATION = "privilege_escalation"
    DATA_EXPORT = "data_export"
    SECRET_ACCESS = "secret_access"  # noqa: S105 - an action kind, not a secret


class GitHubCallback(BaseModel):
    """Where to answer a GitHub deployment protection rule."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    type: Literal["github"] = "github"
    owner: str
    repo: str
    run_id: int
    environment_name: str
    installation_id: int | None = None
    deployment_callback_url: str | None = None


class AzureDevOpsCallback(BaseModel):
    """The "Invoke Azure Function" check's callback coordinates. The AuthToken is a secret."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    type: Literal["azure-devops"] = "azure-devops"
    plan_url: str
    project_id: str
    hub_name: str
    plan_id: str
    job_id: str
    timeline_id: str | None = None  # not in the documented minimum headers; only the console feed needs it
    task_instance_id: str
    auth_token: SecretStr


class WebhookCallback(BaseModel):
    """A generic CI's callback URL, called with a signed JSON body."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    type: Literal["webhook"] = "webhook"
    url: str


# What an approver is shown about the change besides repository, ref and commit. Links are https only (a
# parser drops anything else), bounded; tags and artifact ids are short texts, at most MAX_CONTEXT_ITEMS each.
MAX_CONTEXT_ITEMS = 20
WebLink = Annotated[str, Field(max_length=2000, pattern=r"^https://[^\s/?#@]+(?:[/?#][^\s]*)?$")]
VersionTag = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
ArtifactId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


MAX_COMMAND_CHARS = 8192  # one command line as an approver reads it; longer is refused, never cut


CallbackHandle = Annotated[GitHubCallback | AzureDevOpsCallback | WebhookCallback, Field(discriminator="type")]


class EvidenceRef(BaseModel):
    """A reference to quality evidence (test report, coverage, SARIF, SLO indicators).

    Either a `uri` where the evidence lives, or a small inline `data` document; big evidence stays out of
    orchestration histories and is fetched by activities.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    kind: Literal["tests", "coverage", "sarif", "slo"]
    uri: str | None = None
    data: dict | None = None


class PipelineEvent(BaseModel):
    """A normalised pipeline or connector event, already authenticated and bound to one tenant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    source: EventSource
    kind: EventKind
    action: ActionKind | None = None
    environment: str | None = None
    repository: str | None = None
    ref: str | None = None
    commit: str | None = None
    actor: str | None = None  # who the source says asked: shown to people, never trusted for separation of duties
    # The identities the requester was seen as, namespaced (`gatekeeper.security.requester`): `entra:oid:<id>`
    # only from an authenticated credential, else the source's own ids (GitHub login/id, Azure DevOps id, ...).
    requester_ids: tuple[str, ...] = ()
    run_id: str | None = None
    status: str | None = None  # source status normalised to lower case: success, failure, in_progress, ...
    labels: tuple[str, ...] = ()
    callback: CallbackHandle | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    delivery_id: str | None = None  # the source's delivery id; NOT the dedupe key (redeliveries reuse it)
    subject: str | None = None  # connector events: ticket or device id
    # PSA change decisions: the client company the vendor's callback names for the ticket (ConnectWise
    # `company.identifier`, Autotask `CompanyID`, HaloPSA `client_id`); compared with the tenant's `psa.company`.
    company: str | None = Field(default=None, max_length=100)
    # Context for the approver (issue 12): web links of the repository, the commit and the run, and the
    # version tags and artifact ids the event names. Shown, never trusted for a decision.
    repository_url: WebLink | None = None
    commit_url: WebLink | None = None
    run_url: WebLink | None = None
    version_tags: tuple[VersionTag, ...] = Field(default=(), max_length=MAX_CONTEXT_ITEMS)
    artifacts: tuple[ArtifactId, ...] = Field(default=(), max_length=MAX_CONTEXT_ITEMS)
    summary: str | None = None  # a short human-readable line
    # Action-level requests (POST /api/actions, issue 13): the exact command an approver decides on, shown
    # verbatim (renderers escape it), kept sealed; the plan it applies, the resource and the change ticket.
    command: str | None = Field(default=None, max_length=MAX_COMMAND_CHARS)
    plan_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    plan_url: WebLink | None = None
    resource: str | None = Field(default=None, max_length=200)
    ticket: str | None = Field(default=None, max_length=100)
    # When the deployed commit was made (UTC), where the source states it (gatekeeper.events.commit_time);
    # the start of DORA's lead time. None for events sealed before it existed and for sources without one.
    commit_time: datetime | None = None
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def business_key(self) -> str:
        """Dedupe on what the event is about, never on the delivery id."""
        subject = self.run_id or self.subject or self.delivery_id or ""
        status = self.status if self.kind not in (EventKind.GATE_REQUEST,) else ""
        return "|".join([self.source.value, subject, self.environment or "", self.kind.value, status or ""])

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(f"{self.tenant_id}|{self.business_key}".encode()).hexdigest()

    @property
    def instance_id(self) -> str:
        """Durable orchestration instance id derived from the tenant and business key."""
        return f"gate-{self.key_hash[:40]}"

    @property
    def is_gate_request(self) -> bool:
        return self.kind is EventKind.GATE_REQUEST
