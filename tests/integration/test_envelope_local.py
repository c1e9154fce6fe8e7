"""Envelope encryption on local JWK files (development and demo mode) with Azurite, and `gatekeeper keys`."""

from __future__ import annotations

import json

import pytest

from gatekeeper.cli import main
from gatekeeper.store.envelope import SealedDataUnreadable, SealingUnavailable
from gatekeeper.store.keyring import DataKeyRing
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from tests.keyvault_fixtures import local_cipher, local_key_provider, new_tenant_id, storage  # noqa: F401

pytestmark = pytest.mark.azurite


def test_round_trip_and_one_data_key_per_tenant(storage, local_cipher, local_key_provider):
    tenant = new_tenant_id()
    sealed = [local_cipher.seal_json(tenant, "gkEvents", "p", str(n), {"n": n}) for n in range(50)]
    assert {s.split(".")[1] for s in sealed} == {DataKeyRing(storage, local_key_provider).active_id(tenant)}
    fresh = build_cipher(storage, local_key_provider)  # another process, same key folder and tables
    assert [fresh.open_json(tenant, "gkEvents", "p", str(n), s) for n, s in enumerate(sealed)] == [
        {"n": n} for n in range(50)
    ]
    (record,) = DataKeyRing(storage, local_key_provider).records(tenant)
    assert record.algorithm == "RSA-OAEP-256" and record.active
    assert record.kek_id == local_key_provider.key_id(tenant)
    assert "wrapped_key" not in repr(record)


def test_crypto_shredding_by_removing_the_local_key(storage, local_cipher, local_key_provider):
    doomed, kept = new_tenant_id(), new_tenant_id()
    sealed = {t: local_cipher.seal(t, "gkEvents", "p", "r", t.encode()) for t in (doomed, kept)}
    assert local_key_provider.destroy(doomed)
    local_cipher.forget(doomed)
    with pytest.raises(SealedDataUnreadable):
        local_cipher.open(doomed, "gkEvents", "p", "r", sealed[doomed])
    with pytest.raises(SealingUnavailable):  # no silent new key for a tenant whose data keys exist
        build_cipher(storage, local_key_provider).seal(doomed, "gkEvents", "p", "r2", b"x")
    assert not local_key_provider.path(doomed).exists()
    fresh = build_cipher(storage, local_key_provider)
    assert fresh.open(kept, "gkEvents", "p", "r", sealed[kept]) == kept.encode()


@pytest.fixture
def local_mode(monkeypatch, tmp_path, storage_connection_string):
    keys = tmp_path / "cli-keys"
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(keys))
    return LocalKeyProvider(keys), storage_connection_string


def test_cli_rotate_kek_then_data_key(local_mode, storage, capsys):
    provider, connection = local_mode
    tenant = new_tenant_id()
    cipher = build_cipher(storage, provider)
    old_sealed = cipher.seal(tenant, "gkEvents", "p", "r", b"before rotation")
    old_kek = provider.key_id(tenant)
    ring = DataKeyRing(storage, provider)
    (before,) = ring.records(tenant)

    assert main(["keys", "rotate", "--tenant", tenant, "--new-kek-version", "--storage-connection", connection]) == 0
    out = capsys.readouterr().out
    new_kek = provider.key_id(tenant)
    assert new_kek != old_kek and new_kek in out and "re-wrapped 1 data key(s)" in out
    (after,) = ring.records(tenant)
    assert after.data_key_id == before.data_key_id and after.kek_id == new_kek

    # the old KEK version is no longer needed: drop it from the key file, the data still opens
    path = provider.path(tenant)
    jwks = json.loads(path.read_text())
    path.write_text(json.dumps({"keys": [k for k in jwks["keys"] if k["kid"] != old_kek]}))
    assert build_cipher(storage, provider).open(tenant, "gkEvents", "p", "r", old_sealed) == b"before rotation"

    assert main(["keys", "rotate", "--tenant", tenant, "--data-key", "--storage-connection", connection]) == 0
    out = capsys.readouterr().out
    assert "0 data key(s)" in out and "(1 already current)" in out and "now active" in out
    assert main(["keys", "status", "--tenant", tenant, "--json", "--storage-connection", connection]) == 0
    status = json.loads(capsys.readouterr().out)
    assert len(status) == 2 and sum(row["active"] for row in status) == 1
    active = next(row for row in status if row["active"])
    assert active["data_key_id"] != before.data_key_id and active["kek_id"] == new_kek
    new_sealed = build_cipher(storage, provider).seal(tenant, "gkEvents", "p", "r2", b"after")
    assert new_sealed.split(".")[1] == active["data_key_id"]
    reader = build_cipher(storage, provider)
    assert reader.open(tenant, "gkEvents", "p", "r", old_sealed) == b"before rotation"
    assert reader.open(tenant, "gkEvents", "p", "r2", new_sealed) == b"after"


def test_cli_rotate_without_data_keys_and_bad_tenant(local_mode, capsys):
    provider, connection = local_mode
    tenant = new_tenant_id()
    assert main(["keys", "rotate", "--tenant", tenant, "--storage-connection", connection]) == 0
    assert "no data keys yet" in capsys.readouterr().out
    assert main(["keys", "status", "--tenant", tenant, "--storage-connection", connection]) == 0
    assert "no data keys yet" in capsys.readouterr().out
    assert not provider.path(tenant).exists(), "looking at a tenant creates no key"
    assert main(["keys", "rotate", "--tenant", "../Acme", "--storage-connection", connection]) == 2
    assert "--tenant:" in capsys.readouterr().err


def test_cli_reports_key_failures_with_exit_1(local_mode, capsys):
    provider, connection = local_mode
    tenant = new_tenant_id()
    # a key file that is not a JWK Set: the key service is unusable, and the command says so
    provider.key_dir.mkdir(parents=True, exist_ok=True)
    provider.path(tenant).write_text("[]")
    assert main(["keys", "rotate", "--tenant", tenant, "--data-key", "--storage-connection", connection]) == 1
    err = capsys.readouterr().err
    assert tenant in err and "JWK Set" in err
