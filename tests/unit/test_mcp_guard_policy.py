"""mcp-guard's policy (levels by tool name and argument patterns; levels only rise), its hostile files, the
exact command an approval binds to, and the guard's refusals that need no network: the approval's command
must be the call's, L3 never reaches the upstream, Gatekeeper's credential never reaches the upstream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.client.api import ActionState
from gatekeeper.client.environment import ClientEnvironment
from gatekeeper.errors import InvalidInput
from gatekeeper.mcp.guard import Guard
from gatekeeper.mcp.guard_policy import (
    GuardPolicy,
    GuardPolicyDocument,
    Verdict,
    arguments_digest,
    guarded_command,
    load_guard_policy,
)
from gatekeeper.policy.levels import GateLevel
from tests.conftest import ROOT

POLICY = {
    "version": 1,
    "defaults": {"level": "L0", "environment": "production"},
    "rules": [
        {"name": "delete", "match": {"tools": ["kubectl_delete_*"]}, "level": "L2"},
        {
            "name": "scale-prod",
            "match": {"tools": ["kubectl_scale"], "arguments": {"namespace": "prod-*"}},
            "level": "L2",
            "environment": "production",
        },
        {
            "name": "scale-big",
            "match": {"tools": ["kubectl_scale"], "arguments": {"replicas": "1??"}},
            "level": "L3",
        },
        {"name": "staging", "match": {"tools": ["kubectl_*"], "arguments": {"namespace": "staging-*"}}, "level": "L1"},
        {"name": "export", "match": {"tools": ["db.export"]}, "level": "L2", "action": "data_export"},
    ],
}


def policy(document: dict[str, Any] = POLICY) -> GuardPolicy:
    return GuardPolicy(GuardPolicyDocument.model_validate(document))


@pytest.mark.parametrize(
    ("tool", "arguments", "level", "rules"),
    [
        ("list_pods", {"namespace": "prod-web"}, "L0", ()),
        ("kubectl_delete_namespace", {"name": "prod-legacy"}, "L2", ("delete",)),
        ("kubectl_scale", {"namespace": "prod-web", "replicas": 3}, "L2", ("scale-prod",)),
        ("kubectl_scale", {"namespace": "staging-web", "replicas": 3}, "L1", ("staging",)),
        ("kubectl_scale", {"namespace": "staging-web", "replicas": 120}, "L3", ("scale-big", "staging")),
        ("kubectl_scale", {"replicas": 3}, "L0", ()),  # a pattern's argument missing: the rule does not match
        ("kubectl_delete_namespace", {"namespace": "staging-a"}, "L2", ("delete", "staging")),  # levels only rise
        ("db.export", {}, "L2", ("export",)),
        ("dbxexport", {}, "L0", ()),  # `.` is literal, not a wildcard
    ],
)
def test_the_level_is_the_highest_matching_rules(tool, arguments, level, rules):
    verdict = policy().verdict(tool, arguments)
    assert (str(verdict.level), verdict.rules) == (level, rules)


def test_the_rule_with_the_highest_level_names_the_action_and_environment():
    export = policy().verdict("db.export", {})
    assert (export.action, export.environment) == ("data_export", "production")
    scaled = policy().verdict("kubectl_scale", {"namespace": "prod-web", "replicas": 3})
    assert (scaled.action, scaled.environment) == ("infrastructure_change", "production")


def test_the_command_is_the_tool_and_its_arguments_verbatim_in_one_spelling():
    assert guarded_command("kubectl_delete_namespace", {"name": "prod-legacy"}) == (
        'mcp-tool kubectl_delete_namespace {"name":"prod-legacy"}'
    )
    assert guarded_command("t", {"b": 1, "a": "ü"}) == 'mcp-tool t {"a":"ü","b":1}'


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.integers(), st.text(max_size=12), st.booleans(), st.none()),
        max_size=6,
    )
)
def test_the_digest_binds_the_arguments_and_not_their_order(arguments):
    reordered = dict(reversed(list(arguments.items())))
    assert arguments_digest("tool", arguments) == arguments_digest("tool", reordered)
    changed = {**arguments, "__extra": 1}
    assert arguments_digest("tool", changed) != arguments_digest("tool", arguments)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: 1\nrules: [{name: x, match: {tools: [a]}, level: L9}]\n", "rules.0.level"),
        ("version: 1\nrules: [{name: x, match: {tools: [a]}, level: L2, surprise: 1}]\n", "rules.0.surprise"),
        ("version: 2\n", "version"),
        ("version: 1\nrules: [{name: x, match: {tools: [a]}, level: L2, action: launch}]\n", "rules.0.action"),
        ("version: 1\nrules: [{name: x, match: {tools: []}, level: L2}]\n", "rules.0.match.tools"),
        ("version: 1\nrules: [{name: x, match: {tools: [a]}, level: L2, timeout: soon}]\n", "timeout"),
        ("version: 1\nversion: 1\n", "policy"),  # duplicate keys
        ("version: 1\nrules: " + "[" * 80 + "]" * 80 + "\n", "policy"),  # too deep
        ("- just a list\n", "policy"),
        (
            "version: 1\nrules:\n"
            + "".join(f"  - {{name: r{i}, match: {{tools: [a]}}, level: L2}}\n" for i in range(201)),
            "rules",
        ),
    ],
)
def test_hostile_policy_files_are_refused_naming_the_file_and_field(tmp_path, text, field):
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as refused:
        load_guard_policy(path)
    assert refused.value.field == field and str(path) in refused.value.detail


def test_an_oversize_or_binary_policy_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\n#" + "x" * 300_000)
    with pytest.raises(InvalidInput, match="larger than"):
        load_guard_policy(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_guard_policy(binary)


def test_the_cli_refuses_a_bad_policy_with_exit_2_naming_file_and_field(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text("version: 1\nrules: [{name: x, match: {tools: [a]}, level: L7}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "mcp-guard", "--upstream", "true", "--policy", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "GATEKEEPER_URL": "http://127.0.0.1:9", "GATEKEEPER_TOKEN": "x"},
    )
    assert done.returncode == 2
    assert str(path) in done.stderr and "rules.0.level" in done.stderr and "x" * 1 not in done.stdout


def test_the_upstream_never_gets_gatekeepers_credentials():
    environ = {
        "PATH": "/bin",
        "GATEKEEPER_TOKEN": "t",
        "gatekeeper_api_key": "k",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "r",
    }
    assert ClientEnvironment.for_child_process(environ) == {"PATH": "/bin"}


# -- the guard's own refusals -------------------------------------------------------------------------


@dataclass
class Upstream:
    """Records what reached the upstream (the guard's one dependency on the upstream session)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        from mcp.types import CallToolResult, TextContent

        self.calls.append((name, arguments))
        return CallToolResult(content=[TextContent(type="text", text="done")])


@dataclass
class Answers:
    """Gatekeeper's answers as the API gives them (the `Approvals` port), and what was asked."""

    command: str
    asked: list[tuple[str, Verdict, str]] = field(default_factory=list)
    reports: list[tuple[str, str]] = field(default_factory=list)

    def request(self, command: str, verdict: Verdict, key: str) -> ActionState:
        self.asked.append((command, verdict, key))
        status = "human_only" if verdict.level is GateLevel.L3 else "approved"
        return ActionState(id="gate-" + "1" * 40, status=status, command=self.command)

    def wait(self, action_id: str, seconds: float) -> ActionState:  # pragma: no cover - nothing is pending here
        raise AssertionError("not pending")

    def report(self, action_id: str, outcome: str, detail: str, exit_code: int | None) -> None:
        self.reports.append((outcome, detail))


def run_guard(answers: Answers, tool: str, arguments: dict[str, Any]) -> tuple[Any, Upstream]:
    upstream = Upstream()
    guard = Guard(policy(), answers, upstream, hold_seconds=1)  # type: ignore[arg-type]
    return asyncio.run(guard.call_tool(tool, arguments)), upstream


def test_an_approval_for_other_arguments_is_refused_and_nothing_is_forwarded():
    approved_elsewhere = guarded_command("kubectl_delete_namespace", {"name": "prod-other"})
    result, upstream = run_guard(Answers(approved_elsewhere), "kubectl_delete_namespace", {"name": "prod-legacy"})
    assert result.is_error is True and "differ" in result.content[0].text
    assert upstream.calls == []


def test_an_approval_for_these_arguments_forwards_them_once_and_a_repeat_asks_again():
    arguments = {"name": "prod-legacy"}
    answers = Answers(guarded_command("kubectl_delete_namespace", arguments))
    upstream = Upstream()
    guard = Guard(policy(), answers, upstream, hold_seconds=1)  # type: ignore[arg-type]

    async def twice() -> None:
        await guard.call_tool("kubectl_delete_namespace", arguments)
        await guard.call_tool("kubectl_delete_namespace", arguments)

    asyncio.run(twice())
    assert upstream.calls == [("kubectl_delete_namespace", arguments)] * 2
    first_key, second_key = answers.asked[0][2], answers.asked[1][2]
    assert first_key != second_key and first_key.endswith(":0") and second_key.endswith(":1")  # one approval, one use
    assert answers.reports == [("executed", "guard: forwarded kubectl_delete_namespace")] * 2


def test_l3_is_refused_at_once_as_human_only_and_never_forwarded():
    result, upstream = run_guard(Answers(""), "kubectl_scale", {"namespace": "prod-a", "replicas": 150})
    assert result.is_error is True and "human only" in result.content[0].text
    assert upstream.calls == []


def test_arguments_that_cannot_be_written_down_exactly_are_refused():
    result, upstream = run_guard(Answers(""), "kubectl_delete_namespace", {"name": float("nan")})
    assert result.is_error is True and upstream.calls == []


def test_the_example_policy_file_loads():
    loaded = load_guard_policy(ROOT / "examples" / "mcp-guard.yaml")
    assert str(loaded.verdict("kubectl_delete_namespace", {"name": "prod-legacy"}).level) == "L2"
    assert json.dumps(loaded.document.model_dump(mode="json"))


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_of_several_matching_rules_the_highest_names_the_action_and_environment_whatever_their_order(order):
    rules = [
        {"name": "low", "match": {"tools": ["db_*"]}, "level": "L1", "action": "deploy", "environment": "staging"},
        {
            "name": "high",
            "match": {"tools": ["db_export"]},
            "level": "L3",
            "action": "data_export",
            "environment": "prod-eu",
        },
    ]
    verdict = policy({"version": 1, "rules": [rules[i] for i in order]}).verdict("db_export", {})
    assert str(verdict.level) == "L3"
    assert (verdict.action, verdict.environment) == ("data_export", "prod-eu")


def test_a_structured_argument_is_matched_in_its_canonical_json_spelling():
    """Objects, lists, numbers and booleans are compared as canonical JSON (sorted keys, no blanks), the same
    spelling the approver sees in the command, never as Python's repr."""
    document = {
        "version": 1,
        "rules": [
            {"name": "labels", "match": {"tools": ["tag"], "arguments": {"labels": '{"a":2,"b":1}'}}, "level": "L2"},
            {"name": "force", "match": {"tools": ["wipe"], "arguments": {"force": "true"}}, "level": "L3"},
        ],
    }
    assert str(policy(document).verdict("tag", {"labels": {"b": 1, "a": 2}}).level) == "L2"
    assert str(policy(document).verdict("wipe", {"force": True}).level) == "L3"
    assert str(policy(document).verdict("wipe", {"force": "yes"}).level) == "L0"


@pytest.mark.parametrize("glob", ["kubectl\x07", "kubectl\n*", ""])
def test_a_tool_glob_with_control_characters_is_refused(glob):
    document = {"version": 1, "rules": [{"name": "x", "match": {"tools": [glob]}, "level": "L2"}]}
    with pytest.raises(ValidationError) as refused:
        GuardPolicyDocument.model_validate(document)
    assert refused.value.errors()[0]["loc"][:4] == ("rules", 0, "match", "tools")
