"""Per-tenant policy revisions in Azurite, and `gatekeeper policy` with its audit entry."""

from __future__ import annotations

import threading
import uuid

import pytest

from gatekeeper.audit.log import AuditLog
from gatekeeper.cli import main
from gatekeeper.policy.document import PolicyError
from gatekeeper.policy.store import REVISION_PARTITION, NoPolicy, PolicyStore
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.conftest import ROOT

POLICY = (ROOT / "examples/policy.yaml").read_text()
SMALL = "version: 1\nrules:\n  - {name: all, match: {}, level: L1}\n"


@pytest.fixture
def store(storage_connection_string):
    return PolicyStore(StorageAccount(connection_string=storage_connection_string), "t" + uuid.uuid4().hex[:10])


def test_publish_creates_revisions_and_current_follows(store):
    with pytest.raises(NoPolicy):
        store.current()
    first = store.publish(POLICY, published_by="admin@contoso.com")
    second = store.publish(SMALL, published_by="other@contoso.com")
    assert (first.revision, second.revision) == (1, 2)
    assert store.current().revision == 2 and store.current().document.rules[0].name == "all"
    assert store.revision(1).text == POLICY  # history is never overwritten
    assert [r[0] for r in store.history()] == [1, 2]


def test_an_invalid_policy_names_the_field_and_writes_nothing(store):
    with pytest.raises(PolicyError) as caught:
        store.publish("version: 1\nrules:\n  - {name: x, match: {}, level: L9}\n", published_by="a")
    assert "rules[0].level" in caught.value.field
    assert store.history() == []


def test_concurrent_publishers_never_lose_a_revision(store):
    store.publish(SMALL, published_by="seed")
    errors: list[Exception] = []

    def publish(i: int) -> None:
        try:
            PolicyStore(store._storage, store.tenant_id).publish(SMALL, published_by=f"admin{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    revisions = [r[0] for r in store.history()]
    assert revisions == [1, 2, 3, 4, 5]
    assert store.current().revision == 5


def test_a_revision_stored_without_its_pointer_move_does_not_block_later_publishers(store):
    """A publisher that stored revision 2 and stopped (or has not yet moved the pointer) must not make every
    later publish re-read the stale pointer, lose on revision 2 again and give up."""
    store.publish(SMALL, published_by="seed")
    seed = store.revision(1)
    store.create(
        {
            "PartitionKey": REVISION_PARTITION,
            "RowKey": f"{2:010d}",
            "revision": 2,
            "text": SMALL,
            "fingerprint": seed.fingerprint,
            "published_by": "stalled",
            "published_at": seed.published_at,
        }
    )
    assert store.publish(SMALL, published_by="next").revision == 3
    assert [r[0] for r in store.history()] == [1, 2, 3] and store.current().revision == 3


def test_cli_publish_show_history_and_audit(storage_connection_string, tmp_path, capsys, monkeypatch):
    tenant = "t" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    conn = ["--storage-connection", storage_connection_string]
    assert (
        main(["policy", "publish", "--tenant", tenant, str(ROOT / "examples/policy.yaml"), "--by", "ann", *conn]) == 0
    )
    assert "published policy revision 1" in capsys.readouterr().out
    assert main(["policy", "show", "--tenant", tenant, *conn]) == 0
    assert "production-deploy" in capsys.readouterr().out
    assert main(["policy", "history", "--tenant", tenant, *conn]) == 0
    assert "ann" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [{name: x, match: {}, level: L7}]\n")
    assert main(["policy", "publish", "--tenant", tenant, str(bad), *conn]) == 2
    assert "bad.yaml: rules[0].level" in capsys.readouterr().err

    storage = StorageAccount(connection_string=storage_connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys")))
    [record] = list(AuditLog(storage, cipher, None, tenant).records())
    assert record.kind == "policy_changed" and record.actor == "ann" and record.data["revision"] == 1
