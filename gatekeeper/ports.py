"""The ports: the few interfaces the gate's steps talk to, so adapters are looked up, not `isinstance`-checked.

- `PipelineTarget`: answers the pipeline that waits on a gate. One adapter per callback handle type
  (`github`, `azure-devops`, `webhook`); `gatekeeper.integrations.callbacks.PipelineCallbacks` picks the
  adapter by the handle's `type`, so a new CI is one adapter and one entry in that table.
- `RollbackRunner`: runs a rollback on the deployment's CI and reports its end (one adapter per target type,
  picked by `gatekeeper.integrations.rollbacks.RollbackRunners`).
- `Notifier`: tells approvers and operators. Channels (Graph: Teams activity feed + mail; the outbox) fan
  out behind it (`gatekeeper.integrations.notify.FanOutNotifier`), so a new channel is one adapter.

- `EventPublisher`: publishes gate lifecycle facts as CloudEvents 1.0 (`MeshEvent`) to the event mesh
  (`gatekeeper.integrations.eventgrid`: Azure Event Grid; `gatekeeper.mesh` builds the events and is the one
  hook the gate and watch steps call).

- `DependencyProbe`: one dependency the health route checks (storage tables and queues, Key Vault, the task
  hub; adapters in `gatekeeper.health.probes`, run under one deadline by `gatekeeper.health.report`).

- `DeviceManager`: acts on the tenant's RMM for the post-deploy watch (issue 15): maintenance mode for the
  watch window, resolving the alert that caused a successful rollback, a device's status. One client per
  tenant's RMM (`gatekeeper.integrations.rmm`: NinjaOne, Datto RMM).

- `TicketSystem`: writes a gate's story back to the tenant's PSA (ConnectWise, Autotask, HaloPSA): find or
  open the ticket, add notes, move its status, raise its priority, log time (`gatekeeper.psa`; one client
  per vendor, built per tenant by `gatekeeper.psa.systems.TicketSystems`).

The design's HealthProbe is the post-deploy watch's probe (`gatekeeper.rollback.steps.HealthProbe`).

Each port is defined together with the values it speaks (`CallbackResult`; `Notification`,
`NotificationResult`), so this module imports no adapter and every adapter depends on it, never the
reverse. The adapters' modules re-export these names (`gatekeeper.integrations.results`, `.notify`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CallbackAction",
    "CallbackResult",
    "CallbackTarget",
    "Delivery",
    "DependencyProbe",
    "DeviceManager",
    "DeviceStatus",
    "EventPublisher",
    "MaintenanceWindow",
    "MeshEvent",
    "Notification",
    "NotificationDetail",
    "NotificationResult",
    "Notifier",
    "PipelineTarget",
    "PublishResult",
    "Recipient",
    "RmmAction",
    "RmmResult",
    "RollbackOrder",
    "RollbackRunner",
    "RollbackStatus",
    "TicketNote",
    "TicketRef",
    "TicketResult",
    "TicketSpec",
    "TicketStatus",
    "TicketSystem",
    "TimeEntry",
    "parse_recipient",
]

# --- pipeline callbacks --------------------------------------------------------------------------------------

CallbackTarget = Literal["github", "azure-devops", "webhook"]
CallbackAction = Literal["complete", "progress"]


class CallbackResult(BaseModel):
    """`ok` is True only when the pipeline acknowledged the call (2xx). A final failure is returned, never
    raised: the caller audits it and alerts. `detail` never contains a token or signing secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    status_code: int | None = None
    attempts: int = 0
    detail: str = ""
    target: CallbackTarget | None = None
    action: CallbackAction = "complete"
    skipped: bool = False  # deliberately not sent (e.g. GitHub's comment budget is spent)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


class PipelineTarget(Protocol):
    """One CI's way to answer a waiting pipeline. `handle` is the callback handle of the adapter's type.

    Returns a `CallbackResult`; a remote failure is a result with ok=False, never an exception, so the
    caller can audit it and alert a human."""

    def complete(
        self, tenant_id: str, handle: Any, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        """The gate's decision (approved or rejected)."""
        ...

    def progress(self, tenant_id: str, handle: Any, comment: str) -> CallbackResult:
        """A status line while the gate waits."""
        ...


# --- notifications -------------------------------------------------------------------------------------------

NotificationKind = Literal["approval_request", "info", "alert", "human_task"]
Channel = Literal["teams", "mail", "outbox", "slack"]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
UPN = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+\.[^@\s/\\]+$")
GROUP_PREFIX = "group:"


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["user", "group"]
    id: str  # user object id or UPN; group (team) object id

    @property
    def label(self) -> str:
        return f"group:{self.id}" if self.kind == "group" else self.id


def parse_recipient(value: str) -> Recipient:
    """`group:<object id>` for an Entra ID group (its team), else a user object id or UPN."""
    text = value.strip()
    if text.lower().startswith(GROUP_PREFIX):
        group_id = text[len(GROUP_PREFIX) :]
        if not GUID.match(group_id):
            raise ValueError(f"{value!r}: a group recipient is 'group:<object id>' with a GUID")
        return Recipient(kind="group", id=group_id.lower())
    if GUID.match(text):
        return Recipient(kind="user", id=text.lower())
    if UPN.match(text):
        return Recipient(kind="user", id=text)
    raise ValueError(f"{value!r}: not a user object id, user principal name or 'group:<id>'")


class NotificationDetail(BaseModel):
    """One line of context under a notification (mail body): a label, the text, optionally an https link.
    Plain text: every channel escapes it for its own format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=1000)
    url: str | None = Field(default=None, max_length=2000)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^\s/?#@]+(?:[/?#]\S*)?$", value):
            raise ValueError("url: must be an https URL")
        return value


class Notification(BaseModel):
    """What to tell whom. `link` points at the approval page (required for approval requests); `details`
    are the context lines an approver sees in the mail (the same as on the card and the page)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: NotificationKind
    recipients: tuple[str, ...] = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=4000)
    link: str | None = None
    instance_id: str | None = None
    details: tuple[NotificationDetail, ...] = Field(default=(), max_length=40)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, item in enumerate(value):
            try:
                parse_recipient(item)
            except ValueError as exc:
                raise ValueError(f"recipients[{index}]: {exc}") from None
        return tuple(dict.fromkeys(item.strip() for item in value))

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("link: must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _approval_has_link(self) -> Notification:
        if self.kind == "approval_request" and not self.link:
            raise ValueError("link: an approval request must link to the approval page")
        return self

    def parsed_recipients(self) -> list[Recipient]:
        return [parse_recipient(item) for item in self.recipients]


class Delivery(BaseModel):
    """What happened for one recipient."""

    model_config = ConfigDict(frozen=True)
    recipient: str
    channel: Channel | None
    ok: bool
    status_code: int | None = None
    detail: str = ""


class NotificationResult(BaseModel):
    """`ok` when every recipient was reached on some channel. Returned, never raised."""

    model_config = ConfigDict(frozen=True)
    ok: bool
    deliveries: tuple[Delivery, ...] = ()
    path: str | None = None  # the outbox file, for the local notifier
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Notifier(Protocol):
    """Delivers one notification for one tenant. Returns the result (per recipient), never raises for a
    remote failure."""

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult: ...


@runtime_checkable
class GateClosedListener(Protocol):
    """A channel whose messages show a gate's live state (the Teams bot's cards): told once the gate is decided
    or has expired, so every message it sent can show the outcome instead of buttons. Never raises."""

    def gate_closed(self, tenant_id: str, instance_id: str) -> None: ...


@runtime_checkable
class GateChangedListener(Protocol):
    """A channel whose messages cannot refresh themselves (Slack; Teams cards pull their own refresh): told
    after the approval chain counted a vote and still waits, whichever channel the vote came from (API,
    page, Teams, Slack, PSA), so every message it sent shows the votes so far. Best effort and bounded: it
    runs in an activity of the chain, after the vote was stored, raised and answered, so a channel that is
    down never fails or delays a vote. Never raises."""

    def gate_changed(self, tenant_id: str, instance_id: str) -> None: ...


# --- rollback runs -------------------------------------------------------------------------------------------


class RollbackOrder(BaseModel):
    """What to roll back to, where: the environment's policy target (its JSON, with `type`), the deployment's
    repository and environment, the last known good deployment to return to, and when it was ordered (wall
    clock, for the CI's own run listings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: dict[str, Any]
    watch_id: str
    repository: str | None = None
    environment: str
    to_ref: str | None = None
    to_commit: str | None = None
    to_run_id: str | None = None
    ordered_at: Any = None  # datetime, wall clock


class RollbackStatus(BaseModel):
    """A rollback run as its CI reports it. `ok` False: it could not be started or asked about; `done` with
    `conclusion` (success | failure | cancelled | ...) once it finished. Returned, never raised; `detail`
    never carries a token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    done: bool = False
    conclusion: str | None = None
    run_id: str | None = None
    url: str | None = None
    detail: str = ""


class RollbackRunner(Protocol):
    """One CI's way to run a rollback and report its end (GitHub workflow_dispatch, an Azure DevOps pipeline
    run, a signed webhook). `gatekeeper.integrations.rollbacks.RollbackRunners` picks one by the target's
    `type`, like `PipelineCallbacks` picks a `PipelineTarget`."""

    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus: ...

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus: ...


# --- the event mesh ------------------------------------------------------------------------------------------

EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")


class MeshEvent(BaseModel):
    """One CloudEvents 1.0 event as the mesh publishes it (structured JSON, `datacontenttype`
    application/json). `id` is deterministic per fact, so a fact published twice is deduplicated by
    subscribers (CloudEvents: source + id identify an event). `data` holds ids, levels, outcomes and links
    only (`gatekeeper.mesh` builds it from an allow-list). `extensions` follow the spec's naming rule
    (lower-case letters and digits, at most 20 characters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(pattern=r"^com\.gatekeeper\.[a-z]+(\.[a-z_]+)+$", max_length=128)
    subject: str = Field(min_length=1, max_length=512)
    time: Any  # datetime (UTC)
    data: dict[str, Any]
    extensions: dict[str, str] = Field(default_factory=dict)

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not EXTENSION_NAME.match(name) or name in {"id", "source", "type", "subject", "time", "data"}:
                raise ValueError(f"extensions.{name}: CloudEvents extension names are lower-case a-z0-9, 1-20")
        return value


class PublishResult(BaseModel):
    """`ok` when the mesh accepted every event; a failure (after the adapter's bounded retries) is returned,
    never raised, so the gate goes on and the caller audits it. `detail` never carries a token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    published: int = 0
    status_code: int | None = None
    detail: str = ""
    skipped: bool = False  # publishing is off (no topic configured)


class EventPublisher(Protocol):
    """Publishes a batch of events for one tenant. Returns the result, never raises for a remote failure."""

    def publish(self, tenant_id: str, events: tuple[MeshEvent, ...]) -> PublishResult: ...


# --- health ----------------------------------------------------------------------------------------------------


class DependencyProbe(Protocol):
    """One dependency of the health route. `check` (a plain or an async method) returns a short detail or None
    when the dependency answered and raises when it did not; it never returns tenant data or secrets."""

    name: str

    def check(self) -> Any: ...


# --- RMM (device management) ---------------------------------------------------------------------------------

RmmAction = Literal["maintenance_on", "maintenance_off", "resolve_alert", "device_status"]


class MaintenanceWindow(BaseModel):
    """Devices to hold in maintenance from `start` to `end` (UTC), with the features it disables and the
    reason the RMM shows its technicians."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: tuple[str, ...] = Field(min_length=1, max_length=200)
    start: Any  # datetime (UTC)
    end: Any  # datetime (UTC), after start
    features: tuple[str, ...] = Field(min_length=1, max_length=4)
    reason: str = Field(default="", max_length=300)


class RmmResult(BaseModel):
    """One RMM action's outcome. `ok` only when the RMM accepted it for every device; `skipped` when the
    RMM cannot do it (Datto RMM has no maintenance API) or there was nothing to do. Returned, never raised;
    `detail` never carries a token or secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    action: RmmAction
    vendor: str
    targets: tuple[str, ...] = ()  # device ids or alert uids acted on
    failed: tuple[str, ...] = ()  # those the RMM refused or never answered for
    status_code: int | None = None
    attempts: int = 0
    skipped: bool = False
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class DeviceStatus(BaseModel):
    """A device as the RMM reports it. `ok` False: the RMM could not be asked (then `online` is None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    device_id: str
    online: bool | None = None
    name: str | None = None
    in_maintenance: bool | None = None
    detail: str = ""


class DeviceManager(Protocol):
    """One tenant's RMM. Every method returns its outcome; a remote failure is never raised."""

    vendor: str

    def start_maintenance(self, window: MaintenanceWindow) -> RmmResult: ...

    def end_maintenance(self, devices: tuple[str, ...]) -> RmmResult: ...

    def resolve_alert(self, alert_uid: str) -> RmmResult: ...

    def device_status(self, device_id: str) -> DeviceStatus: ...


# --- PSA tickets ---------------------------------------------------------------------------------------------

PsaVendor = Literal["connectwise", "autotask", "halopsa"]
TicketStatus = Literal["approved", "rejected", "rolled_back", "in_progress"]
"""The gate's moments a ticket status is mapped for (per tenant: `gatekeeper.tenancy.psa_settings`)."""
TicketOperation = Literal["find_or_open", "add_note", "set_status", "raise_priority", "log_time"]
_TICKET_ID = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$"


class TicketRef(BaseModel):
    """A ticket in one tenant's PSA: the vendor's own id (a number for all three vendors, kept as text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: PsaVendor
    id: str = Field(pattern=_TICKET_ID)
    opened: bool = False  # True when Gatekeeper opened it (a change ticket or an L3 task), False when found

    @property
    def label(self) -> str:
        return f"{self.vendor}:{self.id}"


class TicketSpec(BaseModel):
    """What to find or open. `key` is Gatekeeper's own reference for the ticket (the gate's instance id and
    what it is for), written into the ticket so a retried `find_or_open` finds the ticket it opened before
    instead of opening a second one. `ticket_id` names an existing ticket (a linked change ticket)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._:-]+$")
    kind: Literal["change", "task"]
    summary: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=4000)
    ticket_id: str | None = Field(default=None, pattern=_TICKET_ID)


class TicketNote(BaseModel):
    """One note (ConnectWise note, Autotask ticket note, HaloPSA action). Internal by default: the MSP's
    technicians read it, the end customer does not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1, max_length=250)
    text: str = Field(min_length=1, max_length=4000)
    internal: bool = True


class TimeEntry(BaseModel):
    """Time spent on the ticket (an approver's review, the automation's run), in whole minutes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minutes: int = Field(ge=1, le=24 * 60)
    started_at: Any  # datetime, UTC
    notes: str = Field(default="", max_length=2000)


class TicketResult(BaseModel):
    """`ok` when the PSA accepted the call (2xx after the adapter's bounded retries). A failure is returned,
    never raised: the caller audits it and the gate goes on. `detail` never carries a credential."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    operation: TicketOperation
    vendor: PsaVendor
    ref: TicketRef | None = None
    status_code: int | None = None
    attempts: int = 0
    detail: str = Field(default="", max_length=500)
    skipped: bool = False  # deliberately not sent (no status mapped for this moment, nothing to log)


class TicketSystem(Protocol):
    """One tenant's PSA. Every method returns a `TicketResult` and never raises for a remote failure."""

    @property
    def vendor(self) -> PsaVendor: ...

    def find_or_open(self, ticket: TicketSpec) -> TicketResult:
        """The ticket `ticket.ticket_id` names (checked to exist), else the one opened earlier for
        `ticket.key`, else a new one on the tenant's board/queue."""
        ...

    def add_note(self, ref: TicketRef, note: TicketNote) -> TicketResult: ...

    def set_status(self, ref: TicketRef, status: TicketStatus) -> TicketResult:
        """Move the ticket to the tenant's status for this moment (skipped when none is mapped)."""
        ...

    def raise_priority(self, ref: TicketRef) -> TicketResult:
        """Set the tenant's escalation priority (a rollback); skipped when none is configured."""
        ...

    def log_time(self, ref: TicketRef, entry: TimeEntry) -> TicketResult: ...
