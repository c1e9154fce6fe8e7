"""The post-deploy watch and rollback settings of a policy: per environment, first match wins.

Modelled on Argo Rollouts' AnalysisRuns: an initial delay, an interval and a verification window; a
`failure_limit` (failed probes tolerated; one more rolls back) and a `consecutive_error_limit` (probes that
could not be evaluated in a row; one more makes the watch inconclusive, which asks people instead of
acting). The rollback is an action with its own level (L1 roll back then notify, L2 ask first, L3 tell
people) and its own target (a GitHub workflow, an Azure DevOps pipeline or a signed webhook).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from gatekeeper.events.common import https_or_loopback_url
from gatekeeper.policy.approval import ApprovalChainSpec
from gatekeeper.policy.durations import parse_duration
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.levels import GateLevel

__all__ = [
    "HttpProbeSpec",
    "JsonCondition",
    "KqlProbeSpec",
    "ProbeSpec",
    "RmmProbeSpec",
    "RollbackSpec",
    "RollbackTarget",
    "WatchSpec",
    "watch_for",
]

MAX_WINDOW = timedelta(days=7)
RMM_DEVICE_PATTERN = r"^(ninjarmm|dattormm|autotask|connectwise|halopsa):device:\S+$"
MAX_PROBES_PER_WINDOW = 1000  # bounds a watch's history (and its replay cost)
_JSON_PATH = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$")


def _duration(value: Any, *, minimum: timedelta = timedelta(0), maximum: timedelta = MAX_WINDOW) -> timedelta:
    span = parse_duration(value) if isinstance(value, str) else value
    if not isinstance(span, timedelta):
        raise ValueError("must be an ISO 8601 duration such as PT5M")
    if span < minimum or span > maximum:
        raise ValueError(f"must be between {minimum} and {maximum}")
    return span


class JsonCondition(BaseModel):
    """A field of the health answer's JSON body (`path` of dotted keys) must equal `equals`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(pattern=_JSON_PATH.pattern)
    equals: str | int | float | bool | None


class HttpProbeSpec(BaseModel):
    """An HTTP health endpoint: the status must be one of `expected_status`, within `max_latency`, and the
    JSON condition, when given, must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["http"] = "http"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    expected_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = Field(default=(200,), min_length=1)
    json_condition: JsonCondition | None = Field(default=None, alias="json")
    max_latency: timedelta = timedelta(seconds=5)
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return https_or_loopback_url(value)

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("max_latency", "timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(milliseconds=1), maximum=timedelta(seconds=60))


class KqlProbeSpec(BaseModel):
    """A Log Analytics / Application Insights query (`azure-monitor-query`): the first numeric value of its
    first row (the column `value` when there is one) fails the probe when it is `operator` `threshold`, or,
    with `max_increase_percent`, when it exceeds the same query's value over the same span before the
    deployment by more than that (the pre-deploy baseline)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["kql"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    workspace_id: str = Field(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
    query: str = Field(min_length=1, max_length=4000)
    timespan: timedelta = timedelta(minutes=15)
    operator: Literal[">", ">=", "<", "<="] = ">"
    threshold: float | None = Field(default=None, allow_inf_nan=False, ge=-1e15, le=1e15)
    max_increase_percent: float | None = Field(default=None, allow_inf_nan=False, ge=0, le=100_000)
    timeout: timedelta = timedelta(seconds=30)

    @field_validator("timespan", mode="before")
    @classmethod
    def _span(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(minutes=1), maximum=timedelta(days=2))

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=1), maximum=timedelta(minutes=3))

    @model_validator(mode="after")
    def _a_condition(self) -> KqlProbeSpec:
        if self.threshold is None and self.max_increase_percent is None:
            raise ValueError("@threshold: a KQL probe needs a threshold, a max_increase_percent, or both")
        return self


class RmmProbeSpec(BaseModel):
    """The tenant's RMM (`rmm:` in the tenants file) asked about devices: the probe fails when one of them is
    offline, and is an error when the RMM cannot be asked (issue 15). Device ids as the RMM names them
    (NinjaOne device id, Datto RMM device uid)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["rmm"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    devices: tuple[Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,64}$")], ...] = Field(min_length=1, max_length=20)


ProbeSpec = Annotated[HttpProbeSpec | KqlProbeSpec | RmmProbeSpec, Field(discriminator="type")]


class GitHubRollbackTarget(BaseModel):
    """Dispatch a workflow (`workflow_dispatch`) in the deployment's repository."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["github"] = "github"
    workflow: str = Field(min_length=1, max_length=200, pattern=r"^([0-9]{1,18}|[A-Za-z0-9._-]+\.ya?ml)$")
    ref: str | None = Field(default=None, min_length=1, max_length=255)  # default: the last good deployment's ref
    inputs: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")], str] = Field(default_factory=dict)

    @field_validator("inputs")
    @classmethod
    def _few_inputs(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 10:  # GitHub's own limit on workflow_dispatch inputs
            raise ValueError("at most 10 inputs")
        return value


class AzureDevOpsRollbackTarget(BaseModel):
    """Queue a pipeline run (`POST {organization}/{project}/_apis/pipelines/{pipeline_id}/runs`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["azure-devops"] = "azure-devops"
    organization: str = Field(min_length=1, max_length=500)
    project: str = Field(min_length=1, max_length=64, pattern=r"^[^/\\?#%*:|\"<>]+$")
    pipeline_id: int = Field(ge=1, le=2**31 - 1)
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], str] = Field(default_factory=dict)

    @field_validator("organization")
    @classmethod
    def _org(cls, value: str) -> str:
        return https_or_loopback_url(value).rstrip("/")


class WebhookRollbackTarget(BaseModel):
    """A signed `rollback.requested` webhook; the URL must lie under the tenant's callback URL prefixes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["webhook"] = "webhook"
    url: str = Field(min_length=1, max_length=2000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return https_or_loopback_url(value)


RollbackTarget = Annotated[
    GitHubRollbackTarget | AzureDevOpsRollbackTarget | WebhookRollbackTarget, Field(discriminator="type")
]


_PROBES: dict[str, type[BaseModel]] = {"http": HttpProbeSpec, "kql": KqlProbeSpec, "rmm": RmmProbeSpec}
_TARGETS: dict[str, type[BaseModel]] = {
    "github": GitHubRollbackTarget,
    "azure-devops": AzureDevOpsRollbackTarget,
    "webhook": WebhookRollbackTarget,
}


def _typed(value: Any, models: dict[str, type[BaseModel]], where: str, default: str | None = None) -> Any:
    """One of `models` by the value's `type`, with errors naming the field without pydantic's union tag."""
    if not isinstance(value, dict):
        return value
    kind = value.get("type", default)
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(f"@{where}.type: must be one of {', '.join(sorted(models))}".replace("@.", "@"))
    try:
        return model.model_validate({**value, "type": kind})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if message.startswith("@") and ": " in message:  # a model validator that names its own field
            loc, message = message[1:].split(": ", 1)
        raise ValueError(f"@{where}.{loc}: {message}".replace("@.", "@")) from None


class RollbackSpec(BaseModel):
    """What a failed watch does: the level (raised, never lowered, by a policy rule for `rollback`), the
    chain at L2 (else `defaults.approval`), the target, and how long to follow the rollback run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: GateLevel = GateLevel.L1
    approval: ApprovalChainSpec | None = None
    target: RollbackTarget | None = None  # none: people are told what to do (as at L3)
    follow_timeout: timedelta = timedelta(minutes=30)
    notify: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = ()

    @field_validator("target", mode="before")
    @classmethod
    def _target_by_type(cls, value: Any) -> Any:
        return None if value is None else _typed(value, _TARGETS, "")

    @field_validator("follow_timeout", mode="before")
    @classmethod
    def _follow(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(minutes=1), maximum=timedelta(hours=6))


class WatchSpec(BaseModel):
    """One entry of `watch`: the environments it covers and how a deployment to them is watched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environments: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(min_length=1)
    window: timedelta = timedelta(minutes=30)
    initial_delay: timedelta = timedelta(0)
    interval: timedelta = timedelta(minutes=1)
    failure_limit: int = Field(default=0, ge=0, le=100)
    consecutive_error_limit: int = Field(default=4, ge=0, le=100)
    probes: tuple[ProbeSpec, ...] = Field(default=(), max_length=10)
    alert_resources: tuple[Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^/subscriptions/")], ...] = (
        Field(default=(), max_length=50)
    )
    # Devices whose RMM (or PSA device) alerts count against the watch, as `<connector>:device:<id>` (issue 15).
    rmm_devices: tuple[Annotated[str, Field(min_length=1, max_length=300, pattern=RMM_DEVICE_PATTERN)], ...] = Field(
        default=(), max_length=50
    )
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)

    _globs: Any = PrivateAttr(default=None)

    @field_validator("probes", mode="before")
    @classmethod
    def _probes_by_type(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        return [_typed(p, _PROBES, f"[{i}]", default="http") for i, p in enumerate(value)]

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(minutes=1))

    @field_validator("initial_delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> timedelta:
        return _duration(value, maximum=timedelta(hours=24))

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> timedelta:
        return _duration(value, minimum=timedelta(seconds=10), maximum=timedelta(hours=24))

    @field_validator("alert_resources", "rmm_devices")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(item.lower().rstrip("/") for item in value)  # Azure resource ids compare case-insensitively

    @model_validator(mode="after")
    def _bounded(self) -> WatchSpec:
        if self.interval > self.window:
            raise ValueError("@interval: must not be longer than the window")
        if self.window / self.interval > MAX_PROBES_PER_WINDOW:
            raise ValueError(f"@interval: at most {MAX_PROBES_PER_WINDOW} probe rounds per window")
        return self

    def model_post_init(self, context: Any) -> None:
        self._globs = GlobSet(self.environments, False).regex

    def covers(self, environment: str) -> bool:
        return self._globs.match(environment) is not None

    @property
    def rounds(self) -> int:
        """How many probe rounds fit in the window (at least one)."""
        return max(1, int(self.window / self.interval))


def watch_for(watches: tuple[WatchSpec, ...] | list[WatchSpec], environment: str | None) -> WatchSpec | None:
    """The first watch entry covering `environment`, or None (that environment is not watched)."""
    if not environment:
        return None
    return next((w for w in watches if w.covers(environment)), None)
