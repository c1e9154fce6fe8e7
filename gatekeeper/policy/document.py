"""The per-tenant policy document: defaults, change windows, rules and quality objectives.

A policy is YAML or JSON. `load_policy` checks it twice: against the JSON Schema shipped next to this
module (`policy.schema.json`, also usable by editors and CI) and then with the pydantic models, which
add what a schema cannot say (a quorum no larger than the approvers, unique names, real time zones).
Every error names the field path, e.g. `rules[3].approval.stages[0].quorum: must be between 1 and 2`.

Precedence: rules are evaluated in order and the FIRST matching rule wins (like a firewall), so a
specific rule goes above a general one. When no rule matches, the level is `defaults.level` (L2 unless
set to L3): unknown changes need a human.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from gatekeeper.errors import InvalidInput
from gatekeeper.policy.approval import ApprovalChainSpec, ApprovalStageSpec
from gatekeeper.policy.index import RuleIndex
from gatekeeper.policy.levels import GateLevel
from gatekeeper.policy.rules import MatchContext, PolicyRule, RuleMatch
from gatekeeper.policy.watch import WatchSpec, watch_for
from gatekeeper.policy.windows import BusinessHours, ChangeWindows, FreezePeriod
from gatekeeper.quality.paths import format_path, pydantic_issues
from gatekeeper.quality.policy import QualityPolicy

__all__ = [
    "ApprovalChainSpec",
    "ApprovalStageSpec",
    "BusinessHours",
    "ChangeWindows",
    "FreezePeriod",
    "PolicyDefaults",
    "PolicyDocument",
    "PolicyError",
    "PolicyRule",
    "RuleMatch",
    "load_policy",
    "policy_schema",
]

TENANT_PATTERN = r"^[a-z][a-z0-9]{2,31}$"  # same as gatekeeper.store.tables (not imported: no SDK here)


class PolicyError(InvalidInput):
    """A policy that is not valid. `field` is the first bad field's path; `issues` lists them all."""

    def __init__(self, issues: list[tuple[str, str]], source: str | None = None):
        self.issues = issues
        self.source = source
        field, detail = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{detail}{more}", field=field, errors=[{"field": f, "detail": d} for f, d in issues])

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.field}: {self.detail}"


class PolicyDefaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Literal[GateLevel.L2, GateLevel.L3] = GateLevel.L2  # never lower than L2 for unmatched events
    approval: ApprovalChainSpec | None = None  # used at L2 when the matched rule names no chain


class PolicyDocument(BaseModel):
    """One version of one tenant's policy."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema")
    version: int = Field(ge=1)
    tenant: str | None = Field(default=None, pattern=TENANT_PATTERN)
    description: str | None = None
    defaults: PolicyDefaults = Field(default_factory=PolicyDefaults)
    change_windows: ChangeWindows = Field(default_factory=ChangeWindows)
    rules: list[PolicyRule] = Field(default_factory=list)
    quality: QualityPolicy = Field(default_factory=QualityPolicy)
    # A gate whose requester has no Entra identity: "raise" needs one extra distinct approver, "deny" refuses.
    unresolved_requester: Literal["raise", "deny"] = "raise"
    # Post-deploy watch and rollback per environment (gatekeeper.policy.watch); first entry covering it applies.
    watch: tuple[WatchSpec, ...] = ()

    _index: RuleIndex | None = PrivateAttr(default=None)

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, value: list[PolicyRule]) -> list[PolicyRule]:
        seen: dict[str, int] = {}
        for index, rule in enumerate(value):
            if rule.name in seen:
                first = seen[rule.name]
                raise ValueError(f"@[{index}].name: duplicate rule name {rule.name!r} (also at rules[{first}])")
            seen[rule.name] = index
        return value

    def model_post_init(self, context: Any) -> None:
        self._index = RuleIndex(self.rules)

    def first_match(self, ctx: MatchContext) -> PolicyRule | None:
        """The first rule, in document order, whose match holds."""
        assert self._index is not None
        return self._index.first_match(ctx)

    def watch_for(self, environment: str | None) -> WatchSpec | None:
        """The watch settings of `environment`, or None when deployments to it are not watched."""
        return watch_for(self.watch, environment)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form: which policy decided, for the audit log."""
        document = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if document.get("unresolved_requester") == "raise":  # the default: fingerprints of older policies hold
            del document["unresolved_requester"]
        if not document.get("watch"):  # no watch: fingerprints of policies from before it existed hold
            document.pop("watch", None)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# --- loading ------------------------------------------------------------------------------------------------


class _PolicyYamlLoader(yaml.SafeLoader):
    """YAML without the 1.1 surprises that would corrupt a policy: timestamps stay strings (the models
    parse them, offset included) and `18:00` stays a string instead of becoming 1080 (base 60)."""


_INT = "tag:yaml.org,2002:int"
_PolicyYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", _INT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyYamlLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema of policy documents (gatekeeper/policy/policy.schema.json)."""
    text = resources.files("gatekeeper.policy").joinpath("policy.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(policy_schema())


def _schema_message(error: SchemaError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown field(s) not allowed")
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return error.message


def _actionable(error: SchemaError) -> SchemaError:
    """For oneOf/anyOf the top error only says "not valid under any of the given schemas". The branch
    meant is the one the value has the right type for, so prefer errors other than `type`, then the
    deepest one."""
    if not error.context:
        return error
    candidates = [e for e in error.context if e.validator != "type"] or list(error.context)
    return _actionable(max(candidates, key=lambda e: len(e.absolute_path)))


def _schema_issues(data: Any) -> list[tuple[str, str]]:
    issues = []
    for error in sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        chosen = _actionable(error)
        issues.append((format_path(chosen.absolute_path), _schema_message(chosen)))
    return issues


def _parse_text(text: str, source: str | None) -> Any:
    from gatekeeper import json_bounded, yaml_bounded

    try:
        return yaml_bounded.load_yaml(text, loader=_PolicyYamlLoader)  # same bounds as every JSON input
    except json_bounded.JsonBoundsError as exc:
        if exc.line is not None:
            where = f"line {exc.line}, column {exc.column}"
        else:
            where = "(document)" if exc.path == "$" else exc.path
        raise PolicyError(
            [(where, f"not valid YAML/JSON: {exc.message.removeprefix('not valid YAML: ')}")], source
        ) from None


def policy_data(text: str, source: str | None = None) -> Any:
    """The parsed, not yet validated document of a policy's text (bounded, as `load_policy` reads it), for
    tools that edit a policy and hand the result back to `load_policy` (`policy recommend`)."""
    return _parse_text(text, source)


def load_policy(source: str | Path | Mapping[str, Any], *, name: str | None = None) -> PolicyDocument:
    """Load and validate a policy from a file path, YAML/JSON text, or an already parsed mapping.

    Raises PolicyError (a 422 InvalidInput) whose `field` names the first bad field and whose
    `issues` list every one, as (path, message).
    """
    label = name
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        text: str
        if isinstance(source, Path) or ("\n" not in source and Path(source).suffix in (".yaml", ".yml", ".json")):
            path = Path(source)
            label = label or str(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyError([("(file)", f"cannot be read: {exc.strerror}")], label) from None
        else:
            text = str(source)
        data = _parse_text(text, label)
    if not isinstance(data, Mapping):
        raise PolicyError([("(document)", "a policy must be a mapping with version, rules, ...")], label)
    issues = _schema_issues(data)
    if issues:
        raise PolicyError(issues, label)
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(pydantic_issues(exc), label) from None
