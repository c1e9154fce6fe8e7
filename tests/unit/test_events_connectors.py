"""PSA/RMM connector messages: one sample per vendor and case, ignored variants, named field errors."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.errors import InvalidInput
from gatekeeper.events.common import Ignored
from gatekeeper.events.connectors import parse_connector_message
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "connectors"


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse(message: Any) -> PipelineEvent | Ignored:
    return parse_connector_message(message, tenant_id="contoso")


def event(message: Any) -> PipelineEvent:
    result = parse(message)
    assert isinstance(result, PipelineEvent), result
    return result


EXPECTED: dict[str, tuple[EventSource, EventKind, str, str, ActionKind | None]] = {
    # sample: (source, kind, subject, status, action)
    "connectwise.ticket-approved": (
        EventSource.CONNECTWISE,
        EventKind.CHANGE_APPROVED,
        "48213",
        "approved",
        ActionKind.DEPLOY,
    ),
    "connectwise.ticket-rejected": (
        EventSource.CONNECTWISE,
        EventKind.CHANGE_REJECTED,
        "48214",
        "rejected",
        ActionKind.DEPLOY,
    ),
    "connectwise.configuration-offline": (EventSource.CONNECTWISE, EventKind.ALERT, "9021", "offline", None),
    "autotask.ticket-change-approved": (
        EventSource.AUTOTASK,
        EventKind.CHANGE_APPROVED,
        "7311",
        "approved",
        ActionKind.DEPLOY,
    ),
    "autotask.ticket-change-rejected": (EventSource.AUTOTASK, EventKind.CHANGE_REJECTED, "7312", "rejected", None),
    "autotask.ticket-alert": (EventSource.AUTOTASK, EventKind.ALERT, "880", "triggered", None),
    "halopsa.ticket-approved": (EventSource.HALOPSA, EventKind.CHANGE_APPROVED, "3321", "approved", ActionKind.DEPLOY),
    "halopsa.ticket-rejected": (EventSource.HALOPSA, EventKind.CHANGE_REJECTED, "3322", "rejected", ActionKind.DEPLOY),
    "halopsa.asset-alert": (EventSource.HALOPSA, EventKind.ALERT, "552", "alerting", None),
    "ninjarmm.condition-triggered": (EventSource.NINJARMM, EventKind.ALERT, "311", "triggered", None),
    "ninjarmm.patch-approved": (
        EventSource.NINJARMM,
        EventKind.CHANGE_APPROVED,
        "d3c2b1a0-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "approved",
        ActionKind.INFRASTRUCTURE_CHANGE,
    ),
    "ninjarmm.patch-rejected": (
        EventSource.NINJARMM,
        EventKind.CHANGE_REJECTED,
        "d3c2b1a0-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "rejected",
        ActionKind.INFRASTRUCTURE_CHANGE,
    ),
}


def test_every_sample_is_covered() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_outcome(name: str) -> None:
    result = event(sample(name))
    source, kind, subject, status, action = EXPECTED[name]
    assert (result.source, result.kind, result.subject, result.status, result.action) == (
        source,
        kind,
        subject,
        status,
        action,
    )
    assert result.tenant_id == "contoso"
    assert result.received_at == datetime(2025, 3, 4, 9, 15, 27, tzinfo=UTC)
    assert result.summary


def test_connectwise_actor_and_delivery_id_come_from_the_callback() -> None:
    result = event(sample("connectwise.ticket-approved"))
    assert result.actor == "jsmith"
    assert result.delivery_id == "5e0b3f0c-8b2a-4d6e-9a41-1c2d3e4f5a60"


def test_connectwise_entity_may_also_arrive_as_an_object() -> None:
    message = sample("connectwise.ticket-approved")
    message["payload"]["Entity"] = json.loads(message["payload"]["Entity"])
    assert event(message).kind is EventKind.CHANGE_APPROVED


def _cw_with_status(status: str) -> dict[str, Any]:
    message = sample("connectwise.ticket-approved")
    entity = json.loads(message["payload"]["Entity"])
    entity["status"]["name"] = status
    message["payload"]["Entity"] = json.dumps(entity)
    return message


@pytest.mark.parametrize("status", ["In Progress", "Pending Approval", "Not Approved", "Approved - Rejected by CAB"])
def test_connectwise_non_decision_statuses_are_ignored(status: str) -> None:
    result = parse(_cw_with_status(status))
    assert isinstance(result, Ignored)
    assert "is not an approval decision" in result.reason


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(Type="company"), "ConnectWise callback type 'company' is not handled"),
        (lambda p: p.update(Action="deleted"), "ConnectWise ticket 48213 was deleted; nothing to act on"),
    ],
)
def test_connectwise_other_callbacks_are_ignored(mutate: Any, expected: str) -> None:
    message = sample("connectwise.ticket-approved")
    mutate(message["payload"])
    assert parse(message) == Ignored(expected)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("ID"), "payload.ID"),
        (lambda p: p.update(ID="48213"), "payload.ID"),
        (lambda p: p.pop("Type"), "payload.Type"),
        (lambda p: p.update(Entity="{not json"), "payload.Entity"),
        (lambda p: p.update(Entity=42), "payload.Entity"),
        (lambda p: p.update(Entity=json.dumps({"status": {"name": 7}})), "payload.Entity.status.name"),
    ],
)
def test_connectwise_bad_fields_are_named(mutate: Any, field: str) -> None:
    message = sample("connectwise.ticket-approved")
    mutate(message["payload"])
    with pytest.raises(InvalidInput) as caught:
        parse(message)
    assert caught.value.field == field


def test_autotask_variants() -> None:
    message = sample("autotask.ticket-change-approved")
    message["payload"]["Fields"]["ChangeApprovalStatus"] = 2  # Requested
    assert isinstance(parse(message), Ignored)
    message["payload"]["Fields"] = {
        k.lower(): v for k, v in sample("autotask.ticket-change-approved")["payload"]["Fields"].items()
    }
    assert event(message).kind is EventKind.CHANGE_APPROVED  # field casing is not promised
    message["payload"]["Action"] = "Delete"
    assert isinstance(parse(message), Ignored)
    other = sample("autotask.ticket-change-approved")
    other["payload"]["EntityType"] = "Company"
    assert parse(other) == Ignored("Autotask entity type 'Company' is not handled")
    bare = sample("autotask.ticket-change-approved")
    bare["payload"]["Fields"] = {"Title": "nothing useful"}
    result = parse(bare)
    assert isinstance(result, Ignored) and "ChangeApprovalStatus" in result.reason


def test_autotask_alert_resolution_and_missing_device() -> None:
    message = sample("autotask.ticket-alert")
    assert event(message).run_id == "7313"
    message["payload"]["Fields"]["Status"] = 5
    assert event(message).status == "resolved"
    del message["payload"]["Fields"]["ConfigurationItemID"]
    result = parse(message)
    assert isinstance(result, Ignored) and "ConfigurationItemID" in result.reason


@pytest.mark.parametrize(("field", "path"), [("Id", "payload.Id"), ("EntityType", "payload.EntityType")])
def test_autotask_missing_fields_are_named(field: str, path: str) -> None:
    message = sample("autotask.ticket-alert")
    del message["payload"][field]
    with pytest.raises(InvalidInput) as caught:
        parse(message)
    assert caught.value.field == path


def test_halopsa_variants() -> None:
    message = sample("halopsa.ticket-approved")
    message["payload"]["ticket"]["status_name"] = "With Customer"
    assert isinstance(parse(message), Ignored)
    del message["payload"]["ticket"]["id"]
    with pytest.raises(InvalidInput) as caught:
        parse(message)
    assert caught.value.field == "payload.ticket.id"
    neither = sample("halopsa.asset-alert")
    del neither["payload"]["asset"]
    assert isinstance(parse(neither), Ignored)


def test_ninjarmm_variants() -> None:
    triggered = event(sample("ninjarmm.condition-triggered"))
    # the condition's seriesUid is NinjaOne's alert uid: the watch resets the alert by it after a rollback
    assert triggered.labels == ("severity:critical", "priority:high", "alert:0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e")
    assert triggered.run_id == "1187344"
    reset = sample("ninjarmm.condition-triggered")
    reset["payload"]["statusCode"] = "RESET"
    assert event(reset).status == "resolved"
    no_device = sample("ninjarmm.condition-triggered")
    del no_device["payload"]["deviceId"]
    assert event(no_device).subject == "311"  # falls back to device.id
    del no_device["payload"]["device"]
    with pytest.raises(InvalidInput) as caught:
        parse(no_device)
    assert caught.value.field == "payload.deviceId"
    other = sample("ninjarmm.condition-triggered")
    other["payload"]["activityType"] = "ANTIVIRUS"
    assert parse(other) == Ignored("NinjaOne activity ANTIVIRUS/TRIGGERED is not handled")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.pop("connector"), "connector"),
        (lambda m: m.update(connector="kaseya"), "connector"),
        (lambda m: m.pop("account"), "account"),
        (lambda m: m.update(receivedAt="yesterday"), "receivedAt"),
        (lambda m: m.update(receivedAt="2025-03-04T09:15:27"), "receivedAt"),
        (lambda m: m.update(payload="{}"), "payload"),
    ],
)
def test_envelope_errors_are_named(mutate: Any, field: str) -> None:
    message = copy.deepcopy(sample("ninjarmm.condition-triggered"))
    mutate(message)
    with pytest.raises(InvalidInput) as caught:
        parse(message)
    assert caught.value.field == field


def test_business_keys() -> None:
    approved = event(sample("connectwise.ticket-approved"))
    redelivered = sample("connectwise.ticket-approved")
    redelivered["payload"]["MessageId"] = "another-delivery"
    assert event(redelivered).business_key == approved.business_key
    rejected_same_ticket = _cw_with_status("Change Rejected")
    assert event(rejected_same_ticket).business_key != approved.business_key
    alert = event(sample("ninjarmm.condition-triggered"))
    later = sample("ninjarmm.condition-triggered")
    later["payload"]["id"] += 1
    assert event(later).business_key != alert.business_key  # a new alert on the same device
    sources = {event(sample(name)).business_key for name in EXPECTED}
    assert len(sources) == len(EXPECTED)


def test_rmm_alerts_carry_the_id_the_rmm_resolves_them_by() -> None:
    from gatekeeper.rollback.alerts import connector_alert

    ninja = connector_alert(event(sample("ninjarmm.condition-triggered")))
    assert ninja is not None and ninja.rmmAlertUid == "0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e"
    no_series = sample("ninjarmm.condition-triggered")
    del no_series["payload"]["seriesUid"]
    unnamed = connector_alert(event(no_series))
    assert unnamed is not None and unnamed.rmmAlertUid is None  # nothing to reset by: nothing is guessed
    datto = connector_alert(
        PipelineEvent(
            tenant_id="contoso",
            source=EventSource.DATTORMM,
            kind=EventKind.ALERT,
            subject="a7d2e9c4-1f3b-4a8e-b6c5-2e9d0f7a3b18",
            run_id="9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35",
            received_at=datetime(2026, 12, 5, tzinfo=UTC),
        )
    )
    assert datto is not None and datto.rmmAlertUid == "9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35"


def test_an_azure_monitor_alert_cannot_name_an_rmm_alert_to_resolve() -> None:
    from gatekeeper.ingest.edge import IncomingRequest
    from gatekeeper.rollback.alerts import parse_alert

    root = Path(__file__).resolve().parents[1] / "fixtures" / "azure-monitor"
    document = json.loads((root / "common-alert-schema.metric-static.fired.json").read_text())
    document["data"]["essentials"] |= {"monitoringService": "ninjarmm", "rmmAlertUid": "someone-elses-alert"}
    request = IncomingRequest.of(json.dumps(document).encode(), {"Content-Type": "application/json"})
    assert parse_alert(request).rmmAlertUid is None


@pytest.mark.parametrize(
    ("name", "company"),
    [
        ("connectwise.ticket-approved", "ContosoLtd"),  # the entity's company.identifier, not CompanyId (the MSP)
        ("autotask.ticket-change-approved", "29683501"),  # Fields.CompanyID
        ("halopsa.ticket-approved", "12"),  # ticket.client_id
    ],
)
def test_a_psa_change_decision_names_the_tickets_client_company(name: str, company: str) -> None:
    assert event(sample(name)).company == company


def test_a_psa_change_decision_without_a_company_names_none() -> None:
    cw = sample("connectwise.ticket-approved")
    entity = json.loads(cw["payload"]["Entity"])
    del entity["company"]
    cw["payload"]["Entity"] = json.dumps(entity)
    at = sample("autotask.ticket-change-approved")
    del at["payload"]["Fields"]["CompanyID"]
    halo = sample("halopsa.ticket-approved")
    del halo["payload"]["ticket"]["client_id"]
    assert [event(m).company for m in (cw, at, halo)] == [None, None, None]
