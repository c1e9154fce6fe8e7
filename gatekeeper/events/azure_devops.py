"""Azure DevOps → `PipelineEvent`: the "Invoke Azure Function" check (a gate) and service hooks (status).

The check (callback mode) sends the plan coordinates as headers, the `AuthToken` among them; we keep them as
an `AzureDevOpsCallback` so the orchestrator can later post `TaskCompleted` to
`{PlanUrl}{ProjectId}/_apis/distributedtask/hubs/{HubName}/plans/{PlanId}/events`. The ids end up in that
URL path, so they are checked to be GUIDs, and the token never appears in any message.

The check's body is whatever the check configuration says. Our convention (document it to tenants):

    {"environment": "$(Environment.Name)", "repository": "$(Build.Repository.Name)",
     "ref": "$(Build.SourceBranch)", "commit": "$(Build.SourceVersion)",
     "requestedBy": "$(Build.RequestedForId)", "requestedByEmail": "$(Build.RequestedForEmail)",
     "runId": "$(Build.BuildId)", "stage": "$(System.StageName)",
     "action": "deploy", "labels": ["pci"], "evidence": [{"kind": "tests", "uri": "https://..."}],
     "repositoryUrl": "$(Build.Repository.Uri)", "versionTags": ["$(Build.BuildNumber)"],
     "artifacts": ["drop@$(Build.BuildNumber)"]}

`requestedBy` is the check's requester: its identity id (a GUID, linkable in the tenant's identity map), or a
unique name (an address); a display name is shown but cannot be matched. `requestedByEmail` adds the unique
name. `repositoryUrl` (https only), `versionTags` and `artifacts` are shown to approvers; the run's web page
(`<PlanUrl><ProjectId>/_build/results?buildId=<run>`) is derived from the headers. Only `environment` is
required. A value still reading `$(...)` means the variable is not available to checks, and is refused naming
the field rather than becoming a literal environment called "$(...)".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from gatekeeper.addresses import is_local_host
from gatekeeper.errors import InvalidInput
from gatekeeper.events.common import (
    Ignored,
    Payload,
    commit_link,
    header,
    https_link,
    no_items,
    normalise_status,
    number_to_text,
    shown,
    unexpanded_variable,
    validate,
)
from gatekeeper.events.model import (
    MAX_CONTEXT_ITEMS,
    ActionKind,
    ArtifactId,
    AzureDevOpsCallback,
    EventKind,
    EventSource,
    EvidenceRef,
    PipelineEvent,
    VersionTag,
)
from gatekeeper.security.requester import external_id, normalise_address

CHECK_CONTEXT = "Invoke Azure Function check"
# The documented minimum (invoke-checks.md); the task's default headers add TimelineId, which only the live
# console feed needs, so it is optional.
REQUIRED_HEADERS = ("PlanUrl", "ProjectId", "HubName", "PlanId", "JobId", "TaskInstanceId", "AuthToken")
_GUID_HEADERS = ("ProjectId", "PlanId", "JobId", "TimelineId", "TaskInstanceId")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


Text = Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=400)]


class CheckRequestBody(BaseModel):
    """The JSON body our "Invoke Azure Function" check convention sends (see the module docstring)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, str_strip_whitespace=True, defer_build=True
    )

    environment: Text
    repository: Text | None = None
    ref: Text | None = None
    commit: Text | None = None
    requested_by: Text | None = Field(default=None, alias="requestedBy")
    requested_by_email: Text | None = Field(default=None, alias="requestedByEmail")
    run_id: Text | None = Field(default=None, alias="runId")
    stage: Text | None = None
    action: ActionKind = ActionKind.DEPLOY
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=no_items, max_length=50)
    evidence: list[EvidenceRef] = Field(default_factory=no_items, max_length=20)
    repository_url: Annotated[str, Field(max_length=2000)] | None = Field(default=None, alias="repositoryUrl")
    version_tags: list[VersionTag] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS, alias="versionTags")
    artifacts: list[ArtifactId] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS)

    @field_validator("repository_url")
    @classmethod
    def _https_repository(cls, value: str | None) -> str | None:
        if value is not None and https_link(value) is None:
            raise ValueError("must be an https URL ($(Build.Repository.Uri))")
        return value

    @field_validator("version_tags", "artifacts")
    @classmethod
    def _items_expanded(cls, value: list[str]) -> list[str]:
        if any(unexpanded_variable(item) for item in value):
            raise ValueError("holds an unexpanded pipeline variable ($(...))")
        return list(dict.fromkeys(value))

    @field_validator(
        "environment", "repository", "ref", "commit", "requested_by", "requested_by_email", "run_id", "stage"
    )
    @classmethod
    def _expanded(cls, value: str | None) -> str | None:
        if unexpanded_variable(value):
            raise ValueError("holds an unexpanded pipeline variable ($(...)); use a variable available to checks")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_expanded(cls, value: list[str]) -> list[str]:
        if any(unexpanded_variable(label) for label in value):
            raise ValueError("holds an unexpanded pipeline variable ($(...))")
        return value

    @field_validator("action", mode="before")
    @classmethod
    def _action_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def _header_value(headers: Mapping[str, str] | None, name: str) -> str:
    value = header(headers, name)
    field = f"header:{name}"
    if value is None or not value.strip():
        raise InvalidInput(f"{CHECK_CONTEXT}: header '{name}' is required", field=field)
    value = value.strip()
    if name != "AuthToken" and unexpanded_variable(value):
        raise InvalidInput(f"{CHECK_CONTEXT}: header '{name}' holds an unexpanded pipeline variable", field=field)
    if name in _GUID_HEADERS and not _GUID.match(value):
        raise InvalidInput(f"{CHECK_CONTEXT}: header '{name}' must be a GUID", field=field)
    if name == "HubName" and not _HUB.match(value):
        raise InvalidInput(f"{CHECK_CONTEXT}: header 'HubName' must be a hub name such as 'build'", field=field)
    if name == "PlanUrl":
        parts = urlsplit(value)
        secure = parts.scheme == "https" or (parts.scheme == "http" and is_local_host(parts.hostname or ""))
        if not secure or not parts.hostname or parts.query or parts.fragment:
            raise InvalidInput(
                f"{CHECK_CONTEXT}: header 'PlanUrl' must be the https collection URL ($(System.CollectionUri))",
                field=field,
            )
    return value


def web_link_query(collection: str, project: str, page: str, query: str) -> str | None:
    """`<collection URI><project>/<page>?<query>`, an https link or None (a loopback PlanUrl in development)."""
    base = https_link(collection)
    return https_link(f"{base.rstrip('/')}/{project}/{page}?{query}") if base else None


def _check_requester(request: CheckRequestBody) -> tuple[str, ...]:
    """The check's requester as Azure DevOps identities: id (GUID), unique name (address) or display name."""
    found: list[str | None] = []
    if request.requested_by:
        value = request.requested_by
        kind = "id" if _GUID.match(value) else "unique" if normalise_address(value) else "name"
        found.append(external_id("azure-devops", kind, value))
    if request.requested_by_email:
        found.append(external_id("azure-devops", "unique", request.requested_by_email))
    return tuple(dict.fromkeys(f for f in found if f))


def parse_check_request(headers: Mapping[str, str], body: Mapping[str, Any] | None, *, tenant_id: str) -> PipelineEvent:
    """Normalise an "Invoke Azure Function" check request (callback mode) into a gate request.

    Headers are looked up case-insensitively; a missing one raises `InvalidInput(field="header:<Name>")`.
    The run id is the body's `runId`, else the `BuildId` header, else the plan id (unique per run).
    """
    values = {name: _header_value(headers, name) for name in REQUIRED_HEADERS}
    timeline = header(headers, "TimelineId")
    timeline_id = _header_value(headers, "TimelineId") if timeline is not None and timeline.strip() else None
    request = validate(CheckRequestBody, {} if body is None else body, context=CHECK_CONTEXT)
    build_id = header(headers, "BuildId")
    if build_id is not None and (unexpanded_variable(build_id) or not build_id.strip()):
        build_id = None
    run_id = request.run_id or (build_id.strip() if build_id else None) or values["PlanId"]
    callback = AzureDevOpsCallback(
        plan_url=values["PlanUrl"],
        project_id=values["ProjectId"],
        hub_name=values["HubName"],
        plan_id=values["PlanId"],
        job_id=values["JobId"],
        timeline_id=timeline_id,
        task_instance_id=values["TaskInstanceId"],
        auth_token=SecretStr(values["AuthToken"]),
    )
    where = f" (stage {request.stage})" if request.stage else ""
    run_url = (
        web_link_query(values["PlanUrl"], values["ProjectId"], "_build/results", f"buildId={run_id}")
        if str(run_id).isdigit()
        else None
    )
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.AZURE_DEVOPS,
        kind=EventKind.GATE_REQUEST,
        action=request.action,
        environment=request.environment,
        repository=request.repository,
        ref=request.ref,
        commit=request.commit,
        actor=request.requested_by or request.requested_by_email,
        requester_ids=_check_requester(request),
        # Each evaluation of the check has its own task instance: a re-run stage is a new gate (it must be
        # answered), while a repeated delivery of the same evaluation stays a duplicate.
        run_id=f"{run_id}/checks/{values['TaskInstanceId']}",
        labels=tuple(request.labels),
        repository_url=request.repository_url,
        commit_url=commit_link(request.repository_url, request.commit),
        run_url=run_url,
        version_tags=tuple(request.version_tags),
        artifacts=tuple(request.artifacts),
        callback=callback,
        evidence=tuple(request.evidence),
        delivery_id=values["TaskInstanceId"],
        summary=f"{request.action.value} to {request.environment}{where} requested by run {run_id}",
    )


# --- service hooks -----------------------------------------------------------------------------------------


class _Message(Payload):
    text: str | None = None


class _HookEnvelope(Payload):
    id: str | None = None
    eventType: str
    message: _Message | None = None


class _PipelineRef(Payload):
    id: int | None = None
    name: str | None = None


class _Link(Payload):
    href: str | None = None


class _RunLinks(Payload):
    self_link: _Link | None = Field(default=None, alias="self")
    web: _Link | None = None  # the run's page for people


class _Run(Payload):
    id: int | None = None  # absent from the current run-state-changed sample: then from `_links.self` or `url`
    name: str | None = None
    url: str | None = None
    links: _RunLinks | None = Field(default=None, alias="_links")
    state: str
    result: str | None = None
    pipeline: _PipelineRef | None = None


class _RunStateResource(Payload):
    # The docs' approval samples carry `run`, `stage` and `pipeline` as null: a state event with them null
    # names nothing to record, so it is ignored with the reason. Absent is still a 422 naming the field.
    run: _Run | None
    pipeline: _PipelineRef | None = None


class _RunStateEvent(Payload):
    resource: _RunStateResource


class _Stage(Payload):
    name: str
    displayName: str | None = None
    state: str
    result: str | None = None


class _StageStateResource(Payload):
    stage: _Stage | None  # null: ignored, as `_RunStateResource.run`
    run: _Run | None
    pipeline: _PipelineRef | None = None


class _StageStateEvent(Payload):
    resource: _StageStateResource


class _Identity(Payload):
    uniqueName: str | None = None
    displayName: str | None = None


class _BuildRequest(Payload):
    requestedFor: _Identity | None = None


class _Named(Payload):
    name: str | None = None


class _Build(Payload):
    id: int
    buildNumber: str | None = None
    status: str | None = None
    result: str | None = None
    sourceBranch: str | None = None
    sourceVersion: str | None = None
    sourceGetVersion: str | None = None
    definition: _Named | None = None
    repository: _Named | None = None
    requestedFor: _Identity | None = None
    requests: list[_BuildRequest] | None = None  # null is read as no requests, like the other optional fields
    lastChangedBy: _Identity | None = None


class _BuildCompleteEvent(Payload):
    resource: _Build


def _who(identity: _Identity | None) -> str | None:
    return (identity.uniqueName or identity.displayName) if identity else None


def _summary(envelope: _HookEnvelope, fallback: str) -> str:
    text = envelope.message.text if envelope.message and envelope.message.text else fallback
    return text[:300]


_RUN_URL = re.compile(r"/runs/(\d{1,18})/?$")  # bounded: a run id fits in 64 bits


def _run_number(run: _Run | None) -> int | None:
    """The run id: `id`, else the last segment of `_links.self.href` or `url` (`.../_apis/Pipelines/1/runs/11`)."""
    if run is None:
        return None
    if run.id is not None:
        return run.id
    for url in (run.links.self_link.href if run.links and run.links.self_link else None, run.url):
        try:
            match = _RUN_URL.search(urlsplit(url).path) if url else None
        except ValueError:  # a malformed URL names no run
            match = None
        if match:
            return int(match.group(1))
    return None


def _run_state(payload: Mapping[str, Any], envelope: _HookEnvelope, tenant_id: str) -> PipelineEvent | Ignored:
    run = validate(_RunStateEvent, payload, context=envelope.eventType).resource.run
    run_id = _run_number(run)
    if run is None or run_id is None:
        return Ignored(f"Azure DevOps {envelope.eventType} names no run (no id, _links.self.href or url)")
    status = normalise_status(run.result or run.state)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.AZURE_DEVOPS,
        kind=EventKind.RUN_STATUS,
        run_id=str(run_id),
        run_url=https_link(run.links.web.href) if run.links and run.links.web else None,
        status=status,
        delivery_id=envelope.id,
        summary=_summary(envelope, f"Run {run_id} is {status}"),
    )


def _stage_state(payload: Mapping[str, Any], envelope: _HookEnvelope, tenant_id: str) -> PipelineEvent | Ignored:
    resource = validate(_StageStateEvent, payload, context=envelope.eventType).resource
    stage, run = resource.stage, resource.run
    if stage is None:
        return Ignored(f"Azure DevOps {envelope.eventType} names no stage (resource.stage is null or absent)")
    run_id = _run_number(run)
    if run is None or run_id is None:
        return Ignored(f"Azure DevOps {envelope.eventType} names no run (no id, _links.self.href or url)")
    status = normalise_status(stage.result or stage.state)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.AZURE_DEVOPS,
        kind=EventKind.STAGE_STATUS,
        environment=stage.name,
        run_id=str(run_id),
        run_url=https_link(run.links.web.href) if run.links and run.links.web else None,
        status=status,
        delivery_id=envelope.id,
        summary=_summary(envelope, f"Run {run_id} stage {stage.name} is {status}"),
    )


def _source_version(build: _Build) -> tuple[str | None, str | None]:
    """Ref and commit: the modern fields, else the legacy `LG:<ref>:<sha>` form of `sourceGetVersion`."""
    if build.sourceBranch or build.sourceVersion:
        return build.sourceBranch, build.sourceVersion
    parts = (build.sourceGetVersion or "").split(":")
    if len(parts) == 3 and parts[0] == "LG":
        return parts[1] or None, parts[2] or None
    return None, None


def _build_complete(payload: Mapping[str, Any], envelope: _HookEnvelope, tenant_id: str) -> PipelineEvent | Ignored:
    build = validate(_BuildCompleteEvent, payload, context=envelope.eventType).resource
    if not (build.result or build.status):
        return Ignored(f"Azure DevOps {envelope.eventType} build {build.id} carries neither result nor status")
    ref, commit = _source_version(build)
    requested = build.requestedFor or next((r.requestedFor for r in build.requests or () if r.requestedFor), None)
    status = normalise_status(build.result or build.status)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.AZURE_DEVOPS,
        kind=EventKind.RUN_STATUS,
        action=ActionKind.BUILD,
        repository=build.repository.name if build.repository else None,
        ref=ref,
        commit=commit,
        actor=_who(requested) or _who(build.lastChangedBy),
        run_id=str(build.id),
        status=status,
        delivery_id=envelope.id,
        summary=_summary(envelope, f"Build {build.buildNumber or build.id} {status}"),
    )


_HOOKS: dict[str, Callable[[Mapping[str, Any], _HookEnvelope, str], PipelineEvent | Ignored]] = {
    "ms.vss-pipelines.run-state-changed-event": _run_state,
    "ms.vss-pipelines.stage-state-changed-event": _stage_state,
    "build.complete": _build_complete,
}


def parse_service_hook(body: Mapping[str, Any], *, tenant_id: str) -> PipelineEvent | Ignored:
    """Normalise an Azure DevOps service hook notification; unhandled event types are `Ignored`."""
    envelope = validate(_HookEnvelope, body, context="Azure DevOps service hook")
    parser = _HOOKS.get(envelope.eventType)
    if parser is None:
        return Ignored(f"Azure DevOps event '{shown(envelope.eventType)}' is not handled")
    return parser(body, envelope, tenant_id)
