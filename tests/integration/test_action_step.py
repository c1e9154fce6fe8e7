"""The GitHub Action (actions/request-approval): its action.yml against the published metadata schema, and its
self-contained script run as GitHub runs it (a subprocess with GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and the
OIDC token request variables) against the action-approval contract (the contract double on loopback).
The same script against the real registered functions: tests/e2e/test_action_clients.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from gatekeeper.client import derive_idempotency_key
from gatekeeper.client.environment import ClientEnvironment
from tests.conftest import ROOT
from tests.support.actions_contract_double import ActionsContractDouble, GitHubIdTokenEndpoint, unsigned_jwt

ACTION_DIR = ROOT / "actions" / "request-approval"
SCRIPT = ACTION_DIR / "request.py"
SCHEMA = ROOT / "tests" / "fixtures" / "github-action" / "github-action.schema.json"
TENANT, KEY = "contoso", "contoso-api-key-0123456789"
AUDIENCE = "api://gatekeeper-contoso/github-actions"
REQUEST_TOKEN = "runner-request-token-xyz"
GITHUB_RUN = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "contoso/infra",
    "GITHUB_RUN_ID": "9100001",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "deploy",
    "GITHUB_ACTION": "request",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": "a" * 40,
}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("request_approval_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_github_output(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value` lines and `name<<DELIM ... DELIM` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


class Runner:
    """One job's environment: where outputs and the summary go, and how the step authenticates."""

    def __init__(self, tmp: Path, double: ActionsContractDouble, token_endpoint: GitHubIdTokenEndpoint) -> None:
        self.tmp = tmp
        self.output = tmp / "github_output"
        self.summary = tmp / "step_summary.md"
        self.output.touch()
        self.summary.touch()
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", ""),
            **GITHUB_RUN,
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "ACTIONS_ID_TOKEN_REQUEST_URL": token_endpoint.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
            "GATEKEEPER_URL": double.url,
            "GATEKEEPER_AUDIENCE": AUDIENCE,
            "GATEKEEPER_COMMAND": "terraform apply -auto-approve plan.tfplan",
            "GATEKEEPER_ACTION": "infrastructure_change",
            "GATEKEEPER_ENVIRONMENT": "production",
            "GATEKEEPER_ON_DENY": "skip",
            "GATEKEEPER_RETRY_SECONDS": "3",
        }

    def run(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **overrides}
        env = {k: v for k, v in env.items() if v != "<unset>"}
        return subprocess.run(
            [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def outputs(self) -> dict[str, str]:
        return read_github_output(self.output)


@pytest.fixture
def double() -> Iterator[ActionsContractDouble]:
    with ActionsContractDouble() as server:
        server.api_keys[TENANT] = KEY
        yield server


@pytest.fixture
def token_endpoint(double: ActionsContractDouble) -> Iterator[GitHubIdTokenEndpoint]:
    def mint(audience: str) -> str:
        token = unsigned_jwt({"aud": audience, "exp": int(time.time()) + 300, "repository": "contoso/infra"})
        double.tokens[token] = (TENANT, "github:login:dev-alice")
        return token

    with GitHubIdTokenEndpoint(REQUEST_TOKEN, mint) as endpoint:
        yield endpoint


@pytest.fixture
def runner(tmp_path: Path, double: ActionsContractDouble, token_endpoint: GitHubIdTokenEndpoint) -> Runner:
    return Runner(tmp_path, double, token_endpoint)


# --- action.yml ----------------------------------------------------------------------------------------------


def action_yml() -> dict[str, Any]:
    return yaml.safe_load((ACTION_DIR / "action.yml").read_text(encoding="utf-8"))


def test_action_yml_is_valid_against_the_published_metadata_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(action_yml()), key=str)
    assert errors == []


def test_the_schema_catches_a_broken_action_yml() -> None:
    """The validation above can fail: the same schema refuses a composite step without `shell`."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = action_yml()
    del broken["runs"]["steps"][0]["shell"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_action_yml_has_the_contract_inputs_and_outputs_and_never_pastes_inputs_into_shell() -> None:
    action = action_yml()
    assert {"command", "action", "environment", "timeout", "on-deny"} <= set(action["inputs"])
    assert all(action["inputs"][name]["required"] for name in ("command", "action", "environment"))
    assert action["inputs"]["on-deny"]["default"] == "skip"
    assert {"approved", "decision", "action-id", "approval-url"} <= set(action["outputs"])
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.request.outputs.{name} }}}}"
    (step,) = action["runs"]["steps"]
    assert action["runs"]["using"] == "composite" and step["shell"] == "bash"
    assert "${{" not in step["run"]  # inputs arrive as environment variables only: no script injection
    assert all(value.startswith("${{ inputs.") for value in step["env"].values())
    assert '"$GITHUB_ACTION_PATH/request.py"' in step["run"]


def test_the_script_imports_the_standard_library_only() -> None:
    import ast

    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules - {"__future__"} <= sys.stdlib_module_names


# --- the script as a step ------------------------------------------------------------------------------------


def test_approved_sets_approved_true_and_writes_the_summary(runner: Runner, double: ActionsContractDouble) -> None:
    double.decide_when_requested("approved")
    done = runner.run()
    assert done.returncode == 0, done.stderr
    out = runner.outputs()
    assert out["approved"] == "true" and out["decision"] == "approved" and out["level"] == "L2"
    assert out["action-id"] == "act-0001" and out["approval-url"].endswith("/api/approvals/gate-act-0001/page")
    summary = runner.summary.read_text()
    assert "### Gatekeeper: approved" in summary and "<pre>terraform apply -auto-approve plan.tfplan</pre>" in summary
    action = double.only_action()
    assert action.requester == "github:login:dev-alice"  # authenticated by the job's OIDC token
    assert action.body["context"]["repository"] == "contoso/infra"
    assert action.body["context"]["run_url"] == "https://github.com/contoso/infra/actions/runs/9100001/attempts/1"
    asked = double.requests_to("/api/actions", "POST")[0]
    assert asked.headers["authorization"].startswith("Bearer ") and "x-functions-key" not in asked.headers


def test_denied_with_skip_succeeds_with_approved_false_and_reports_skipped(
    runner: Runner, double: ActionsContractDouble
) -> None:
    double.decide_when_requested("denied")
    done = runner.run()
    assert done.returncode == 0, done.stderr
    out = runner.outputs()
    assert out["approved"] == "false" and out["decision"] == "denied"
    assert "::warning::Gatekeeper: denied (level L2) by Jane Approver" in done.stdout
    assert double.only_action().reports == [{"outcome": "skipped", "detail": "not run: denied (on-deny: skip)"}]
    assert [what for _, what, _ in double.audit] == ["requested", "denied", "skipped"]


def test_denied_with_fail_fails_the_step(runner: Runner, double: ActionsContractDouble) -> None:
    double.decide_when_requested("denied")
    done = runner.run(GATEKEEPER_ON_DENY="fail")
    assert done.returncode == 4
    assert runner.outputs()["approved"] == "false" and "::error::Gatekeeper: denied" in done.stdout
    assert double.only_action().reports == []


def test_a_local_timeout_with_skip_succeeds_and_withdraws_the_request(
    runner: Runner, double: ActionsContractDouble
) -> None:
    done = runner.run(GATEKEEPER_WAIT_SECONDS="1")
    assert done.returncode == 0, done.stderr
    assert runner.outputs()["decision"] == "timeout" and runner.outputs()["approved"] == "false"
    assert double.only_action().status == "cancelled"
    done = runner.run(GATEKEEPER_WAIT_SECONDS="1", GATEKEEPER_ON_DENY="fail", GATEKEEPER_IDEMPOTENCY_KEY="other")
    assert done.returncode == 3


def test_unavailable_fails_the_step_even_with_skip(runner: Runner, double: ActionsContractDouble) -> None:
    double.fail_next(1000, 503, path_contains="/api/actions", retry_after=1)
    started = time.monotonic()
    done = runner.run()
    assert done.returncode == 3 and time.monotonic() - started < 20
    assert runner.outputs()["approved"] == "false" and runner.outputs()["decision"] == "unavailable"
    assert len(double.requests_to("/api/actions", "POST")) >= 2  # retried before giving up


def test_bad_input_exits_2_naming_the_input(runner: Runner, double: ActionsContractDouble) -> None:
    for overrides, named in [
        ({"GATEKEEPER_ACTION": "nuke"}, "(action)"),
        ({"GATEKEEPER_TIMEOUT": "forever"}, "(timeout)"),
        ({"GATEKEEPER_ON_DENY": "maybe"}, "(on-deny)"),
        ({"GATEKEEPER_URL": "http://gatekeeper.example.com"}, "(gatekeeper-url)"),
        ({"GATEKEEPER_COMMAND": ""}, "(command)"),
        ({"GATEKEEPER_PLAN_FILE": "/nonexistent/plan"}, "(plan-file)"),
        ({"ACTIONS_ID_TOKEN_REQUEST_URL": "<unset>"}, "id-token: write"),
    ]:
        done = runner.run(**overrides)
        assert done.returncode == 2, (overrides, done.stdout, done.stderr)
        assert named in done.stdout, (overrides, done.stdout)
        assert runner.outputs()["approved"] == "false"
    assert double.requests_to("/api/actions") == []


def test_a_hostile_command_is_data_escaped_in_the_summary_and_outputs_are_multiline_safe(
    runner: Runner, double: ActionsContractDouble, tmp_path: Path
) -> None:
    double.level_for = lambda body: "L0"
    hostile = 'rm -rf "$(whoami)" </pre><script>alert(1)</script>\nghadelimiter_x\n| col |'
    plan = tmp_path / "plan.bin"
    plan.write_bytes(b"plan" * 10)
    done = runner.run(GATEKEEPER_COMMAND=hostile, GATEKEEPER_PLAN_FILE=str(plan))
    assert done.returncode == 0, done.stderr
    assert double.only_action().body["command"] == hostile  # sent verbatim, never run by a shell
    assert (
        double.only_action().body["context"]["plan_digest"] == "sha256:" + hashlib.sha256(plan.read_bytes()).hexdigest()
    )
    summary = runner.summary.read_text()
    assert "<script>" not in summary and "&lt;script&gt;alert(1)&lt;/script&gt;" in summary
    assert "&lt;/pre&gt;" in summary and summary.count("<pre>") == summary.count("</pre>") == 1
    assert runner.outputs()["approved"] == "true"


def test_outputs_survive_values_holding_newlines_and_delimiter_lookalikes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    path = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    monkeypatch.delenv("TF_BUILD", raising=False)
    values = {"approval-url": "https://x/\nghadelimiter_1\nEOF", "decision": "denied", "action-id": ""}
    script.write_outputs(values)
    assert read_github_output(path) == values


def test_the_key_is_the_same_as_the_python_clients(runner: Runner, double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L0"
    assert runner.run().returncode == 0
    sent = double.requests_to("/api/actions", "POST")[0].json["idempotency_key"]
    run = ClientEnvironment.from_environ(GITHUB_RUN).run()
    assert run is not None
    expected = derive_idempotency_key(
        "terraform apply -auto-approve plan.tfplan", "infrastructure_change", "production", None, run
    )
    assert sent == expected
    assert runner.run().returncode == 0 and len(double.actions) == 1  # a retried step: the same action


# --- Azure Pipelines mode ------------------------------------------------------------------------------------

VSO = re.compile(r"^##vso\[(?P<command>[a-z]+\.[a-z]+)(?: (?P<props>[^\]]*))?\](?P<data>.*)$")


def test_on_azure_pipelines_outputs_are_well_formed_escaped_vso_variables(
    tmp_path: Path, double: ActionsContractDouble
) -> None:
    double.decide_when_requested("denied", decided_by="Jane; ]Approver\nX")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TF_BUILD": "True",
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_TEAMPROJECT": "infra",
        "BUILD_BUILDID": "77",
        "SYSTEM_JOBID": "job-1",
        "AGENT_TEMPDIRECTORY": str(tmp_path),
        "GATEKEEPER_URL": double.url,
        "GATEKEEPER_API_KEY": KEY,
        "GATEKEEPER_TENANT": TENANT,
        "GATEKEEPER_COMMAND": "az sql db export --name prod",
        "GATEKEEPER_ACTION": "data_export",
        "GATEKEEPER_ENVIRONMENT": "production",
        "GATEKEEPER_ON_DENY": "skip",
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    commands = [VSO.match(line) for line in done.stdout.splitlines() if line.startswith("##vso")]
    assert commands and all(commands), done.stdout
    variables = {
        m["props"].split(";")[0].removeprefix("variable="): m["data"]
        for m in commands
        if m and m["command"] == "task.setvariable"
    }
    assert (
        variables["approved"] == "false" and variables["decision"] == "denied" and variables["action_id"] == "act-0001"
    )
    for m in commands:
        assert m is not None
        assert m["command"] != "task.setvariable" or "isOutput=true" in (m["props"] or "")
    issue = next(m for m in commands if m and m["command"] == "task.logissue")
    assert "Jane%3B %5DApprover%0AX" in issue["data"]  # the agent's escaping: no injected command
    upload = next(m for m in commands if m and m["command"] == "task.uploadsummary")
    assert "denied" in Path(upload["data"]).read_text()
    assert double.only_action().requester == f"api-key:{TENANT}"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a;b]c", "a%3Bb%5Dc"), ("100%", "100%AZP25"), ("l1\r\nl2", "l1%0D%0Al2"), ("%0A", "%AZP250A")],
)
def test_vso_escaping_follows_the_agent(raw: str, escaped: str) -> None:
    assert load_script().vso_escape(raw) == escaped


def test_a_cancelled_job_withdraws_the_pending_request(runner: Runner, double: ActionsContractDouble) -> None:
    """GitHub cancels a job with SIGINT, then SIGTERM: the step withdraws its request on the way out, so an
    approver never approves a command nobody runs."""
    import signal

    env = {**runner.env}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Waiting for approval of action act-0001")
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert double.only_action().status == "cancelled"
    assert runner.outputs()["decision"] == "cancelled" and runner.outputs()["approved"] == "false"


# --- report-outcome: the second action, the same script in report mode ---------------------------------------


def report_action_yml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "actions" / "report-outcome" / "action.yml").read_text(encoding="utf-8"))


def test_report_outcome_action_yml_is_valid_and_never_pastes_inputs_into_shell() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    action = report_action_yml()
    assert list(jsonschema.Draft7Validator(schema).iter_errors(action)) == []
    assert action["inputs"]["action-id"]["required"] and action["inputs"]["outcome"]["required"]
    (step,) = action["runs"]["steps"]
    assert "${{" not in step["run"] and all(v.startswith("${{ inputs.") for v in step["env"].values())
    assert '"$GITHUB_ACTION_PATH/../request-approval/request.py"' in step["run"]
    script = SCRIPT.read_text(encoding="utf-8")
    assert all(name.startswith("GATEKEEPER_INPUT_") or f'"{name}"' in script for name in step["env"])


def test_report_mode_records_executed_and_refuses_executed_on_a_denied_action(
    runner: Runner, double: ActionsContractDouble
) -> None:
    double.level_for = lambda body: "L0" if body["target"]["environment"] == "dev" else "L3"
    assert runner.run(GATEKEEPER_ENVIRONMENT="dev").returncode == 0
    assert runner.run(GATEKEEPER_ENVIRONMENT="production").returncode == 0  # L3, skipped quietly
    report = {"GATEKEEPER_REPORT": "executed", "GATEKEEPER_EXIT_CODE": "0", "GATEKEEPER_REPORT_DETAIL": "applied"}
    done = runner.run(**report, GATEKEEPER_ACTION_ID="act-0001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert double.actions["act-0001"].reports == [{"outcome": "executed", "exit_code": 0, "detail": "applied"}]
    refused = runner.run(**report, GATEKEEPER_ACTION_ID="act-0002")
    assert refused.returncode == 4 and "::error::Gatekeeper: the action was not approved" in refused.stdout
    assert ("act-0002", "execution-attempt-refused", "executed") in double.audit
    for bad, named in [
        ({"GATEKEEPER_ACTION_ID": "../x"}, "(action-id)"),
        ({"GATEKEEPER_ACTION_ID": "act-0001", "GATEKEEPER_EXIT_CODE": "1e9"}, "(exit-code)"),
        ({"GATEKEEPER_ACTION_ID": "act-0001", "GATEKEEPER_REPORT": "ran"}, "(outcome)"),
    ]:
        done = runner.run(**{**report, **bad})
        assert done.returncode == 2 and named in done.stdout, (bad, done.stdout)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"ticket": "a", "ticket": "b"}', "appears more than once"),
        ('{"version_tags": ' + "[" * 5000 + "]" * 5000 + "}", "not valid JSON"),
        ('{"ticket": ' + "9" * 5000 + "}", "not valid JSON"),
        ('{"ticket": 1e999}', "ticket: expected text"),
        ('{"colour": "red"}', "colour: unknown key"),
        ('{"version_tags": "v1"}', "version_tags: expected a list of text"),
        ('{"ticket": "' + "x" * 70000 + '"}', "over 64 KiB"),
        ("[1, 2]", "expected a JSON object"),
        ('{"ticket": "\\ud800"}', "ticket: holds text that is not valid Unicode"),
    ],
)
def test_a_hostile_context_file_exits_2_naming_it(
    runner: Runner, double: ActionsContractDouble, tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "context.json"
    path.write_text(text, encoding="utf-8")
    done = runner.run(GATEKEEPER_CONTEXT_FILE=str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"context-file: {path}" in done.stdout and said in done.stdout
    assert double.requests_to("/api/actions") == []
