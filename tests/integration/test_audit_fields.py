"""Which audit fields are readable at rest: subjects and actors that are not pseudonymous identifiers are
sealed like the data, bound to their own field of their own entry; the tenant's auditors read them opened in
the JSONL and OSCAL exports; verification keeps judging the stored (sealed) form."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from azure.data.tables import UpdateMode

from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.export import export_bundle, export_jsonl, export_oscal
from gatekeeper.audit.log import ENTRY_PARTITION, AuditLog
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite

OID = "0000000a-0000-4000-8000-00000000000a"
PERSON = "dev@contoso.com"
TITLE = "contoso/payroll: deploy to production (salary run)"


@pytest.fixture
def log(storage_connection_string, tmp_path) -> AuditLog:
    storage = StorageAccount(connection_string=storage_connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(tmp_path / "keys", key_size=2048))
    signer = LocalCheckpointKey(tmp_path / "keys").signer()
    return AuditLog(storage, cipher, signer, "t" + uuid.uuid4().hex[:12], checkpoint_every=1)


def raw_rows(log: AuditLog) -> list[dict]:
    return [dict(e) for e in log.table.query_entities(f"PartitionKey eq '{ENTRY_PARTITION}' and RowKey lt 'head'")]


def test_subjects_and_named_actors_are_sealed_at_rest_and_opened_for_auditors(log):
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    log.append("policy_changed", PERSON, "", TITLE, {"revision": 1}, at=at)
    log.append("approval_decided", OID, "gate-1", TITLE, {"decision": "approve"}, at=at)
    log.append("decision", "gatekeeper", "gate-1", "", {"level": "L2"}, at=at)
    log.append("integrity_failure", "system:gatekeeper", "", TITLE, {}, at=at)

    rows = raw_rows(log)
    stored = json.dumps(rows, default=str)
    assert PERSON not in stored and "payroll" not in stored and "salary" not in stored
    assert rows[0]["actor"].startswith("gk1.") and rows[0]["subject"].startswith("gk1.")
    # pseudonymous identifiers stay joinable in plain text; an empty subject has nothing to hide
    assert [r["actor"] for r in rows[1:]] == [OID, "gatekeeper", "system:gatekeeper"]
    assert rows[2]["subject"] == ""

    records = list(log.records())
    assert [r.actor for r in records] == [PERSON, OID, "gatekeeper", "system:gatekeeper"]
    assert [r.subject for r in records] == [TITLE, TITLE, "", TITLE]

    # the bundle (offline verification) carries the stored form and still verifies
    bundle = export_bundle(log)
    assert PERSON not in json.dumps(bundle) and check_bundle(bundle, public_key_pem=log.trusted_public_key_pem()).ok
    assert log.check().ok
    # the tenant's own auditors read them opened
    lines = [json.loads(line) for line in export_jsonl(log)]
    assert [line["actor"] for line in lines][:2] == [PERSON, OID] and lines[0]["subject"] == TITLE
    oscal = json.dumps(export_oscal(log))
    assert TITLE in oscal and "gk1." not in oscal


def test_a_sealed_subject_moved_to_another_entry_or_field_does_not_open(log):
    log.append("policy_changed", PERSON, "", "first subject", {})
    log.append("policy_changed", PERSON, "", "second subject", {})
    first, second = raw_rows(log)
    # moved to another entry
    second_moved = {**second, "subject": first["subject"]}
    log.table.update_entity(second_moved, mode=UpdateMode.REPLACE)
    entry = {"seq": 1, "subject": first["subject"], "actor": second["actor"]}
    with pytest.raises(SealedDataUnreadable):
        log.open_text(entry, "subject")
    # swapped between the fields of one entry
    with pytest.raises(SealedDataUnreadable):
        log.open_text({"seq": 0, "actor": first["subject"]}, "actor")
    # the export still goes through (the field stays sealed) and verification names the changed entry
    subjects = [json.loads(line)["subject"] for line in export_jsonl(log)]
    assert subjects[0] == "first subject" and subjects[1] == first["subject"]
    result = log.check()
    assert not result.ok and result.first_bad_seq == 1
