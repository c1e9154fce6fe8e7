"""The business key, the dedupe key and the instance id (issue 21): the tenant must be part of both.

A mutant that dropped the tenant from the key hash passed the suite, because no test sent the same business key
from two tenants. Here the key is checked against an independent construction and across tenants.
"""

from __future__ import annotations

import hashlib

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

BASE = {
    "source": EventSource.GITHUB,
    "kind": EventKind.GATE_REQUEST,
    "environment": "production",
    "run_id": "9001",
    "repository": "contoso/web",
}


def _event(tenant_id: str, **fields) -> PipelineEvent:
    return PipelineEvent(tenant_id=tenant_id, **{**BASE, **fields})


def test_same_business_key_in_two_tenants_gives_two_keys_and_two_instances():
    a, b = _event("tcontoso0001"), _event("tfabrikam002")
    assert a.business_key == b.business_key
    assert a.key_hash != b.key_hash
    assert a.instance_id != b.instance_id


def test_key_hash_is_the_documented_construction():
    event = _event("tcontoso0001")
    assert event.business_key == "github|9001|production|gate_request|"
    expected = hashlib.sha256(b"tcontoso0001|github|9001|production|gate_request|").hexdigest()
    assert event.key_hash == expected
    assert event.instance_id == "gate-" + expected[:40]


def test_the_delivery_id_is_not_part_of_the_key():
    assert _event("t1", delivery_id="d-1").key_hash == _event("t1", delivery_id="d-2").key_hash


def test_every_business_field_is_part_of_the_key():
    base = _event("t1")
    for change in (
        {"environment": "staging"},
        {"run_id": "9002"},
        {"source": EventSource.AZURE_DEVOPS},
        {"kind": EventKind.RUN_STATUS, "status": "success"},
    ):
        assert _event("t1", **change).key_hash != base.key_hash, change


def test_status_counts_for_status_events_but_not_for_gate_requests():
    status = {"kind": EventKind.RUN_STATUS}
    assert _event("t1", status="success", **status).key_hash != _event("t1", status="failure", **status).key_hash
    assert _event("t1", status="success").key_hash == _event("t1", status="failure").key_hash


def test_the_subject_stands_in_for_the_run_id_then_the_delivery_id():
    no_run = {"run_id": None}
    assert _event("t1", subject="T-1", **no_run).business_key.split("|")[1] == "T-1"
    assert _event("t1", delivery_id="d-9", **no_run).business_key.split("|")[1] == "d-9"
    assert _event("t1", run_id="r", subject="T-1").business_key.split("|")[1] == "r"


def test_only_gate_requests_are_gate_requests():
    assert _event("t1").is_gate_request is True
    assert _event("t1", kind=EventKind.RUN_STATUS).is_gate_request is False
