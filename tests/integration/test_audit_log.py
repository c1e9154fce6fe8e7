"""The audit log against Azurite with the real table, blob and envelope-encryption code paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from gatekeeper.audit.archive import CheckpointArchive, CheckpointConflict, blob_name
from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.checkpoints import Checkpoint, origin_for, sign_checkpoint
from gatekeeper.audit.export import CONTENT_TYPES, export_bundle, export_for_http, export_jsonl, export_oscal
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.audit.records import GENESIS_HASH, RecordKind
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.errors import InvalidInput, NotFound
from gatekeeper.store.keyring import DataKeyRing
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.conftest import SHARED_FIXTURES

pytestmark = pytest.mark.azurite
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def signer(key_dir):
    return LocalCheckpointKey(key_dir).signer()


@pytest.fixture
def storage(storage_connection_string):
    return StorageAccount(connection_string=storage_connection_string)


@pytest.fixture
def provider(key_dir):
    return LocalKeyProvider(key_dir, key_size=2048)


@pytest.fixture
def cipher(storage, provider):
    return build_cipher(storage, provider)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_log(storage, cipher, signer, clock, unique_name):
    def make(tenant: str = unique_name, **options):
        options.setdefault("checkpoint_every", 10)
        options.setdefault("clock", clock)
        return AuditLog(storage, cipher, options.pop("signer", signer), tenant, **options)

    return make


def fill(log, n, *, start=0):
    return [
        log.append(
            RecordKind.DECISION,
            "system:gatekeeper",
            f"gate-{i}",
            f"github:contoso/web:{i}:production",
            {"level": "L2", "reasons": [f"reason {i}"], "comment": f"private note {i}"},
        )
        for i in range(start, start + n)
    ]


def test_append_chains_entries_and_seals_data(make_log):
    log = make_log()
    records = fill(log, 3)
    assert [r.seq for r in records] == [0, 1, 2]
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].entry_hash and records[2].prev_hash == records[1].entry_hash
    entity = log.table.get_entity("log", "00000000000000000001")
    assert entity["data"].startswith("gk1.") and "private note" not in json.dumps(dict(entity))
    assert entity["entry_hash"] == records[1].entry_hash
    opened = list(log.records())
    assert [r.data["comment"] for r in opened] == ["private note 0", "private note 1", "private note 2"]
    head = log.head()
    assert (head.size, head.last_hash) == (3, records[2].entry_hash)


def test_bad_input_names_the_field_and_writes_nothing(make_log):
    log = make_log()
    fill(log, 1)
    with pytest.raises(InvalidInput) as info:
        log.append("not-a-kind", "system:gatekeeper")
    assert info.value.field == "kind"
    with pytest.raises(InvalidInput) as info:
        log.append("decision", "")
    assert info.value.field == "actor"
    with pytest.raises(InvalidInput) as info:
        log.append("decision", "system:gatekeeper", data={"when": object()})
    assert info.value.field == "data"
    assert log.head().size == 1


def test_checkpoints_every_n_entries_go_to_table_and_worm_container(make_log, storage, unique_name):
    log = make_log()
    fill(log, 25)
    sizes = [c.checkpoint().size for c in log.checkpoints()]
    assert sizes == [10, 20]
    container = BlobServiceClient.from_connection_string(storage.connection_string).get_container_client(
        "audit-checkpoints"
    )
    names = sorted(b.name for b in container.list_blobs(name_starts_with=f"{unique_name}/"))
    assert names == [blob_name(unique_name, 10), blob_name(unique_name, 20)]
    with pytest.raises(ResourceExistsError):
        container.upload_blob(names[0], b"{}", overwrite=False)
    result = log.check()
    assert result.ok and result.size == 20 and result.unsigned_tail == 5


def test_archive_refuses_a_different_checkpoint_for_the_same_size(make_log, signer, unique_name):
    log = make_log()
    fill(log, 10)
    other = sign_checkpoint(signer, Checkpoint(origin_for(unique_name), 10, b"\x07" * 32, "2026-03-01T10:00:00Z"))
    with pytest.raises(CheckpointConflict):
        log.archive.put(unique_name, other)
    same = log.archive.get(unique_name, 10)
    assert log.archive.put(unique_name, same) is False


def test_checkpoint_after_t_minutes_on_append_and_from_a_timer(make_log, clock):
    log = make_log(checkpoint_every=100, checkpoint_interval=timedelta(minutes=15))
    fill(log, 3)
    assert log.checkpoints() == [] and log.checkpoint() is None
    clock.advance(minutes=16)
    fill(log, 1, start=3)
    assert [c.checkpoint().size for c in log.checkpoints()] == [4]
    fill(log, 2, start=4)
    assert log.checkpoint().checkpoint().size == 4  # not due yet: returns the latest
    clock.advance(minutes=15)
    signed = log.checkpoint()
    assert signed.checkpoint().size == 6 and signed.checkpoint().time == "2026-03-01T09:31:00.000000Z"
    assert log.checkpoint(force=True).checkpoint().size == 6  # nothing new to sign


class FlakySigner:
    """A NoteSigner whose key service is down for the first `failures` calls."""

    def __init__(self, real, failures: int) -> None:
        self.real, self.failures = real, failures

    def sign_note(self, note):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("key service down")
        return self.real.sign_note(note)

    def public_key_pem(self):
        return self.real.public_key_pem()


def test_failed_signature_does_not_fail_the_append_and_is_repaired(make_log, signer):
    log = make_log(checkpoint_every=5, signer=FlakySigner(signer, failures=1))
    records = fill(log, 5)
    assert records[-1].seq == 4 and log.last_checkpoint_error == "ConnectionError"
    assert log.checkpoints() == []
    repaired = log.checkpoint()
    assert repaired.checkpoint().size == 5
    assert [c.checkpoint().size for c in log.checkpoints()] == [5]
    assert log.check().ok


def test_append_many_spans_transactions(make_log):
    log = make_log(checkpoint_every=1000)
    items = [
        {"kind": "notification", "actor": "system:gatekeeper", "subject": f"s{i}", "data": {"i": i}} for i in range(150)
    ]
    records = log.append_many(items)
    assert [r.seq for r in records] == list(range(150))
    assert log.head().size == 150
    log.checkpoint(force=True)
    assert log.check().ok


def test_large_data_is_chunked_and_too_large_is_refused(make_log):
    log = make_log()
    big = "x" * 100_000
    record = log.append("event_received", "system:gatekeeper", data={"payload": big})
    entity = log.table.get_entity("log", f"{record.seq:020d}")
    assert entity["data_parts"] > 1
    assert next(log.records()).data["payload"] == big
    with pytest.raises(InvalidInput, match="data: too large"):
        log.append("event_received", "system:gatekeeper", data={"payload": "y" * 500_000})
    log.checkpoint(force=True)
    assert log.check().ok


def test_key_rotation_never_changes_history(make_log, storage, provider, cipher, unique_name):
    log = make_log()
    before = fill(log, 4)
    ring = DataKeyRing(storage, provider)
    provider.new_version(unique_name)
    ring.create_data_key(unique_name)
    cipher.forget()
    ring.rewrap(unique_name)
    after = fill(log, 3, start=4)
    assert after[0].prev_hash == before[-1].entry_hash
    stored = [e["entry_hash"] for e in log.entries()]
    assert stored[:4] == [r.entry_hash for r in before]
    assert [r.data["comment"] for r in log.records()][:4] == [f"private note {i}" for i in range(4)]
    data_keys = {e["data"].split(".")[1] for e in log.entries()}
    assert len(data_keys) == 2  # old entries stay sealed under the old data key
    log.checkpoint(force=True)
    assert log.check().ok


def test_export_bundle_ends_on_a_signed_checkpoint_and_verifies_offline(make_log, signer):
    log = make_log()
    fill(log, 23)
    bundle = export_bundle(log)
    assert bundle["range"]["end_seq"] == 23 and len(bundle["entries"]) == 23
    assert bundle["public_keys"] == [signer.public_key_pem()]
    result = check_bundle(json.loads(json.dumps(bundle)), public_key_pem=signer.public_key_pem())
    assert result.ok and result.size == 23
    assert result.root == log.head().checkpoint_root


def test_export_by_time_range(make_log, clock, signer):
    log = make_log()
    for i in range(30):
        clock.advance(minutes=1)
        fill(log, 1, start=i)
    start, end = T0 + timedelta(minutes=12), T0 + timedelta(minutes=17, seconds=30)
    bundle = export_bundle(log, start=start, end=end)
    seqs = [e["seq"] for e in bundle["entries"]]
    assert seqs[0] == 11 and seqs[-1] == 19  # entries 11..16 are in range; 17..19 reach the checkpoint at 20
    assert bundle["range"] == {
        "from": "2026-03-01T09:12:00.000000Z",
        "to": "2026-03-01T09:17:30.000000Z",
        "start_seq": 11,
        "end_seq": 20,
    }
    assert check_bundle(bundle, public_key_pem=signer.public_key_pem()).ok
    lines = list(export_jsonl(log, start=start, end=end))
    assert [json.loads(line)["seq"] for line in lines] == [11, 12, 13, 14, 15, 16]
    empty = export_bundle(log, start=T0 + timedelta(days=1))
    assert empty["entries"] == [] and check_bundle(empty, public_key_pem=signer.public_key_pem()).ok
    with pytest.raises(InvalidInput, match="to: must not be earlier"):
        export_bundle(log, start=end, end=start)


def test_export_oscal_and_jsonl_open_the_records(make_log):
    log = make_log()
    log.append(
        "event_received",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:7:production",
        {"source": "github", "repository": "contoso/web", "commit": "9f2c1ab", "requested_by": "dev-oid"},
    )
    log.append(
        "decision",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:7:production",
        {"level": "L2", "outcome": "approval_required", "reasons": ["production"], "requester": "dev-oid"},
    )
    log.append(
        "approval_decided",
        "user:approver-oid",
        "gate-1",
        "github:contoso/web:7:production",
        {
            "decision": "approved",
            "comment": "ship it",
            "decision_token": "tok-123",
            "approver": {"oid": "approver-oid", "name": "Alice Example"},
        },
    )
    log.append(
        "callback",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:7:production",
        {"target": "github", "result": "approved", "status": 204},
    )
    document = export_oscal(log)
    schema = json.loads((SHARED_FIXTURES / "oscal" / "oscal_complete_schema-1.2.3.json").read_text())
    assert validation_errors(document, schema) == []
    text = json.dumps(document)
    assert "Alice Example" in text and "ship it" in text and "tok-123" not in text
    findings = document["assessment-results"]["results"][0]["findings"]
    assert {f["target"]["status"]["state"] for f in findings} == {"satisfied"}
    lines = [json.loads(line) for line in export_jsonl(log)]
    assert lines[2]["data"] == {
        "decision": "approved",
        "comment": "ship it",
        "decision_token": "[redacted]",
        "approver": {"oid": "approver-oid", "name": "Alice Example"},
    }


def test_export_for_http(make_log, unique_name):
    fill(make_log(), 3)
    content_type, body = export_for_http(make_log, unique_name, "bundle")  # the log as the root builds it
    assert content_type == CONTENT_TYPES["bundle"] and check_bundle(body).ok
    content_type, body = export_for_http(make_log, unique_name, "oscal")
    assert "assessment-results" in json.loads(body)
    with pytest.raises(InvalidInput) as info:
        export_for_http(make_log, unique_name, "pdf")
    assert info.value.field == "format"
    with pytest.raises(NotFound) as missing:
        export_for_http(make_log, "not a tenant", "bundle")
    assert missing.value.field == "tenant"


def test_archive_from_endpoint_settings_needs_a_blob_endpoint():
    with pytest.raises(ValueError, match="blob endpoint"):
        CheckpointArchive.from_storage(StorageAccount(table_endpoint="https://x.table.core.windows.net"), "c")


def test_a_log_without_signer_appends_and_records_no_checkpoint(storage, cipher, unique_name, caplog):
    log = AuditLog(storage, cipher, None, unique_name, checkpoint_every=2)
    for i in range(3):
        log.append("notification", "system:gatekeeper", data={"i": i})
    assert log.head().checkpoint_size == 0 and log.checkpoints() == []
    assert log.last_checkpoint_error is None and "not published" not in caplog.text
    with pytest.raises(ValueError, match="public_key_pem"):
        log.check()
    bundle = export_bundle(log)  # nothing signed yet: an empty bundle, no entry unproven
    assert bundle["entries"] == [] and bundle["checkpoints"] == []
