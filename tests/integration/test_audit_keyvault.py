"""Checkpoints signed by a Key Vault key through the real azure-keyvault-keys clients, against the local
HTTPS server that speaks Key Vault's REST API (challenge auth, bearer token, /keys/{name}/{version}/sign)."""

from __future__ import annotations

import pytest

from devstack.keyvault_server import KEY_VAULT_SCOPE, LocalKeyVault
from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.export import export_bundle
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.signing import CheckpointKeyError, KeyVaultCheckpointKey
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def vault():
    with LocalKeyVault() as server:
        yield server


@pytest.fixture
def storage(storage_connection_string):
    return StorageAccount(connection_string=storage_connection_string)


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    return LocalKeyProvider(tmp_path_factory.mktemp("data-keys"), key_size=2048)


@pytest.mark.parametrize(("kty", "algorithm"), [("EC", "ES256"), ("RSA", "RS256")])
def test_key_vault_key_signs_checkpoints_that_verify_offline(vault, storage, provider, unique_name, kty, algorithm):
    name = f"audit-checkpoint-{kty.lower()}"
    kid = vault.create_key(name, kty, size=2048)
    credential = vault.credential()
    key = KeyVaultCheckpointKey(vault.vault_url, name, credential, **vault.client_kwargs())
    signer = key.signer()
    log = AuditLog(storage, build_cipher(storage, provider), signer, unique_name, checkpoint_every=5)
    for i in range(7):
        log.append("decision", "system:gatekeeper", subject=f"s{i}", data={"i": i})
    assert vault.count("sign", name) == 1  # the checkpoint at 5 was signed in the vault
    checkpoints = log.checkpoints()
    assert [(c.algorithm, c.key_id) for c in checkpoints] == [(algorithm, kid)]
    assert KEY_VAULT_SCOPE in credential.scopes_requested
    bundle = export_bundle(log)
    result = check_bundle(bundle, public_key_pem=key.public_key_pem())
    assert result.ok and result.size == 7


def test_vault_outage_keeps_appending_and_the_checkpoint_is_repaired(vault, storage, provider, unique_name):
    vault.create_key("audit-outage", "EC")
    signer = KeyVaultCheckpointKey(
        vault.vault_url, "audit-outage", vault.credential(), **vault.client_kwargs()
    ).signer()
    log = AuditLog(storage, build_cipher(storage, provider), signer, unique_name, checkpoint_every=3)
    vault.outage = "unavailable"
    try:
        records = [log.append("callback", "system:gatekeeper", data={"i": i}) for i in range(3)]
    finally:
        vault.outage = None
    assert records[-1].seq == 2 and log.last_checkpoint_error == "CheckpointKeyError"
    assert log.checkpoints() == []
    assert log.checkpoint().checkpoint().size == 3
    assert log.check().ok


def test_missing_vault_key_is_a_clear_error(vault):
    key = KeyVaultCheckpointKey(vault.vault_url, "no-such-key", vault.credential(), **vault.client_kwargs())
    with pytest.raises(CheckpointKeyError, match="'no-such-key': cannot be read from Key Vault"):
        key.signer()
