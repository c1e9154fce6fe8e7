"""GitHub webhooks → `PipelineEvent`.

Handled: `deployment_protection_rule` (requested: a gate we must answer), `deployment_status` (created),
`workflow_run`, `workflow_job` and `ping`. Everything else is answered with an explicit `Ignored` reason.
The payload has already passed the HMAC check; here we only check that what we need is present and typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError

from gatekeeper.errors import InvalidInput
from gatekeeper.events.commit_time import commit_time_or_none
from gatekeeper.events.common import (
    Ignored,
    Payload,
    commit_link,
    https_link,
    no_items,
    normalise_status,
    number_to_text,
    problem,
    shown,
    tag_of,
    validate,
    web_link,
)
from gatekeeper.events.model import (
    MAX_CONTEXT_ITEMS,
    ActionKind,
    ArtifactId,
    EventKind,
    EventSource,
    GitHubCallback,
    PipelineEvent,
    VersionTag,
)
from gatekeeper.security.requester import external_id


class _User(Payload):
    login: str
    id: int | None = None


class _Owner(Payload):
    login: str


class _Repository(Payload):
    name: str
    full_name: str
    owner: _Owner
    html_url: str | None = None  # the web address: github.com or a GitHub Enterprise host, never hard-coded


class _Installation(Payload):
    id: int


class _Deployment(Payload):
    id: int
    sha: str | None = None
    ref: str | None = None
    environment: str | None = None
    creator: _User | None = None
    payload: dict[str, Any] | str | None = None  # what the deployment's creator attached (object or string)


class _DeploymentContext(Payload):
    """What a deployment's `payload` may tell the approver (our convention, docs/approval-context.md): the
    version it deploys and the artifacts it ships. Other keys are the creator's own business and are ignored.
    Each value is checked on its own (`_payload_context`), so one that does not fit is left out alone."""

    version: Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=100)] | None = None
    version_tags: list[VersionTag] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS)
    artifacts: list[ArtifactId] = Field(default_factory=no_items, max_length=MAX_CONTEXT_ITEMS)


class _WorkflowRunRef(Payload):
    id: int


class _Action(Payload):
    action: str


class _ProtectionRuleRequested(Payload):
    # GitHub's schema requires neither: an older payload without them cannot be answered, so it is ignored.
    environment: str | None = None
    deployment_callback_url: str | None = None
    deployment: _Deployment | None = None
    sha: str | None = None  # with `deployment: null` the commit and ref are only here
    ref: str | None = None
    repository: _Repository
    sender: _User | None = None
    installation: _Installation | None = None


class _DeploymentStatusBody(Payload):
    state: str
    environment: str | None = None
    creator: _User | None = None
    description: str | None = None


class _DeploymentStatusCreated(Payload):
    deployment_status: _DeploymentStatusBody
    deployment: _Deployment
    workflow_run: _WorkflowRunRef | None = None
    repository: _Repository
    sender: _User | None = None


class _HeadCommit(Payload):
    """`workflow_run.head_commit` (GitHub's SimpleCommit): `timestamp` is when the head commit was made.
    Read leniently: a value that is not a plausible RFC 3339 time only leaves the event without one."""

    timestamp: Any = None


class _WorkflowRun(Payload):
    id: int
    name: str | None = None
    html_url: str | None = None
    status: str
    conclusion: str | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    head_commit: _HeadCommit | None = None
    actor: _User | None = None
    triggering_actor: _User | None = None


class _WorkflowRunEvent(Payload):
    workflow_run: _WorkflowRun
    repository: _Repository
    sender: _User | None = None


class _WorkflowJob(Payload):
    id: int
    run_id: int
    name: str | None = None
    workflow_name: str | None = None
    status: str
    conclusion: str | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    labels: list[str] = []


class _WorkflowJobEvent(Payload):
    workflow_job: _WorkflowJob
    deployment: _Deployment | None = None
    repository: _Repository
    sender: _User | None = None


class _Ping(Payload):
    zen: str | None = None
    hook_id: int | None = None


_RUN_URL = re.compile(r"^/(?:api/v3/)?repos/([^/]+)/([^/]+)/actions/runs/(\d{1,18})/deployment_protection_rule/?$")

_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")  # GitHub sends a GUID

_ACTIONS: dict[str, frozenset[str]] = {
    "deployment_protection_rule": frozenset({"requested"}),
    "deployment_status": frozenset({"created"}),
    "workflow_run": frozenset({"requested", "in_progress", "completed"}),
    "workflow_job": frozenset({"queued", "waiting", "in_progress", "completed"}),
}


def _run_status(status: str, conclusion: str | None) -> str | None:
    """A finished run reports its conclusion (success, failure, ...); an unfinished one its status."""
    if status == "completed" and conclusion:
        return normalise_status(conclusion)
    return normalise_status(status)


def _run_id_from_callback(url: str, repository: _Repository, context: str) -> int:
    """The run id is only in the callback URL: `.../repos/{owner}/{repo}/actions/runs/{id}/deployment_protection_rule`.

    The URL must also name the repository the payload is about, so a payload cannot point our answer
    (sent with an installation token) at someone else's run.
    """
    field = "deployment_callback_url"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise problem(context, field, "must be an https URL")
    match = _RUN_URL.match(parts.path)
    if not match:
        raise problem(context, field, "does not name a workflow run (…/actions/runs/<id>/deployment_protection_rule)")
    owner, repo, run_id = match.groups()
    if f"{owner}/{repo}".lower() != repository.full_name.lower():
        raise problem(context, field, "names a different repository than 'repository.full_name'")
    return int(run_id)


def _requester_ids(*users: _User | None) -> tuple[str, ...]:
    """The sender (who triggered the deployment) first, then the deployment's creator: each by login and id."""
    found = [
        identity
        for user in users
        if user is not None
        for identity in (external_id("github", "id", user.id), external_id("github", "login", user.login))
        if identity
    ]
    return tuple(dict.fromkeys(found))


def _protection_rule(payload: Mapping[str, Any], tenant_id: str, delivery_id: str | None) -> PipelineEvent | Ignored:
    context = "deployment_protection_rule"
    body = validate(_ProtectionRuleRequested, payload, context=context)
    missing = [name for name in ("environment", "deployment_callback_url") if not getattr(body, name)]
    if missing:
        return Ignored(
            f"GitHub deployment_protection_rule without {' or '.join(missing)} (an older payload version) "
            "cannot be answered; nothing to gate"
        )
    assert body.environment is not None and body.deployment_callback_url is not None
    run_id = _run_id_from_callback(body.deployment_callback_url, body.repository, context)
    deployment = body.deployment
    ref = (deployment.ref if deployment else None) or body.ref
    commit = (deployment.sha if deployment else None) or body.sha
    tags, artifacts = _deployment_context(deployment, ref)
    repository_url = https_link(body.repository.html_url)
    actor = (deployment.creator.login if deployment and deployment.creator else None) or (
        body.sender.login if body.sender else None
    )
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GITHUB,
        kind=EventKind.GATE_REQUEST,
        action=ActionKind.DEPLOY,
        environment=body.environment,
        repository=body.repository.full_name,
        ref=ref,
        commit=commit,
        actor=actor,
        requester_ids=_requester_ids(body.sender, deployment.creator if deployment else None),
        repository_url=repository_url,
        commit_url=commit_link(repository_url, commit),
        run_url=web_link(repository_url, "actions", "runs", str(run_id)),
        version_tags=tags,
        artifacts=artifacts,
        run_id=_gate_run_key(run_id, deployment, delivery_id, body.sha),
        callback=GitHubCallback(
            owner=body.repository.owner.login,
            repo=body.repository.name,
            run_id=run_id,
            environment_name=body.environment,
            installation_id=body.installation.id if body.installation else None,
            deployment_callback_url=body.deployment_callback_url,
        ),
        delivery_id=delivery_id,
        summary=f"{body.repository.full_name}: deployment to {body.environment} requested by {actor or 'unknown'}",
    )


def _deployment_context(deployment: _Deployment | None, ref: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Version tags and artifact ids: the tag a `refs/tags/...` ref names, then the deployment payload's
    `version`, `version_tags` and `artifacts` (at most `MAX_CONTEXT_ITEMS` of each, duplicates removed)."""
    tags = [t for t in (tag_of(ref),) if t]
    artifacts: list[str] = []
    payload = deployment.payload if deployment is not None else None
    if isinstance(payload, Mapping):
        tags += _payload_context(payload, "version") + _payload_context(payload, "version_tags")
        artifacts += _payload_context(payload, "artifacts")
    unique_tags = tuple(dict.fromkeys(tags))[:MAX_CONTEXT_ITEMS]
    return unique_tags, tuple(dict.fromkeys(artifacts))[:MAX_CONTEXT_ITEMS]


def _payload_context(payload: Mapping[str, Any], key: str) -> list[str]:
    """The values of one convention key that fit it, each checked on its own; the rest are left out.

    Read leniently: GitHub's schema lets a deployment's `payload` be any object, and whoever created the
    deployment is not who we answer, so a value of another type or shape is only context the approver does
    not see, never a reason to refuse the gate request (which would leave the deployment waiting). Only the
    first `MAX_CONTEXT_ITEMS` items of a list are looked at.
    """
    value = payload.get(key)
    if key == "version":
        items = [value]
    elif isinstance(value, list):
        items = value[:MAX_CONTEXT_ITEMS]
    else:
        return []
    kept: list[str] = []
    for item in items:
        try:
            context = _DeploymentContext.model_validate({key: item if key == "version" else [item]})
        except ValidationError:
            continue
        if key == "version":
            kept += [context.version] if context.version else []
        else:
            kept += getattr(context, key)
    return kept


def _gate_run_key(run_id: int, deployment: _Deployment | None, delivery_id: str | None, sha: str | None) -> str:
    """What separates one protection-rule request from the next for the same run and environment.

    A re-run of the job asks again with a new deployment: keying on the deployment keeps that a new gate,
    while a redelivery of the same request stays a duplicate. With `deployment: null` there is no deployment
    id; GitHub keeps the delivery GUID on a redelivery and issues a new one for a re-run's request, so the
    delivery id takes its place (and the commit, where a sender gives no delivery id).
    """
    if deployment is not None:
        return f"{run_id}/deployments/{deployment.id}"
    if delivery_id and _DELIVERY_ID.match(delivery_id):
        return f"{run_id}/deliveries/{delivery_id.lower()}"
    return f"{run_id}/commits/{sha}" if sha else str(run_id)


def _deployment_status(payload: Mapping[str, Any], tenant_id: str, delivery_id: str | None) -> PipelineEvent | Ignored:
    context = "deployment_status"
    body = validate(_DeploymentStatusCreated, payload, context=context)
    status = body.deployment_status
    environment = status.environment or body.deployment.environment
    if not environment:
        if status.environment is None and body.deployment.environment is None:
            raise problem(context, "deployment.environment", "is required")
        # GitHub's schema requires both fields but allows them empty: such a status names no environment a
        # gate or a watch could be about, so it is answered (2xx), not refused.
        return Ignored(
            "GitHub deployment_status with an empty 'deployment_status.environment' and 'deployment.environment' "
            "names no environment; nothing to record or watch"
        )
    creator = status.creator or body.deployment.creator or body.sender
    run_id = body.workflow_run.id if body.workflow_run else body.deployment.id
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GITHUB,
        kind=EventKind.DEPLOYMENT_STATUS,
        action=ActionKind.DEPLOY,
        environment=environment,
        repository=body.repository.full_name,
        ref=body.deployment.ref,
        commit=body.deployment.sha,
        actor=creator.login if creator else None,
        repository_url=https_link(body.repository.html_url),
        commit_url=commit_link(https_link(body.repository.html_url), body.deployment.sha),
        run_id=str(run_id),
        status=normalise_status(status.state),
        delivery_id=delivery_id,
        subject=f"deployments/{body.deployment.id}",  # links the watch to the gate of this deployment
        summary=f"{body.repository.full_name}: deployment to {environment} is {status.state}",
    )


def _workflow_run(payload: Mapping[str, Any], tenant_id: str, delivery_id: str | None) -> PipelineEvent:
    body = validate(_WorkflowRunEvent, payload, context="workflow_run")
    run = body.workflow_run
    actor = run.triggering_actor or run.actor or body.sender
    status = _run_status(run.status, run.conclusion)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GITHUB,
        kind=EventKind.RUN_STATUS,
        action=ActionKind.BUILD,
        repository=body.repository.full_name,
        ref=run.head_branch,
        commit=run.head_sha,
        actor=actor.login if actor else None,
        repository_url=https_link(body.repository.html_url),
        commit_url=commit_link(https_link(body.repository.html_url), run.head_sha),
        run_url=https_link(run.html_url),
        run_id=str(run.id),
        status=status,
        delivery_id=delivery_id,
        commit_time=commit_time_or_none(run.head_commit.timestamp, datetime.now(UTC)) if run.head_commit else None,
        summary=f"{body.repository.full_name}: workflow run {run.name or run.id} is {status}",
    )


def _workflow_job(payload: Mapping[str, Any], tenant_id: str, delivery_id: str | None) -> PipelineEvent:
    body = validate(_WorkflowJobEvent, payload, context="workflow_job")
    job = body.workflow_job
    status = _run_status(job.status, job.conclusion)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GITHUB,
        kind=EventKind.JOB_STATUS,
        environment=body.deployment.environment if body.deployment else None,
        repository=body.repository.full_name,
        ref=job.head_branch,
        commit=job.head_sha,
        actor=body.sender.login if body.sender else None,
        # Jobs of one run share the run id; the job id keeps their business keys apart.
        run_id=f"{job.run_id}/jobs/{job.id}",
        status=status,
        labels=tuple(f"runner:{label}" for label in job.labels),
        delivery_id=delivery_id,
        summary=f"{body.repository.full_name}: job {job.name or job.id} is {status}",
    )


def _ping(payload: Mapping[str, Any], tenant_id: str, delivery_id: str | None) -> PipelineEvent:
    body = validate(_Ping, payload, context="ping")
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GITHUB,
        kind=EventKind.PING,
        delivery_id=delivery_id,
        summary=body.zen or "ping",
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any], str, str | None], PipelineEvent | Ignored]] = {
    "deployment_protection_rule": _protection_rule,
    "deployment_status": _deployment_status,
    "workflow_run": _workflow_run,
    "workflow_job": _workflow_job,
    "ping": _ping,
}


def parse_github(
    event_name: str, payload: Mapping[str, Any], *, tenant_id: str, delivery_id: str | None
) -> PipelineEvent | Ignored:
    """Normalise one GitHub webhook delivery (`X-GitHub-Event` name + JSON body).

    Returns `Ignored` for events and actions we do not act on; raises `InvalidInput` naming the field
    when a handled event lacks something we need.
    """
    if not isinstance(event_name, str) or not event_name.strip():
        raise InvalidInput("GitHub delivery: header 'X-GitHub-Event' is required", field="header:X-GitHub-Event")
    name = event_name.strip()
    parser = _PARSERS.get(name)
    if parser is None:
        return Ignored(f"GitHub event '{shown(name)}' is not handled")
    allowed = _ACTIONS.get(name)
    if allowed is not None:
        action = validate(_Action, payload, context=name).action
        if action not in allowed:
            return Ignored(f"GitHub event '{name}' with action '{shown(action)}' is not handled")
    elif not isinstance(payload, Mapping):
        raise InvalidInput(f"{name}: the payload must be a JSON object", field="$")
    return parser(payload, tenant_id, delivery_id)
