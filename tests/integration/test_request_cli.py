"""`python -m gatekeeper request` against the action-approval contract (the contract double on loopback):
exit codes, output, credentials from the client's environment, plan digests and idempotency keys."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.cli import main
from gatekeeper.client.environment import CLIENT_VARIABLES, RUN_VARIABLES
from tests.conftest import ROOT
from tests.support.actions_contract_double import ActionsContractDouble, GitHubIdTokenEndpoint, unsigned_jwt

TENANT, KEY = "contoso", "contoso-api-key-0123456789"
BASE = ["request", "--action", "infrastructure_change", "--environment", "production"]
TF = ["--command", "terraform apply -auto-approve plan.tfplan"]


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionsContractDouble]:
    for name in CLIENT_VARIABLES + RUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with ActionsContractDouble() as server:
        server.api_keys[TENANT] = KEY
        monkeypatch.setenv("GATEKEEPER_URL", server.url)
        monkeypatch.setenv("GATEKEEPER_API_KEY", KEY)
        monkeypatch.setenv("GATEKEEPER_TENANT", TENANT)
        yield server


def test_approved_after_waiting_exits_0_with_a_one_line_summary(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.decide_when_requested("approved")
    assert main([*BASE, *TF, "--wait", "--timeout", "PT10M"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("gatekeeper: approved (L2) by Jane Approver: terraform apply -auto-approve plan.tfplan")
    assert double.only_action().body["timeout"] == "PT10M"


def test_denied_with_on_deny_skip_exits_4_and_reports_skipped(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.decide_when_requested("denied")
    assert main([*BASE, *TF, "--wait", "--on-deny", "skip"]) == 4
    captured = capsys.readouterr()
    assert captured.out.startswith("gatekeeper: denied (L2) by Jane Approver") and captured.err == ""
    action = double.only_action()
    assert action.reports == [{"outcome": "skipped", "detail": "not run: denied (on-deny: skip)"}]
    assert [what for _, what, _ in double.audit] == ["requested", "denied", "skipped"]


def test_denied_with_on_deny_fail_exits_4_with_an_error_and_reports_nothing(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.decide_when_requested("denied")
    assert main([*BASE, *TF, "--wait"]) == 4
    assert capsys.readouterr().err.startswith("gatekeeper: error: denied (L2)")
    assert double.only_action().reports == []


def test_pending_without_wait_exits_5_and_shows_where_to_approve(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*BASE, *TF]) == 5
    out = capsys.readouterr().out
    assert "pending (L2)" in out and "/api/approvals/gate-act-0001/page" in out


def test_nobody_deciding_in_time_exits_3_and_withdraws_the_request(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main([*BASE, *TF, "--timeout", "PT5M", "--wait", "1s"]) == 3
    assert time.monotonic() - started < 6
    assert double.only_action().status == "cancelled"
    assert "cancelled" in capsys.readouterr().err


def test_l3_is_human_only_at_once_and_exits_4(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.level_for = lambda body: "L3"
    assert main([*BASE, *TF, "--wait", "--json"]) == 4
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "human_only" and printed["approved"] is False and printed["exit_code"] == 4
    assert printed["reason"] == "policy: human only"
    assert double.requests_to("/api/actions/", "GET") == []


def test_argv_takes_the_rest_and_the_plan_digest_is_the_files_sha256(
    double: ActionsContractDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    double.level_for = lambda body: "L0"
    plan = tmp_path / "plan.tfplan"
    plan.write_bytes(b"\x00binary plan\xff" * 1000)
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"version_tags": ["v1.4.2"], "ticket": "CHG0012345"}))
    args = [*BASE, "--plan-file", str(plan), "--plan-url", "https://ci.example/plan/1", "--context-file", str(context)]
    assert main([*args, "--json", "--argv", "terraform", "apply", "-auto-approve", "plan.tfplan"]) == 0
    body = double.only_action().body
    assert body["command"] == ["terraform", "apply", "-auto-approve", "plan.tfplan"]
    assert body["context"] == {
        "version_tags": ["v1.4.2"],
        "ticket": "CHG0012345",
        "plan_digest": "sha256:" + hashlib.sha256(plan.read_bytes()).hexdigest(),
        "plan_url": "https://ci.example/plan/1",
    }
    assert json.loads(capsys.readouterr().out)["level"] == "L0"


def test_in_a_github_job_the_key_derives_from_the_run_and_the_context_links_it(
    double: ActionsContractDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "contoso/infra",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "deploy",
        "GITHUB_ACTION": "gate",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_SHA": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    }.items():
        monkeypatch.setenv(name, value)
    assert main([*BASE, *TF]) == 5
    assert main([*BASE, *TF]) == 5  # the step retried: the same action, no second request to people
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    assert main([*BASE, *TF]) == 5  # a re-run asks anew
    keys = [r.json["idempotency_key"] for r in double.requests_to("/api/actions", "POST")]
    assert keys[0] == keys[1] != keys[2] and keys[0].startswith("gk1:")
    assert len(double.actions) == 2
    assert double.actions["act-0001"].body["context"] == {
        "repository": "contoso/infra",
        "ref": "refs/heads/main",
        "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "run_url": "https://github.com/contoso/infra/actions/runs/4242/attempts/1",
    }


def test_a_github_oidc_token_is_fetched_for_the_audience(
    double: ActionsContractDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEKEEPER_API_KEY")
    token = unsigned_jwt({"exp": int(time.time()) + 300, "repository": "contoso/infra"})
    double.tokens[token] = (TENANT, "github:login:octocat")
    with GitHubIdTokenEndpoint("runner-request-token", lambda audience: token) as endpoint:
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", endpoint.request_url)
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
        monkeypatch.setenv("GATEKEEPER_AUDIENCE", "api://gatekeeper-contoso")
        double.level_for = lambda body: "L1"
        assert main([*BASE, *TF]) == 0
        asked = endpoint.requests_to("/idtoken")
        assert len(asked) == 1 and asked[0].query["audience"] == ["api://gatekeeper-contoso"]
    assert double.only_action().requester == "github:login:octocat"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--action", "nuke", "--environment", "production", *TF], "--action"),
        (["--action", "deploy", "--environment", "", *TF], "--environment"),
        (["--action", "deploy", "--environment", "production", *TF, "--timeout", "forever"], "--timeout"),
        (["--action", "deploy", "--environment", "production", *TF, "--timeout", "30s"], "--timeout"),
        (["--action", "deploy", "--environment", "production", *TF, "--wait", "P9D"], "--wait"),
        (["--action", "deploy", "--environment", "production", *TF, "--idempotency-key", "a b"], "--idempotency-key"),
        (["--action", "deploy", "--environment", "production", *TF, "--plan-url", "file:///etc"], "--plan-url"),
        (["--action", "deploy", "--environment", "production", *TF, "--base-url", "http://evil.example"], "--base-url"),
        (["--action", "deploy", "--environment", "production", "--argv"], "--argv"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    double: ActionsContractDouble, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    assert main(["request", *args]) == 2
    assert named in capsys.readouterr().err
    assert double.requests_to("/api/actions") == []


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"ticket": "a", "ticket": "b"}', "$.ticket: key appears more than once"),
        ('{"version_tags": [' + "[" * 100 + "]" * 100 + "]}", "nested deeper than 64 levels"),
        ('{"colour": "red"}', "colour"),
        ('{"version_tags": "v1"}', "version_tags"),
        ('["not", "an", "object"]', "$"),
        ('{"ticket": 1' + "0" * 30 + "}", "$.ticket: integer with 31 digits"),
    ],
)
def test_a_hostile_context_file_exits_2_naming_the_file_and_field(
    double: ActionsContractDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    path = tmp_path / "context.json"
    path.write_text(text)
    assert main([*BASE, *TF, "--context-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and named in err
    assert double.requests_to("/api/actions") == []


def test_missing_files_and_url_exit_2(
    double: ActionsContractDouble, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*BASE, *TF, "--plan-file", str(tmp_path / "nope")]) == 2
    assert "--plan-file" in capsys.readouterr().err
    monkeypatch.delenv("GATEKEEPER_URL")
    assert main([*BASE, *TF]) == 2
    assert "GATEKEEPER_URL" in capsys.readouterr().err
    monkeypatch.setenv("GATEKEEPER_URL", double.url)
    monkeypatch.delenv("GATEKEEPER_API_KEY")
    assert main([*BASE, *TF]) == 2
    assert "credentials" in capsys.readouterr().err


def test_a_wrong_key_exits_2_naming_the_credentials(
    double: ActionsContractDouble, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEKEEPER_API_KEY", "wrong")
    assert main([*BASE, *TF]) == 2
    err = capsys.readouterr().err
    assert "credentials" in err and "wrong" not in err


def test_unavailable_exits_3_within_the_retry_budget(
    double: ActionsContractDouble, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEKEEPER_RETRY_SECONDS", "2")
    double.fail_next(1000, 503, path_contains="/api/actions")
    started = time.monotonic()
    assert main([*BASE, *TF, "--wait"]) == 3
    assert time.monotonic() - started < 6
    assert "unavailable" in capsys.readouterr().err


def test_the_real_process_exits_with_the_contract_codes(double: ActionsContractDouble) -> None:
    """`python -m gatekeeper request` as a shell sees it: 0 approved, 4 denied."""
    double.level_for = lambda body: "L0" if body["target"]["environment"] == "dev" else "L3"

    def run(environment: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gatekeeper", "request", "--action", "deploy", "--environment", environment]
        return subprocess.run([*argv, *TF], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    ok, denied = run("dev"), run("production")
    assert (ok.returncode, denied.returncode) == (0, 4), (ok.stderr, denied.stderr)
    assert ok.stdout.startswith("gatekeeper: approved (L0)")
    assert denied.stderr.startswith("gatekeeper: error: human_only")


def test_the_request_command_loads_no_azure_sdk(double: ActionsContractDouble) -> None:
    """It runs in every guarded CI step: only its own command is registered and no app services are built,
    so the Azure SDK, Graph and the other commands' dependencies are never imported (2.0 s -> 0.5 s)."""
    double.level_for = lambda body: "L0"
    probe = (
        "import json, sys\n"
        "from gatekeeper.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *BASE, *TF], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stderr
    assert not set(loaded) & {"azure", "msgraph", "pydantic", "cryptography", "jwt"}, loaded
