"""The Azure Pipelines step template (pipelines/templates/request-approval.yml): parsed and checked (parameters,
the two credential branches, no parameter pasted into script text, well-formed logging commands), then its
bash step run as the agent would run it (parameters and macros expanded into the step's environment) against
the action-approval contract (the contract double on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.client import ACTION_KINDS
from tests.conftest import ROOT
from tests.support.actions_contract_double import ActionsContractDouble

TEMPLATE = ROOT / "pipelines" / "templates" / "request-approval.yml"
SCRIPT = ROOT / "actions" / "request-approval" / "request.py"
VSO = re.compile(r"^##vso\[(?P<command>[a-z]+\.[a-z]+)(?: (?P<props>[^\]]*))?\](?P<data>.*)$")
PARAMETER = re.compile(r"\$\{\{\s*parameters\.([A-Za-z]+)\s*\}\}")


def template() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))


def branches() -> dict[str, dict[str, Any]]:
    """The credential branches: condition text -> the one step under it."""
    found = {}
    for item in template()["steps"]:
        ((condition, steps),) = item.items()
        if "azureSubscription" in condition:
            (step,) = steps
            found[condition] = step
    return found


def test_parameters_are_the_contract_with_closed_value_lists() -> None:
    params = {p["name"]: p for p in template()["parameters"]}
    assert {"command", "action", "environment", "timeout", "onDeny", "gatekeeperUrl"} <= set(params)
    assert params["action"]["values"] == list(ACTION_KINDS)
    assert params["onDeny"]["values"] == ["skip", "fail"] and params["onDeny"]["default"] == "skip"
    assert all(p["type"] in ("string", "boolean") for p in params.values())
    required = {name for name, p in params.items() if "default" not in p}
    assert required == {"command", "action", "environment", "gatekeeperUrl"}
    used = set(PARAMETER.findall(TEMPLATE.read_text(encoding="utf-8")))
    assert used <= set(params)  # no reference to a parameter that does not exist


def test_exactly_one_credential_branch_applies() -> None:
    found = branches()
    assert set(found) == {
        "${{ if ne(parameters.azureSubscription, '') }}",
        "${{ if eq(parameters.azureSubscription, '') }}",
    }
    entra = found["${{ if ne(parameters.azureSubscription, '') }}"]
    key = found["${{ if eq(parameters.azureSubscription, '') }}"]
    assert (
        entra["task"] == "AzureCLI@2" and entra["inputs"]["azureSubscription"] == "${{ parameters.azureSubscription }}"
    )
    assert 'get-access-token --resource "$GATEKEEPER_AUDIENCE"' in entra["inputs"]["inlineScript"]
    assert "GATEKEEPER_API_KEY" not in entra["env"]
    assert key["env"]["GATEKEEPER_API_KEY"] == "$(${{ parameters.apiKeyVariable }})"  # a secret, mapped explicitly
    for step in (entra, key):
        assert step["name"] == "${{ parameters.name }}"  # output variables are read as <name>.approved


def scripts() -> list[str]:
    found = branches()
    return [step.get("bash") or step["inputs"]["inlineScript"] for step in found.values()]


def test_no_parameter_is_pasted_into_script_text() -> None:
    for text in scripts():
        assert "${{" not in text, text  # values arrive as environment variables: no script injection
        assert '"$GATEKEEPER_SCRIPT"' in text


def test_every_variable_the_steps_set_is_one_the_script_reads() -> None:
    script = SCRIPT.read_text(encoding="utf-8")
    for step in branches().values():
        for name in step["env"]:
            assert name == "GATEKEEPER_SCRIPT" or f'"{name}"' in script, name
        assert {"GATEKEEPER_COMMAND", "GATEKEEPER_ACTION", "GATEKEEPER_ENVIRONMENT", "GATEKEEPER_ON_DENY"} <= set(
            step["env"]
        )


def test_logging_commands_in_the_template_are_well_formed_and_the_token_is_masked_first() -> None:
    inline = branches()["${{ if ne(parameters.azureSubscription, '') }}"]["inputs"]["inlineScript"]
    lines = [line.strip() for line in inline.splitlines()]
    vso = [line for line in lines if "##vso[" in line]
    assert vso == ['echo "##vso[task.setsecret]$GATEKEEPER_TOKEN"']
    assert VSO.match(vso[0].removeprefix('echo "').removesuffix('"'))
    assert lines.index(vso[0]) < next(i for i, line in enumerate(lines) if line.startswith("export GATEKEEPER_TOKEN"))
    assert lines[0] == "set -euo pipefail"  # a failed token request stops the step, it never asks without one


def render(value: str, parameters: dict[str, Any], variables: dict[str, str]) -> str:
    """Template expressions, then the agent's `$(name)` macros (unknown names are left as they are)."""
    value = PARAMETER.sub(lambda m: str(parameters[m.group(1)]), value)
    return re.sub(r"\$\(([A-Za-z0-9_.]+)\)", lambda m: variables.get(m.group(1), m.group(0)), value)


@pytest.fixture
def double() -> Iterator[ActionsContractDouble]:
    with ActionsContractDouble() as server:
        server.api_keys["contoso"] = "contoso-api-key-0123456789"
        yield server


def run_key_step(double: ActionsContractDouble, tmp_path: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    workspace = tmp_path / "work"
    workspace.mkdir(parents=True)
    (workspace / "gatekeeper").symlink_to(ROOT)  # what `checkout: gatekeeper, path: gatekeeper` leaves
    defaults = {p["name"]: p.get("default", "") for p in template()["parameters"]}
    parameters = {
        **defaults,
        "command": 'az sql db export --name "prod"; echo $(whoami)',
        "action": "data_export",
        "environment": "production",
        "gatekeeperUrl": double.url,
        "apiKeyVariable": "GatekeeperApiKey",
        "tenant": "contoso",
        **overrides,
    }
    variables = {"Pipeline.Workspace": str(workspace), "GatekeeperApiKey": "contoso-api-key-0123456789"}
    step = branches()["${{ if eq(parameters.azureSubscription, '') }}"]
    env = {name: render(str(value), parameters, variables) for name, value in step["env"].items()}
    agent = {"TF_BUILD": "True", "BUILD_BUILDID": "77", "SYSTEM_JOBID": "job-1", "AGENT_TEMPDIRECTORY": str(tmp_path)}
    return subprocess.run(
        ["bash", "-c", step["bash"]],
        env={"PATH": os.environ.get("PATH", ""), **agent, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def output_variables(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        if line.startswith("##vso["):
            match = VSO.match(line)
            assert match, line
            if match["command"] == "task.setvariable":
                props = dict(p.split("=", 1) for p in match["props"].split(";"))
                assert props["isOutput"] == "true"
                found[props["variable"]] = match["data"]
    return found


def test_the_key_step_denied_with_skip_succeeds_with_approved_false(
    double: ActionsContractDouble, tmp_path: Path
) -> None:
    double.decide_when_requested("denied")
    done = run_key_step(double, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = output_variables(done.stdout)
    assert outputs["approved"] == "false" and outputs["decision"] == "denied" and outputs["action_id"] == "act-0001"
    action = double.only_action()
    assert action.body["command"] == 'az sql db export --name "prod"; echo $(whoami)'  # data, verbatim
    assert action.reports == [{"outcome": "skipped", "detail": "not run: denied (on-deny: skip)"}]


def test_the_key_step_approved_and_denied_with_fail(double: ActionsContractDouble, tmp_path: Path) -> None:
    double.level_for = lambda body: "L0" if body["target"]["environment"] == "dev" else "L3"
    ok = run_key_step(double, tmp_path / "a", environment="dev")
    assert ok.returncode == 0 and output_variables(ok.stdout)["approved"] == "true"
    refused = run_key_step(double, tmp_path / "b", onDeny="fail")
    assert refused.returncode == 4 and output_variables(refused.stdout)["decision"] == "human_only"


def test_a_missing_secret_variable_is_named(double: ActionsContractDouble, tmp_path: Path) -> None:
    done = run_key_step(double, tmp_path, apiKeyVariable="NoSuchVariable")
    assert done.returncode == 2
    assert "unexpanded $(NoSuchVariable)" in done.stdout and double.requests == []


def test_the_report_template_passes_parameters_as_environment_only() -> None:
    report = yaml.safe_load((ROOT / "pipelines" / "templates" / "report-outcome.yml").read_text(encoding="utf-8"))
    params = {p["name"]: p for p in report["parameters"]}
    assert params["outcome"]["values"] == ["executed", "skipped"]
    script = SCRIPT.read_text(encoding="utf-8")
    steps = [step for item in report["steps"] for steps in item.values() for step in steps]
    assert len(steps) == 2
    for step in steps:
        text = step.get("bash") or step["inputs"]["inlineScript"]
        assert "${{" not in text and '"$GATEKEEPER_SCRIPT"' in text
        assert all(name == "GATEKEEPER_SCRIPT" or f'"{name}"' in script for name in step["env"])
        assert step["env"]["GATEKEEPER_ACTION_ID"] == "${{ parameters.actionId }}"
    used = set(PARAMETER.findall(yaml.safe_dump(report)))
    assert used <= set(params)
