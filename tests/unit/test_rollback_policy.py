"""The watch/rollback settings of a policy: strict, errors naming the field; the rollback's level from the
policy's level arithmetic (raised by a rule for `rollback`, never lowered)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent
from gatekeeper.policy import GateLevel, PolicyError, evaluate, load_policy
from gatekeeper.rollback.decide import rollback_level

AT = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
ANNA = "00000000-0000-0000-0000-00000000000a"


def policy(watch: list[dict], **extra) -> dict:
    return {"version": 1, "watch": watch, **extra}


PRODUCTION = {
    "environments": ["prod*"],
    "window": "PT15M",
    "initial_delay": "PT1M",
    "interval": "PT1M",
    "failure_limit": 1,
    "consecutive_error_limit": 2,
    "probes": [
        {
            "name": "health",
            "url": "https://shop.contoso.com/health",
            "expected_status": [200, 204],
            "json": {"path": "status", "equals": "ok"},
            "max_latency": "PT2S",
        }
    ],
    "alert_resources": ["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/RG/providers/x/y/Shop"],
    "rollback": {
        "level": "L1",
        "target": {"type": "github", "workflow": "rollback.yml", "inputs": {"sha": "{commit}"}},
    },
}


def test_a_complete_watch_loads_and_the_first_covering_entry_applies():
    doc = load_policy(policy([PRODUCTION, {"environments": ["**"], "window": "PT5M"}]))
    prod = doc.watch_for("Production")
    assert prod is not None and prod.window == timedelta(minutes=15) and prod.rounds == 15
    assert prod.probes[0].expected_status == (200, 204) and prod.probes[0].max_latency == timedelta(seconds=2)
    assert prod.alert_resources[0].endswith("/x/y/shop")  # resource ids compare case-insensitively
    assert doc.watch_for("staging").window == timedelta(minutes=5)
    assert load_policy(policy([PRODUCTION])).watch_for("staging") is None
    assert doc.watch_for(None) is None


def test_a_policy_without_watch_keeps_its_fingerprint():
    plain = {"version": 1, "rules": [{"name": "r", "level": "L1"}]}
    assert load_policy(plain).fingerprint() == load_policy({**plain, "watch": []}).fingerprint()
    assert load_policy(plain).fingerprint() != load_policy({**plain, "watch": [PRODUCTION]}).fingerprint()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"window": "P1M"}, "watch[0].window", "does not match"),
        ({"window": "P8D"}, "watch[0].window", "between"),
        ({"interval": "PT5S"}, "watch[0].interval", "between"),
        ({"interval": "PT30M"}, "watch[0].interval", "not be longer than the window"),
        ({"window": "P7D", "interval": "PT10S"}, "watch[0].interval", "at most 1000"),
        ({"failure_limit": -1}, "watch[0].failure_limit", "minimum"),
        ({"failure_limit": 10**30}, "watch[0].failure_limit", "maximum"),
        ({"consecutive_error_limit": "4"}, "watch[0].consecutive_error_limit", "integer"),
        ({"probes": [{"name": "h", "url": "http://shop.contoso.com/health"}]}, "watch[0].probes[0].url", "https"),
        ({"probes": [{"name": "h", "url": "https://u:p@shop.contoso.com/"}]}, "watch[0].probes[0].url", "credentials"),
        ({"probes": [{"name": "h", "url": "https://x/", "expected_status": 99}]}, "watch[0].probes[0]", ""),
        (
            {"probes": [{"name": "h", "url": "https://x/", "json": {"path": "a..b", "equals": 1}}]},
            "watch[0].probes[0].json.path",
            "pattern",
        ),
        ({"probes": [{"name": "h", "url": "https://x/", "colour": "red"}]}, "watch[0].probes[0]", "unknown field"),
        ({"alert_resources": ["subscriptions/x"]}, "watch[0].alert_resources[0]", "does not match"),
        ({"rollback": {"level": "L5"}}, "watch[0].rollback.level", "is not one of"),
        ({"rollback": {"target": {"type": "jenkins"}}}, "watch[0].rollback.target.type", "is not one of"),
        ({"rollback": {"target": {"type": "github", "workflow": "../x"}}}, "watch[0].rollback.target", "pattern"),
        ({"rollback": {"follow_timeout": "PT10S"}}, "watch[0].rollback.follow_timeout", "between"),
        ({"environments": []}, "watch[0].environments", "non-empty"),
        ({"enviroments": ["x"]}, "watch[0]", "is required"),
    ],
)
def test_bad_watch_settings_are_refused_naming_the_field(change, field, words):
    entry = {**PRODUCTION, **change}
    if "enviroments" in change:
        entry.pop("environments")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy([entry]))
    assert caught.value.field.startswith(field), caught.value.issues
    assert words in str(caught.value), str(caught.value)


def _probe(url: str) -> dict:
    return {**PRODUCTION, "probes": [{"name": "h", "url": url}], "rollback": {"level": "L1"}}


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/health", "http://127.0.0.2/health", "http://[::ffff:127.0.0.1]/health"]
)
def test_a_probe_may_use_plain_http_to_a_local_server(url):
    spec = load_policy(policy([_probe(url)])).watch[0]
    assert spec.probes[0].url == url


@pytest.mark.parametrize(
    ("target", "field"),
    [
        (_probe("http://127.1/health"), "watch[0].probes[0].url"),
        (_probe("http://169.254.169.254/health"), "watch[0].probes[0].url"),
        ({**PRODUCTION, "rollback": {"target": {"type": "webhook", "url": "http://0x7f.1/rb"}}}, "watch[0].rollback"),
    ],
)
def test_watch_urls_follow_the_callback_rule_for_plain_http(target, field):
    """One rule (gatekeeper.events.common.https_or_loopback_url) for probes, rollback targets and callbacks."""
    with pytest.raises(PolicyError) as caught:
        load_policy(policy([target]))
    assert caught.value.field.startswith(field), caught.value.issues
    assert "must use https (http is allowed only for localhost and 127.0.0.1)" in str(caught.value)


def test_hostile_watch_documents_are_refused():
    with pytest.raises(PolicyError):
        load_policy(policy([PRODUCTION] * 51))  # more entries than the schema allows
    with pytest.raises(PolicyError):
        load_policy(policy([{**PRODUCTION, "probes": [PRODUCTION["probes"][0]] * 11}]))
    deep: dict = {"x": 1}
    for _ in range(100):
        deep = {"x": deep}
    with pytest.raises(PolicyError):
        load_policy(policy([{**PRODUCTION, "rollback": deep}]))


def rollback_event(environment: str) -> PipelineEvent:
    return PipelineEvent(
        tenant_id="tenant1",
        source=EventSource.GITHUB,
        kind=EventKind.GATE_REQUEST,
        action=ActionKind.ROLLBACK,
        environment=environment,
        repository="contoso/shop",
    )


def test_the_rollback_level_is_the_configured_one_unless_a_rule_raises_it():
    stage = {"name": "cab", "approvers": [ANNA], "timeout": "PT1H"}
    doc = load_policy(
        policy(
            [PRODUCTION],
            rules=[
                {
                    "name": "eu rollbacks",
                    "match": {"actions": ["rollback"], "environments": ["prod-eu"]},
                    "level": "L2",
                    "approval": {"stages": [stage]},
                },
                {
                    "name": "us rollbacks",
                    "match": {"actions": ["rollback"], "environments": ["prod-us"]},
                    "level": "L0",
                },
            ],
        )
    )
    plain = evaluate(doc, rollback_event("production"), None, AT)
    assert rollback_level(GateLevel.L1, plain) == (GateLevel.L1, "rollback level L1 from the watch settings")
    raised, why = rollback_level(GateLevel.L1, evaluate(doc, rollback_event("prod-eu"), None, AT))
    assert raised is GateLevel.L2 and "raised from L1 to L2 by the policy: rule 'eu rollbacks' matched" in why
    kept, _ = rollback_level(GateLevel.L1, evaluate(doc, rollback_event("prod-us"), None, AT))
    assert kept is GateLevel.L1  # a rule never lowers the configured level
    assert rollback_level(GateLevel.L3, None)[0] is GateLevel.L3


def test_a_freeze_that_blocks_rollbacks_makes_them_l3():
    doc = load_policy(
        policy(
            [PRODUCTION],
            rules=[{"name": "any rollback", "match": {"actions": ["rollback"]}, "level": "L1"}],
            change_windows={
                "freezes": [
                    {"name": "xmas", "start": "2030-06-01T00:00:00Z", "end": "2030-06-30T00:00:00Z", "level": "block"}
                ]
            },
        )
    )
    level, why = rollback_level(GateLevel.L1, evaluate(doc, rollback_event("production"), None, AT))
    assert level is GateLevel.L3 and "blocks" in why


WORKSPACE = "00000000-0000-0000-0000-000000000001"
KQL = {"type": "kql", "name": "errors", "workspace_id": WORKSPACE, "query": "requests | count", "threshold": 1}


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"probes": [{**KQL, "timeout": "PT5M"}]}, "watch[0].probes[0].timeout", "must be between 0:00:01 and 0:03:00"),
        (
            {"probes": [{k: v for k, v in KQL.items() if k != "threshold"}]},
            "watch[0].probes[0].threshold",
            "a KQL probe needs a threshold, a max_increase_percent, or both",
        ),
        (
            {
                "rollback": {
                    "target": {"type": "github", "workflow": "r.yml", "inputs": {f"i{n}": "v" for n in range(11)}}
                }
            },
            "watch[0].rollback.target.inputs",
            "at most 10 inputs",
        ),
    ],
)
def test_what_only_the_watch_models_check_is_refused_naming_the_field(entry, field, words):
    with pytest.raises(PolicyError) as caught:
        load_policy(policy([{"environments": ["prod"], **entry}]))
    assert caught.value.field == field and words in caught.value.detail


def test_a_kql_probe_with_a_timeout_inside_the_bounds_loads():
    doc = load_policy(policy([{"environments": ["prod"], "probes": [{**KQL, "timeout": "PT45S"}]}]))
    assert doc.watch[0].probes[0].timeout == timedelta(seconds=45)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"window": 5}, "must be an ISO 8601 duration such as PT5M"),
        ({"probes": [{"type": "ftp", "name": "x"}]}, "@[0].type: must be one of http, kql, rmm"),
        ({"probes": [{**KQL, "operator": "=="}]}, "@[0].operator: Input should be"),
        ({"probes": ["x"]}, "valid dictionary"),
        ({"probes": "x"}, "valid tuple"),
    ],
)
def test_a_watch_entry_the_schema_never_saw_is_refused_by_the_model(entry, words):
    """Stored watch entries are read back through the model alone (no schema): it refuses the same things."""
    from pydantic import ValidationError

    from gatekeeper.policy.watch import WatchSpec

    with pytest.raises(ValidationError) as caught:
        WatchSpec.model_validate({"environments": ["prod"], **entry})
    assert words in str(caught.value)
