"""The action-approval API's request bodies (docs/openapi/actions.yaml), as strict, bounded models.

Strict: no coercion (a number is not a string, a string not a list), unknown fields refused, every text and
list bounded, so a hostile body fails here with the field named, before anything is written.
"""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper.errors import InvalidInput
from gatekeeper.events.model import (
    MAX_COMMAND_CHARS,
    MAX_CONTEXT_ITEMS,
    ActionKind,
    ArtifactId,
    VersionTag,
    WebLink,
)
from gatekeeper.policy.durations import parse_duration

MAX_ARGV = 256
MAX_TIMEOUT = timedelta(days=7)
MIN_TIMEOUT = timedelta(minutes=1)
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_PRINTABLE_LINE = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"  # tab and newline allowed (scripts), other controls refused

Argument = Annotated[str, Field(max_length=4096, pattern=_PRINTABLE_LINE)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ActionTarget(_Strict):
    environment: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")
    resource: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


class ActionContext(_Strict):
    repository: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._/-]+$")
    ref: str | None = Field(default=None, max_length=250, pattern=r"^[^\s\x00-\x1f\x7f]+$")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    run_url: WebLink | None = None
    version_tags: list[VersionTag] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    artifacts: list[ArtifactId] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    ticket: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    plan_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    plan_url: WebLink | None = None


class ActionRequest(_Strict):
    """`POST /api/actions`."""

    command: str | list[Argument]
    action: ActionKind = Field(strict=False)  # a JSON string naming a policy action kind
    target: ActionTarget
    context: ActionContext = Field(default_factory=ActionContext)
    idempotency_key: str = Field(pattern=IDEMPOTENCY_KEY_PATTERN)
    timeout: str | None = Field(default=None, max_length=40)

    @field_validator("command")
    @classmethod
    def _command_is_bounded(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value or len(value) > MAX_ARGV:
                raise ValueError(f"an argv list needs 1 to {MAX_ARGV} items")
            if not value[0].strip():
                raise ValueError("the program (the first item) must not be empty")
        elif not value.strip():
            raise ValueError("must not be empty")
        elif "\x00" in value or any(ord(c) < 32 and c not in "\t\n" for c in value):
            raise ValueError("must not hold control characters")
        if len(command_text(value)) > MAX_COMMAND_CHARS:
            raise ValueError(f"longer than {MAX_COMMAND_CHARS} characters")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_is_a_bounded_duration(cls, value: str | None) -> str | None:
        if value is None:
            return None
        span = parse_duration(value)
        if not MIN_TIMEOUT <= span <= MAX_TIMEOUT:
            raise ValueError("must be between PT1M and P7D")
        return value

    @property
    def timeout_span(self) -> timedelta | None:
        return parse_duration(self.timeout) if self.timeout else None

    @property
    def text(self) -> str:
        return command_text(self.command)


class ReportRequest(_Strict):
    """`POST /api/actions/{id}/report`: whether the step then ran."""

    outcome: Literal["executed", "skipped"]
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    detail: str = Field(default="", max_length=500)


def command_text(command: str | list[str]) -> str:
    """The command as one line, exactly as it will run: a string as given, an argv list shell-quoted (so
    an argument holding spaces or quotes reads unambiguously)."""
    return shlex.join(command) if isinstance(command, list) else command


def _union_tag(part: object) -> bool:
    """Pydantic names the union member that failed in the location (`command.str`, `command.list[...]`);
    the field is what the caller needs."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none") or "[" in part)


def parse_model(model: type[Any], document: dict[str, Any]) -> Any:
    """The validated model, or 422 naming the first bad field (dotted path) and what is wrong with it."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"] if not _union_tag(part)) or "body"
        if error["type"] == "extra_forbidden":
            message = "is not a known field"
        elif error["type"] == "missing":
            message = "is required"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}", where, code="invalid-field", title="A field is invalid") from None
