"""The clients and the contract double against the published contract (docs/openapi/actions.yaml, kept in step
with the server's models by tests/unit/test_actions_openapi.py): every body a client sends validates against
the request schemas, and every answer the double gives against the answer schemas, so the double cannot
drift from the server the clients are tested against."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gatekeeper.client import GatekeeperClient, requires_approval
from tests.conftest import ROOT
from tests.support.actions_contract_double import ActionsContractDouble

SPEC = yaml.safe_load((ROOT / "docs" / "openapi" / "actions.yaml").read_text(encoding="utf-8"))
TENANT, KEY = "contoso", "contoso-api-key-0123456789"


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


def errors(name: str, document: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator(name).iter_errors(document)]


@pytest.fixture
def double() -> Iterator[ActionsContractDouble]:
    with ActionsContractDouble() as server:
        server.api_keys[TENANT] = KEY
        yield server


def test_what_the_clients_send_and_the_double_answers_is_the_published_contract(
    double: ActionsContractDouble, tmp_path: Path
) -> None:
    levels = iter(["L2", "L0", "L3", "L0"])
    double.level_for = lambda body: next(levels)
    client = GatekeeperClient(double.url, api_key=KEY, tenant=TENANT)
    context = {
        "repository": "contoso/infra",
        "ref": "refs/heads/main",
        "commit": "a" * 40,
        "run_url": "https://github.com/contoso/infra/actions/runs/1",
        "version_tags": ["v1.4.2"],
        "artifacts": ["sha256:" + "b" * 64],
        "ticket": "CHG0012345",
        "plan_digest": "sha256:" + "c" * 64,
        "plan_url": "https://ci.contoso.com/plans/42",
    }
    pending = client.request(
        ["terraform", "apply", "plan.tfplan"],
        "infrastructure_change",
        "production",
        resource="rg-contoso-prod",
        context=context,
        idempotency_key="run-42:apply",
        timeout="PT30M",
    )
    double.decide(pending.id, "denied", reason="not in the change window")
    assert pending.wait(timeout=5).denied
    pending.report("skipped", detail="denied")

    @requires_approval(client, action="deploy", environment="dev", command="deploy.sh web")
    def deploy() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        deploy()
    assert not requires_approval(client, action="secret_access", environment="production", command="vault read")(
        lambda: None
    )()

    plan = tmp_path / "plan.tfplan"
    plan.write_bytes(b"plan")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GATEKEEPER_URL": double.url,
        "GATEKEEPER_API_KEY": KEY,
        "GATEKEEPER_TENANT": TENANT,
        "GATEKEEPER_COMMAND": "az sql db export",
        "GATEKEEPER_ACTION": "data_export",
        "GATEKEEPER_ENVIRONMENT": "production",
        "GATEKEEPER_TIMEOUT": "2h",
        "GATEKEEPER_PLAN_FILE": str(plan),
        "GATEKEEPER_PLAN_URL": "https://ci.contoso.com/plans/43",
    }
    script = ROOT / "actions" / "request-approval" / "request.py"
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

    sent = double.requests_to("/api/actions", "POST")
    requests = [r for r in sent if r.path == "/api/actions"]
    reports = [r for r in sent if r.path.endswith("/report")]
    assert len(requests) == 4 and len(reports) == 3
    for recorded in requests:
        assert errors("ActionRequest", recorded.json) == [], recorded.json
    for recorded in reports:
        assert errors("ReportRequest", recorded.json) == [], recorded.json
    for action_id in double.actions:
        state = client.get(action_id)
        assert errors("ActionState", {k: v for k, v in state.raw.items() if k != "status_url"}) == []
    double.level_for = lambda body: "L0"
    answer = client.request("make deploy", "deploy", "dev", idempotency_key="answer-1")  # the POST's 200
    assert errors("ActionAnswer", answer.state.raw) == []
    assert (
        errors(
            "ActionAnswer",
            pending.client.request(
                ["terraform", "apply", "plan.tfplan"],
                "infrastructure_change",
                "production",
                resource="rg-contoso-prod",
                context=context,
                idempotency_key="run-42:apply",
                timeout="PT30M",
            ).state.raw,
        )
        == []
    )


def test_the_client_checks_the_published_environment_and_resource_bounds() -> None:
    target = SPEC["components"]["schemas"]["ActionTarget"]["properties"]
    from gatekeeper.client.api import ENVIRONMENT, MAX_RESOURCE_CHARS

    assert ENVIRONMENT.pattern == target["environment"]["pattern"].replace("*$", "{0,99}$")
    assert target["resource"]["maxLength"] == MAX_RESOURCE_CHARS
