"""PipelineCallbacks: one entry point that dispatches on the event's callback handle (as it comes back out of
an orchestration history, i.e. a plain dict), against all three local stand-ins at once; plus the factory
and the alert for a callback that finally failed."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.azure_devops import LocalAzureDevOpsServer
from devstack.github import LocalGitHubServer
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.events.model import AzureDevOpsCallback, EventKind, EventSource, GitHubCallback, PipelineEvent
from gatekeeper.integrations.callbacks import PipelineCallbacks, failure_alert
from gatekeeper.integrations.github_app import rsa_jwk
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.services import build_pipeline_callbacks
from gatekeeper.settings import Settings

APP_ID = "5150"
ADO_TOKEN = "ado-job-access-token-abcdefghijklmnop"
WEBHOOK_SECRET = b"contoso-webhook-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_dir(tmp_path, app_key):
    """The local stand-in for the Key Vault key: `<LOCAL_KEY_DIR>/github-app.jwk.json` (a JWK Set)."""
    jwk = rsa_jwk(app_key)
    import base64

    def b64(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    document = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "github-app",
                **{name: b64(getattr(jwk, name)) for name in ("n", "e", "d", "p", "q", "dp", "dq", "qi")},
            }
        ]
    }
    (tmp_path / "github-app.jwk.json").write_text(json.dumps(document))
    return tmp_path


@pytest.fixture
def servers(app_key, shared_fixture):
    github = LocalGitHubServer(
        APP_ID,
        app_key.public_key(),
        installation_id=3,
        review_schema=shared_fixture("github/review-custom-gates-for-run.request-schema.json"),
    )
    ado = LocalAzureDevOpsServer(ADO_TOKEN)
    hook = LocalWebhookReceiver(WEBHOOK_SECRET)
    with github, ado, hook:
        yield github, ado, hook


@pytest.fixture
def callbacks(servers, key_dir) -> PipelineCallbacks:
    github, _, _ = servers
    env = {
        "GATEKEEPER_GITHUB_APP_ID": APP_ID,
        "GATEKEEPER_GITHUB_API_URL": github.api_url,
        "GATEKEEPER_KEY_MODE": "local",
        "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
    }
    policy = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda s: None)
    return build_pipeline_callbacks(
        Settings.from_environ(env),
        policy=policy,
        allow_loopback_http=True,
        webhook_secret=lambda tenant: WEBHOOK_SECRET if tenant == "contoso" else b"",
    )


def handles(servers) -> dict[str, dict]:
    _, ado, hook = servers
    return {
        "github": GitHubCallback(
            owner="contoso", repo="web", run_id=77, environment_name="production", installation_id=3
        ).model_dump(mode="json"),
        "azure-devops": {
            **AzureDevOpsCallback(
                plan_url=ado.plan_url,
                project_id="p1",
                hub_name="build",
                plan_id="plan-1",
                job_id="job-1",
                timeline_id="tl-1",
                task_instance_id="task-1",
                auth_token=ADO_TOKEN,
            ).model_dump(mode="json"),
            "auth_token": ADO_TOKEN,
        },  # the activity re-hydrates the token from its sealed store
        "webhook": {"type": "webhook", "url": f"{hook.url}/gates"},
    }


def test_complete_reaches_each_ci_in_its_own_protocol(callbacks, servers):
    github, ado, hook = servers
    for target, handle in handles(servers).items():
        result = callbacks.complete("contoso", handle, True, "Approved by alice.", {"instance_id": "gate-9"})
        assert result.ok and result.target == target and result.action == "complete", result.detail
    assert github.decisions()[0]["body"] == {
        "environment_name": "production",
        "state": "approved",
        "comment": "Approved by alice.",
    }
    assert ado.completions[0]["body"]["result"] == "succeeded"
    [delivery] = hook.deliveries
    assert delivery["event"] == "gate.completed"
    assert delivery["body"]["state"] == "approved" and delivery["body"]["context"] == {"instance_id": "gate-9"}


def test_progress_reaches_each_ci(callbacks, servers):
    github, ado, hook = servers
    for handle in handles(servers).values():
        assert callbacks.progress("contoso", handle, "Waiting for ops-leads (1 of 2).").ok
    assert github.comments_for("contoso", "web", 77, "production") == ["Waiting for ops-leads (1 of 2)."]
    assert ado.feed[0]["lines"] == ["Waiting for ops-leads (1 of 2)."]
    assert hook.deliveries[0]["event"] == "gate.progress"


def test_a_pipeline_event_handle_round_trips_through_json(callbacks, servers):
    event = PipelineEvent(
        tenant_id="contoso",
        source=EventSource.GENERIC,
        kind=EventKind.GATE_REQUEST,
        callback={"type": "webhook", "url": f"{servers[2].url}/gates"},
    )
    history_copy = json.loads(event.model_dump_json())["callback"]
    assert callbacks.complete("contoso", history_copy, False, "Rejected.", {}).ok
    assert servers[2].deliveries[0]["body"]["state"] == "rejected"


def test_a_failing_callback_is_returned_for_audit_and_alert(callbacks, servers):
    _, ado, _ = servers
    ado.fail_next(10, 502)
    result = callbacks.complete("contoso", handles(servers)["azure-devops"], True, "ok", {})
    assert not result.ok and result.attempts == 3 and ADO_TOKEN not in result.detail
    alert = failure_alert(
        result,
        recipients=("group:7d3e5f60-3333-4c4c-8d8d-000000000003",),
        instance_id="gate-9",
        link="https://gatekeeper.contoso.example/gates/gate-9",
    )
    assert alert.kind == "alert" and "Azure DevOps" in alert.title and "still be waiting" in alert.title
    assert result.detail in alert.text


def test_a_bad_handle_names_the_field(callbacks):
    result = callbacks.complete("contoso", {"type": "github", "owner": "contoso"}, True, "ok", {})
    assert not result.ok and result.detail.startswith("callback.github.")
    unknown = callbacks.complete("contoso", {"type": "jenkins"}, True, "ok", {})
    assert not unknown.ok and unknown.detail.startswith("callback")


def test_a_tenant_without_a_webhook_secret_is_reported(callbacks, servers):
    result = callbacks.complete("fabrikam", handles(servers)["webhook"], True, "ok", {})
    assert not result.ok and "signing secret" in result.detail and servers[2].requests == []


def test_missing_github_app_configuration_is_a_result_not_a_crash(servers):
    callbacks = build_pipeline_callbacks(Settings.from_environ({}), allow_loopback_http=True)
    result = callbacks.complete("contoso", handles(servers)["github"], True, "ok", {})
    assert not result.ok and "GATEKEEPER_GITHUB_APP_ID" in result.detail


def test_the_attempt_setting_is_validated():
    assert Settings.from_environ({"GATEKEEPER_CALLBACK_MAX_ATTEMPTS": "3"}).callback_max_attempts == 3
    with pytest.raises(ValueError, match="GATEKEEPER_CALLBACK_MAX_ATTEMPTS"):
        Settings.from_environ({"GATEKEEPER_CALLBACK_MAX_ATTEMPTS": "0"})


def test_callbacks_act_only_within_the_gates_tenant(servers, key_dir):
    """The production wiring passes the registry's view: installations and callback URL prefixes per tenant."""
    github, _, hook = servers
    env = {
        "GATEKEEPER_GITHUB_APP_ID": APP_ID,
        "GATEKEEPER_GITHUB_API_URL": github.api_url,
        "GATEKEEPER_KEY_MODE": "local",
        "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
    }
    callbacks = build_pipeline_callbacks(
        Settings.from_environ(env),
        policy=RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda s: None),
        allow_loopback_http=True,
        webhook_secret=lambda tenant: WEBHOOK_SECRET,
        github_installations=lambda tenant: {"contoso": frozenset({3})}.get(tenant, frozenset()),
        webhook_allowed=lambda tenant, url: tenant == "contoso" and url.startswith(hook.url + "/gates"),
    )
    own = handles(servers)
    assert callbacks.complete("contoso", own["github"], True, "ok", {}).ok
    assert callbacks.complete("contoso", own["webhook"], True, "ok", {}).ok
    sent = (len(github.decisions()), len(hook.deliveries))
    foreign_install = callbacks.complete("fabrikam", own["github"], True, "ok", {})
    foreign_hook = callbacks.complete("fabrikam", own["webhook"], True, "ok", {})
    outside = callbacks.complete("contoso", {"type": "webhook", "url": f"{hook.url}/admin"}, True, "ok", {})
    assert not foreign_install.ok and "not registered for tenant fabrikam" in foreign_install.detail
    assert not foreign_hook.ok and not outside.ok and "callback URL prefix" in outside.detail
    assert (len(github.decisions()), len(hook.deliveries)) == sent  # nothing went out for the refused ones


def test_azure_devops_progress_without_a_timeline_is_skipped_not_failed(callbacks, servers):
    handle = {**handles(servers)["azure-devops"], "timeline_id": None}
    result = callbacks.progress("contoso", handle, "Waiting.")
    assert result.ok and result.skipped and servers[1].feed == []
    assert callbacks.complete("contoso", handle, True, "ok", {}).ok  # TaskCompleted needs no timeline
