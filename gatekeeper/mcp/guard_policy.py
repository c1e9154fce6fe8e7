"""mcp-guard's policy file: which upstream tool calls are privileged, at which level, as what kind of action.

The vocabulary is the tenant policy's (gatekeeper/policy/): levels L0-L3 (`GateLevel`), action kinds
(`ActionKind`), environments, and globs with GitHub's semantics (`GlobSet`: `*` within a segment, `**`
across `/`). A rule matches a call when its tool-name glob matches and every argument pattern matches that
argument's value (text as given; numbers, booleans and objects as canonical JSON). Levels only rise: the
call's level is the highest of the matching rules' and the default's, as policy rules and quality gates only
ever raise a gate's level. The file is YAML or JSON, read with the same bounds as every operator file;
every error names the file and the field.

```yaml
version: 1
defaults: {level: L0, environment: production}
rules:
  - name: delete-namespaces
    match: {tools: ["kubectl_delete*"], arguments: {namespace: "prod-*"}}
    level: L2
    action: infrastructure_change
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper.errors import InvalidInput
from gatekeeper.events.model import MAX_COMMAND_CHARS, ActionKind
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.levels import GateLevel

MAX_RULES = 200
MAX_POLICY_BYTES = 262_144
COMMAND_PREFIX = "mcp-tool"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}$"
_GLOB = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolMatch(_Strict):
    tools: list[str] = Field(min_length=1, max_length=50)
    arguments: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("tools")
    @classmethod
    def _bounded_globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not glob or len(glob) > 200 or any(ord(c) < 32 for c in glob):
                raise ValueError("each tool glob is 1..200 printable characters")
        return value

    @field_validator("arguments")
    @classmethod
    def _bounded_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, glob in value.items():
            if not name or len(name) > 100 or not glob or len(glob) > 500 or any(ord(c) < 32 for c in glob):
                raise ValueError("argument names are 1..100 characters, patterns 1..500 printable characters")
        return value


class GuardRule(_Strict):
    name: str = Field(pattern=_NAME)
    match: ToolMatch
    level: GateLevel
    action: ActionKind = ActionKind.INFRASTRUCTURE_CHANGE
    environment: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}$")
    resource: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    timeout: str | None = Field(default=None, max_length=40)


class GuardDefaults(_Strict):
    level: GateLevel = GateLevel.L0
    environment: str = Field(default="production", pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,99}$")
    action: ActionKind = ActionKind.INFRASTRUCTURE_CHANGE


class GuardPolicyDocument(_Strict):
    version: int = Field(ge=1, le=1)
    defaults: GuardDefaults = Field(default_factory=GuardDefaults)
    rules: list[GuardRule] = Field(default_factory=list, max_length=MAX_RULES)


@dataclass(frozen=True)
class Verdict:
    """What the guard does with one call: its level and, when Gatekeeper is asked, as what."""

    level: GateLevel
    rules: tuple[str, ...]
    action: str
    environment: str
    resource: str | None
    timeout: str | None


def argument_text(value: Any) -> str:
    """An argument's value as a pattern sees it: text as given, anything else as canonical JSON."""
    return value if isinstance(value, str) else canonical_json(value)


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces, non-ASCII kept), so the digest binds the arguments."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def guarded_command(tool: str, arguments: dict[str, Any]) -> str:
    """The exact command the approver sees and approves: the tool's name and its arguments, verbatim."""
    return f"{COMMAND_PREFIX} {tool} {canonical_json(arguments)}"


def arguments_digest(tool: str, arguments: dict[str, Any]) -> str:
    return hashlib.sha256(guarded_command(tool, arguments).encode()).hexdigest()


class GuardPolicy:
    """The compiled rules."""

    def __init__(self, document: GuardPolicyDocument) -> None:
        self.document = document
        self._compiled = [
            (
                rule,
                GlobSet(tuple(rule.match.tools)),
                {name: GlobSet((glob,)) for name, glob in rule.match.arguments.items()},
            )
            for rule in document.rules
        ]

    def verdict(self, tool: str, arguments: dict[str, Any]) -> Verdict:
        """The level of one call (the highest matching rule's, never below the default) and how to ask."""
        defaults = self.document.defaults
        level, matched = defaults.level, []
        chosen: GuardRule | None = None
        for rule, tools, patterns in self._compiled:
            if not tools.regex.match(tool):
                continue
            if any(
                name not in arguments or not p.regex.match(argument_text(arguments[name]))
                for name, p in patterns.items()
            ):
                continue
            matched.append(rule.name)
            if chosen is None or rule.level > chosen.level:
                chosen = rule
            level = level.raise_to(rule.level)
        return Verdict(
            level=level,
            rules=tuple(matched),
            action=str((chosen.action if chosen else defaults.action).value),
            environment=(chosen.environment if chosen and chosen.environment else defaults.environment),
            resource=chosen.resource if chosen else None,
            timeout=chosen.timeout if chosen else None,
        )


def load_guard_policy(path: Path) -> GuardPolicy:
    """The policy file, or InvalidInput naming the file and the field (the CLI exits 2)."""
    from gatekeeper.yaml_bounded import load_yaml

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})", "policy") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_POLICY_BYTES} bytes", "policy")
    try:
        data = load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text", "policy") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: {exc}", "policy") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping with version, defaults and rules", "policy")
    try:
        document = GuardPolicyDocument.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "policy"
        message = "is not a known field" if error["type"] == "extra_forbidden" else error["msg"]
        raise InvalidInput(f"{path}: {where}: {str(message).removeprefix('Value error, ')}", where) from None
    for rule in document.rules:
        if rule.timeout is not None:
            from gatekeeper.policy.durations import parse_duration

            try:
                parse_duration(rule.timeout)
            except (ValueError, InvalidInput):
                raise InvalidInput(f"{path}: rules.{rule.name}.timeout: not an ISO 8601 duration", "timeout") from None
    return GuardPolicy(document)


def check_command_size(command: str) -> bool:
    return len(command) <= MAX_COMMAND_CHARS
