"""Telemetry lines: their shape, what `emit` refuses, the HITL override rule, the HTTP edge's IngestRejected,
and whole gates through the local runner (Azurite, local keys, the real policy engine, tokens from a local
Entra issuer) emitting GateDecision, ApprovalDecided with its latency, HitlOverride and GateOutcome."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from pydantic import SecretStr

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.runner import ManualClock
from functions.http import handle
from gatekeeper import telemetry
from gatekeeper.audit.log import AuditLog
from gatekeeper.errors import Unauthenticated
from gatekeeper.events.model import ActionKind, EventKind, EventSource, EvidenceRef, PipelineEvent
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

Event = telemetry.Event


def events(caplog: pytest.LogCaptureFixture, name: str | None = None) -> list[dict[str, Any]]:
    found = [telemetry.parse(r.getMessage()) for r in caplog.records if r.name == telemetry.LOGGER_NAME]
    return [e for e in found if e is not None and (name is None or e["name"] == name)]


def request_fields(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "contoso",
        "instance_id": "gate-1",
        "stage": 0,
        "approvers": 2,
        "quorum": 1,
        "notified": True,
        "deadline_seconds": 3600,
        **overrides,
    }


# ----- the line ---------------------------------------------------------------------------------------


def test_emit_logs_one_info_line_of_compact_json_on_the_telemetry_logger(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    returned = telemetry.emit("ApprovalRequested", **request_fields())
    (record,) = [r for r in caplog.records if r.name == "gatekeeper.telemetry"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("GATEKEEPER_EVENT {") and len(telemetry.PREFIX) == 17  # the workbook's substring
    body = message[17:]
    assert ": " not in body and ", " not in body  # compact
    assert json.loads(body) == returned == {"name": "ApprovalRequested", **request_fields()}
    assert next(iter(json.loads(body))) == "name"
    assert telemetry.parse(message) == returned


def test_enum_values_and_none_are_logged_as_plain_json(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    telemetry.emit(Event.INGEST_REJECTED, route="/api/events/github", status=401, slug=EventSource.GITHUB)
    telemetry.emit(Event.CALLBACK_FAILED, tenant="contoso", instance_id="g", target=None, status_code=None, final=True)
    rejected, failed = events(caplog)
    assert rejected == {"name": "IngestRejected", "route": "/api/events/github", "status": 401, "slug": "github"}
    assert failed["target"] is None and failed["final"] is True


def test_long_strings_are_cut():
    payload = telemetry.emit(Event.INGEST_REJECTED, route="/" + "x" * 1000, status=404, slug="gate-not-found")
    assert len(payload["route"]) == telemetry.MAX_STRING


def test_unknown_event_names_are_refused():
    with pytest.raises(ValueError, match="unknown event 'GateDecisions'"):
        telemetry.emit("GateDecisions", **request_fields())
    with pytest.raises(ValueError, match="unknown event"):
        telemetry.emit("customEvent", tenant="contoso")


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], (1,), SecretStr("s3cret"), b"bytes", datetime.now(UTC)])
def test_non_scalar_values_are_refused_naming_the_field(value: Any, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    with pytest.raises(TypeError, match="field 'approvers' must be a JSON scalar"):
        telemetry.emit(Event.APPROVAL_REQUESTED, **request_fields(approvers=value))
    assert events(caplog) == []
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(value: float):
    with pytest.raises(ValueError, match="'quorum' must be a finite number"):
        telemetry.emit(Event.APPROVAL_REQUESTED, **request_fields(quorum=value))


def test_missing_and_unknown_fields_are_refused():
    fields = request_fields()
    del fields["notified"]
    with pytest.raises(ValueError, match=r"ApprovalRequested: missing field\(s\) notified"):
        telemetry.emit(Event.APPROVAL_REQUESTED, **fields)
    with pytest.raises(ValueError, match=r"unknown field\(s\) comment"):
        telemetry.emit(Event.APPROVAL_REQUESTED, **request_fields(comment="looks good"))


def test_the_schema_names_no_secret_or_free_text_field():
    for event, fields in telemetry.FIELDS.items():
        for field in fields:
            assert telemetry.FIELD_NAME.match(field), (event, field)
            assert not any(word in field for word in telemetry.FORBIDDEN_WORDS), (event, field)
    assert set(telemetry.FIELDS) == set(Event)


def test_parse_ignores_other_messages():
    assert telemetry.parse("refused /api/events/github: 401 unauthenticated") is None
    assert telemetry.parse("GATEKEEPER_EVENT not json") is None
    assert telemetry.parse('GATEKEEPER_EVENT {"name": "Other"}') is None


@pytest.mark.parametrize(
    ("decision", "quality", "score", "expected"),
    [
        ("approved", "fail", 20.0, "approved_despite_fail"),
        ("approved", "warning", 70.0, "approved_despite_warning"),
        ("approved", "fail", None, "approved_despite_fail"),  # missing evidence counted as fail by policy
        ("approved", "pass", 100.0, None),
        ("rejected", "pass", 95.0, "rejected_despite_pass"),
        ("rejected", "pass", None, None),  # nothing was assessed: nothing to override
        ("rejected", "fail", 10.0, None),
        ("rejected", "warning", 60.0, None),
        (None, "pass", 100.0, None),  # a timeout is not a human decision
        ("approved", None, None, None),  # gates evaluated before the verdict was recorded
    ],
)
def test_override_kind(decision: str | None, quality: str | None, score: float | None, expected: str | None):
    assert telemetry.override_kind(decision, quality, score) == expected


# ----- the HTTP edge ----------------------------------------------------------------------------------


def test_handle_emits_ingest_rejected_without_the_query_string(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    req = func.HttpRequest(
        "POST", "https://gk.example/api/events/generic?code=function-key-value", body=b"{}", headers={}
    )

    def refuse() -> tuple[int, dict[str, Any]]:
        raise Unauthenticated("no key", title="Unauthenticated")

    def crash() -> tuple[int, dict[str, Any]]:
        raise RuntimeError("boom")

    assert handle(req, refuse).status_code == 401
    assert handle(req, crash).status_code == 500
    assert handle(req, lambda: (202, {"ok": True})).status_code == 202
    assert [(e["route"], e["status"], e["slug"]) for e in events(caplog, "IngestRejected")] == [
        ("/api/events/generic", 401, "unauthenticated"),
        ("/api/events/generic", 500, "internal-error"),
    ]
    assert "function-key-value" not in "".join(
        r.getMessage() for r in caplog.records if r.name == telemetry.LOGGER_NAME
    )


# ----- whole gates ------------------------------------------------------------------------------------

TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
AUDIENCE = "api://gatekeeper-telemetry-tests"
ANNA = str(uuid.UUID(int=0xA))
DEV = str(uuid.UUID(int=0xD))
START = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)
POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {
            "stages": [{"name": "default", "approvers": [ANNA], "quorum": 1, "timeout": "PT1H", "on_timeout": "reject"}]
        },
    },
    "rules": [{"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"}],
    "quality": {
        "objectives": [{"sli": "slo.errors", "pass": "<1", "warning": "<2", "key_sli": True}],
        "total_score": {"pass": 90, "warning": 50},
        "on_fail": "L2",
    },
}


@dataclass
class Flow:
    gates: LocalGates
    issuer: LocalEntraIssuer
    tenant_id: str

    def submit(self, environment: str, errors: float) -> str:
        """A gate request with inline SLO evidence and no callback handle (the pipeline is not measured here)."""
        return self.gates.submit(
            PipelineEvent(
                tenant_id=self.tenant_id,
                source=EventSource.GENERIC,
                kind=EventKind.GATE_REQUEST,
                action=ActionKind.DEPLOY,
                environment=environment,
                repository="contoso/webshop",
                ref="refs/heads/main",
                commit="a1b2c3d",
                actor="dev@contoso.com",
                requester_ids=(f"entra:oid:{DEV}",),  # authenticated: no extra approver is needed
                run_id=uuid.uuid4().hex,
                evidence=(EvidenceRef(kind="slo", data={"indicators": [{"name": "errors", "value": errors}]}),),
            )
        )

    def decide(self, gate: str, decision: str) -> int:
        token = self.issuer.issue(ANNA, TID, AUDIENCE, issued_at=datetime.now(UTC).timestamp())
        return self.gates.decide(gate, {"Authorization": f"Bearer {token}"}, decision)[0]


@pytest.fixture(scope="module")
def flow(azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys")), key_size=2048))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    policy = load_policy(POLICY)
    with LocalEntraIssuer() as issuer:
        gates = local_gates(
            storage,
            cipher,
            decider=PolicyDecider(lambda _t: policy),
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path_factory.mktemp("outbox")),
            callbacks=PipelineCallbacks(webhooks=WebhookSender(), webhook_secret=lambda _t: b"unused"),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            token_validator=EntraTokenValidator(
                AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: tid == TID
            ),
            operators_for=lambda _t: ("ops@contoso.com",),
            clock=ManualClock(START),
            settings=Settings(trust_easyauth_header=False),
        )
        yield Flow(gates, issuer, tenant_id)


@pytest.fixture
def gate_flow(flow: Flow, caplog: pytest.LogCaptureFixture) -> Flow:
    flow.gates.clock.advance(timedelta(days=1))  # each test on a fresh day; the clock never goes back
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    return flow


def mine(caplog: pytest.LogCaptureFixture, gate: str) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events(caplog):
        if event.get("instance_id") == gate:
            by_name.setdefault(event["name"], []).append(event)
    return by_name


@pytest.mark.azurite
def test_approving_a_gate_with_failing_quality_is_an_override_with_its_latency(
    gate_flow: Flow, caplog: pytest.LogCaptureFixture
):
    gate = gate_flow.submit("dev", errors=5)  # rule L0, quality fail raises it to L2
    gate_flow.gates.clock.advance(timedelta(minutes=20))
    assert gate_flow.decide(gate, "approve") == 202
    assert gate_flow.gates.runner.status(gate).output["status"] == "approved"
    seen = mine(caplog, gate)
    (decision,) = seen["GateDecision"]
    assert decision == {
        "name": "GateDecision",
        "tenant": gate_flow.tenant_id,
        "instance_id": gate,
        "level": "L2",
        "rule": "dev",
        "source": "generic",
        "environment": "dev",
        "action": "deploy",
        "blocked": False,
        "quality": "fail",
        "quality_score": 0.0,
        "approval_stages": 1,
        "commit_time": None,
        "commit_age_seconds": None,
    }
    (requested,) = seen["ApprovalRequested"]
    assert (requested["stage"], requested["approvers"], requested["quorum"]) == (0, 1, 1)
    (decided,) = seen["ApprovalDecided"]
    assert decided["outcome"] == "approved" and decided["decided_by"] == "approvers"
    assert decided["latency_seconds"] == 1200.0 and decided["quality"] == "fail" and decided["votes"] == 1
    (override,) = seen["HitlOverride"]
    assert override["kind"] == "approved_despite_fail" and override["decision"] == "approved"
    assert override["level"] == "L2" and override["quality"] == "fail"
    (outcome,) = seen["GateOutcome"]
    assert (outcome["status"], outcome["decided_by"], outcome["level"]) == ("approved", "approvers", "L2")
    text = " ".join(r.getMessage() for r in caplog.records if r.name == telemetry.LOGGER_NAME)
    assert "dev@contoso.com" not in text and ANNA not in text  # no people in telemetry


@pytest.mark.azurite
def test_rejecting_a_gate_whose_quality_passed_is_an_override(gate_flow: Flow, caplog: pytest.LogCaptureFixture):
    gate = gate_flow.submit("production", errors=0)  # the default L2, quality pass
    gate_flow.gates.clock.advance(timedelta(minutes=5))
    assert gate_flow.decide(gate, "reject") == 202
    seen = mine(caplog, gate)
    assert seen["GateDecision"][0]["quality"] == "pass" and seen["GateDecision"][0]["quality_score"] == 100.0
    (decided,) = seen["ApprovalDecided"]
    assert (decided["outcome"], decided["latency_seconds"]) == ("rejected", 300.0)
    assert [o["kind"] for o in seen["HitlOverride"]] == ["rejected_despite_pass"]


@pytest.mark.azurite
def test_agreeing_decisions_timeouts_and_automated_gates_are_not_overrides(
    gate_flow: Flow, caplog: pytest.LogCaptureFixture
):
    approved = gate_flow.submit("production", errors=0)
    assert gate_flow.decide(approved, "approve") == 202
    timed_out = gate_flow.submit("production", errors=5)
    gate_flow.gates.runner.advance(timedelta(hours=1, minutes=1))
    automated = gate_flow.submit("dev", errors=0)
    assert "HitlOverride" not in mine(caplog, approved)
    expired = mine(caplog, timed_out)
    (decided,) = expired["ApprovalDecided"]
    assert (decided["outcome"], decided["decided_by"], decided["latency_seconds"]) == ("rejected", "timeout", 3600.0)
    assert "HitlOverride" not in expired and expired["GateOutcome"][0]["decided_by"] == "timeout"
    auto = mine(caplog, automated)
    assert auto["GateDecision"][0]["level"] == "L0" and "ApprovalDecided" not in auto
    assert (auto["GateOutcome"][0]["status"], auto["GateOutcome"][0]["decided_by"]) == ("approved", "automation")
