"""The public generic events API (`POST /api/events`) for any CI: request model and normaliser.

This model IS the contract: `docs/openapi/events.yaml` describes the same fields and a test keeps the two
in step. Unknown fields are refused (naming them) so a typo such as `enviroment` fails loudly instead of
silently producing an event without an environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gatekeeper.events.commit_time import check_not_future, parse_rfc3339
from gatekeeper.events.common import (
    commit_link,
    https_link,
    https_or_loopback_url,
    no_items,
    normalise_status,
    number_to_text,
    validate,
)
from gatekeeper.events.model import (
    MAX_CONTEXT_ITEMS,
    ActionKind,
    ArtifactId,
    EventKind,
    EventSource,
    EvidenceRef,
    PipelineEvent,
    VersionTag,
    WebhookCallback,
)
from gatekeeper.security.requester import external_id

CONTEXT = "generic event"
_REQUIRED_FOR_KIND: dict[Any, tuple[str, ...]] = {
    "gate_request": ("environment",),
    "deployment_status": ("environment", "status"),
    "run_status": ("status",),
}


Name = Annotated[str, Field(min_length=1, max_length=200)]
RunId = Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s,]+$")]
Link = Annotated[str, Field(max_length=2000)]


class GenericEvidence(BaseModel):
    """Quality evidence: where it lives (`uri`) or a small inline document (`data`), exactly one of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    kind: Literal["tests", "coverage", "sarif", "slo"]
    uri: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> GenericEvidence:
        if (self.uri is None) == (self.data is None):
            raise ValueError("must have exactly one of 'uri' or 'data'")
        return self


class GenericEventRequest(BaseModel):
    """Body of `POST /api/events`."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True, defer_build=True
    )

    kind: Literal["gate_request", "deployment_status", "run_status"]
    action: ActionKind | None = None
    environment: Name | None = Field(default=None, validate_default=True)
    repository: Name | None = None
    ref: Name | None = None
    commit: Name | None = None
    actor: Name | None = None
    run_id: RunId = Field(alias="runId")
    status: Annotated[str, Field(min_length=1, max_length=50)] | None = Field(default=None, validate_default=True)
    labels: list[Label] = Field(default_factory=no_items, max_length=50)
    callback_url: Annotated[str, Field(max_length=2000)] | None = Field(default=None, alias="callbackUrl")
    evidence: list[GenericEvidence] = Field(default_factory=no_items, max_length=20)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, alias="idempotencyKey"
    )
    # Shown to approvers (never used to decide): web links (https only), version tags and artifact ids.
    repository_url: Link | None = Field(default=None, alias="repositoryUrl")
    commit_url: Link | None = Field(default=None, alias="commitUrl")
    run_url: Link | None = Field(default=None, alias="runUrl")
    version_tags: list[VersionTag] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS, alias="versionTags")
    artifacts: list[ArtifactId] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS)
    # When the deployed commit was made (RFC 3339 with a zone, not in the future): DORA's lead time starts here.
    commit_time: Annotated[str, Field(max_length=40)] | None = Field(default=None, alias="commitTime")

    @field_validator("commit_time")
    @classmethod
    def _commit_time(cls, value: str | None) -> str | None:
        if value is not None:
            check_not_future(parse_rfc3339(value), datetime.now(UTC))
        return value

    @field_validator("repository_url", "commit_url", "run_url")
    @classmethod
    def _https_links(cls, value: str | None) -> str | None:
        if value is not None and https_link(value) is None:
            raise ValueError("must be an absolute https URL without credentials or spaces")
        return value

    @field_validator("callback_url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        """https, or plain http to this machine for development; never credentials in the URL."""
        return None if value is None else https_or_loopback_url(value)

    @field_validator("environment", "status")
    @classmethod
    def _required_for_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if value is None and info.field_name in _REQUIRED_FOR_KIND.get(kind, ()):
            raise ValueError(f"is required when kind is '{kind}'")
        return value


def parse_generic(body: Mapping[str, Any], *, tenant_id: str) -> PipelineEvent:
    """Validate a generic API body and normalise it. Raises `InvalidInput` naming the field.

    A gate request without an `action` is a deploy. `idempotencyKey`, when given, is kept as the
    event's delivery id; deduplication still uses the business key (source, run, environment, kind).
    """
    request = validate(GenericEventRequest, body, context=CONTEXT)
    kind = EventKind(request.kind)
    action = request.action or (ActionKind.DEPLOY if kind is EventKind.GATE_REQUEST else None)
    status = normalise_status(request.status)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GENERIC,
        kind=kind,
        action=action,
        environment=request.environment,
        repository=request.repository,
        ref=request.ref,
        commit=request.commit,
        actor=request.actor,
        # The body's actor is the caller's claim. The ingestion route replaces this with the bearer token's
        # object id when there is one; with a function key it stays a claim (the requester is unresolved).
        requester_ids=tuple(i for i in (external_id("claim", "actor", request.actor),) if i),
        run_id=request.run_id,
        status=status,
        labels=tuple(request.labels),
        callback=WebhookCallback(url=request.callback_url) if request.callback_url else None,
        evidence=tuple(EvidenceRef(kind=e.kind, uri=e.uri, data=e.data) for e in request.evidence),
        repository_url=request.repository_url,
        commit_url=request.commit_url or commit_link(request.repository_url, request.commit),
        run_url=request.run_url,
        version_tags=tuple(dict.fromkeys(request.version_tags)),
        artifacts=tuple(dict.fromkeys(request.artifacts)),
        delivery_id=request.idempotency_key,
        commit_time=parse_rfc3339(request.commit_time) if request.commit_time is not None else None,
        summary=_summary(request, kind, status),
    )


def _summary(request: GenericEventRequest, kind: EventKind, status: str | None) -> str:
    where = f" to {request.environment}" if request.environment else ""
    if kind is EventKind.GATE_REQUEST:
        return f"run {request.run_id}: {(request.action or ActionKind.DEPLOY).value}{where} requested"
    return f"run {request.run_id}{where} is {status}"
