"""Transit keys end to end: Azurite tables and queues, the real Key Vault SDK against the local Key Vault
server, the local JWK provider, the CLI that records the public key, and the queue trigger that dead-letters.

What is proven here: the edge seals with no Key Vault call; the dispatcher unwraps each transit key once; a
substituted public key, a tampered or unregistered wrapped key and a forged message fail closed by name; a
disabled KEK stops processing; values sealed the old way (and records without the key) keep working."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import azure.functions as func
import pytest
from azure.data.tables import UpdateMode
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gatekeeper.encoding import b64url, int_to_b64url
from gatekeeper.ingest.queue import SEAL_TABLE, decode_message
from gatekeeper.services import set_services
from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable, SealingUnavailable, associated_data
from gatekeeper.store.keyring import DataKeyRing
from gatekeeper.store.keys import LocalKeyProvider, build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.store.transit import TRANSIT_PARTITION, KekPublicKey, TransitKeys, is_transit_id, transit_id
from gatekeeper.tenancy.registry import TenantRegistry
from tests.keyvault_fixtures import (  # noqa: F401
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
    new_tenant_id,
    storage,
)
from tests.support.gatekeeper_env import github_request, http_function, make_env
from tests.support.outage import dead_port
from tests.support.outage import storage_connection_string as outage_connection

pytestmark = pytest.mark.azurite

DPR = (Path(__file__).resolve().parents[1] / "fixtures/github/deployment_protection_rule.requested.json").read_bytes()


def edge_cipher(storage: StorageAccount, public: KekPublicKey | None) -> EnvelopeCipher:
    """The edge's transit cipher as `Services.edge_sealer` builds it, for one fixed public key."""
    return EnvelopeCipher(TransitKeys(storage, lambda tenant_id: public), cache_seconds=300)


def transit_rows(storage: StorageAccount, tenant: str) -> list[dict]:
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    return list(table.query_entities("PartitionKey eq @pk", parameters={"pk": TRANSIT_PARTITION}))


def foreign_public_key(kid: str) -> KekPublicKey:
    """An attacker's RSA key presented under the tenant's real key id (a substituted record)."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    return KekPublicKey(kid, numbers.n, numbers.e)


def test_the_edge_seals_without_key_vault_and_the_dispatcher_unwraps_each_transit_key_once(
    storage, keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)  # what onboarding records
    local_keyvault.reset_counts()
    edge = edge_cipher(storage, public)
    sealed = [edge.seal_json(tenant, SEAL_TABLE, tenant, f"e{i}", {"i": i}) for i in range(50)]
    assert local_keyvault.counts == {}, "sealing at the edge makes no Key Vault call at all"
    (data_key_id,) = {value.split(".")[1] for value in sealed}
    assert is_transit_id(data_key_id) and all(value.startswith("gk1.") for value in sealed)
    (row,) = transit_rows(storage, tenant)
    assert row["RowKey"] == data_key_id and row["kek_id"] == public.kid and row["algorithm"] == "RSA-OAEP-256"

    dispatcher = build_cipher(storage, keyvault_provider)  # another process: the private key stays in the vault
    opened = [dispatcher.open_json(tenant, SEAL_TABLE, tenant, f"e{i}", v) for i, v in enumerate(sealed)]
    assert opened == [{"i": i} for i in range(50)]
    assert local_keyvault.count("unwrapkey") == 1, "one unwrap per transit key, not per message"
    assert local_keyvault.count("wrapkey") == 0


def test_each_edge_process_registers_its_own_transit_key_and_every_one_opens(
    storage, keyvault_provider, keyvault_tenant
):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    values = [edge_cipher(storage, public).seal(tenant, "t", "p", f"r{i}", b"v%d" % i) for i in range(3)]
    assert len({value.split(".")[1] for value in values}) == 3 == len(transit_rows(storage, tenant))
    dispatcher = build_cipher(storage, keyvault_provider)
    assert [dispatcher.open(tenant, "t", "p", f"r{i}", v) for i, v in enumerate(values)] == [b"v0", b"v1", b"v2"]


def test_a_substituted_public_key_fails_closed_at_the_dispatcher(
    storage, keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    real = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    sealed = edge_cipher(storage, foreign_public_key(real.kid)).seal(tenant, SEAL_TABLE, tenant, "e1", b"secret")
    local_keyvault.reset_counts()
    with pytest.raises(SealedDataUnreadable) as caught:
        build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed)
    assert caught.value.reason == "unwrap-refused"
    assert local_keyvault.count("unwrapkey") == 1, "the vault was asked once, and refused (400)"
    assert b"secret" not in str(caught.value).encode()


def test_a_transit_key_naming_another_tenants_key_or_vault_is_gone(storage, keyvault_provider, keyvault_tenant):
    tenant, other = keyvault_tenant(), keyvault_tenant()
    others = KekPublicKey.from_jwk(keyvault_provider.public_jwk(other), other)  # a real key, the wrong tenant
    sealed = edge_cipher(storage, others).seal(tenant, SEAL_TABLE, tenant, "e1", b"x")
    with pytest.raises(SealedDataUnreadable) as caught:
        build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed)
    assert caught.value.reason == "key-gone"


@pytest.mark.parametrize("how", ["flipped", "deleted", "algorithm"])
def test_a_tampered_or_removed_transit_row_fails_closed(storage, keyvault_provider, keyvault_tenant, how):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    sealed = edge_cipher(storage, public).seal(tenant, SEAL_TABLE, tenant, "e1", b"x")
    (row,) = transit_rows(storage, tenant)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    if how == "flipped":
        wrapped = bytearray(base64.b64decode(row["wrapped_key"]))
        wrapped[7] ^= 0x01
        update = {"wrapped_key": base64.b64encode(bytes(wrapped)).decode()}
        table.update_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": row["RowKey"], **update}, UpdateMode.MERGE)
    elif how == "algorithm":
        update = {"algorithm": "RSA1_5"}
        table.update_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": row["RowKey"], **update}, UpdateMode.MERGE)
    else:
        table.delete_entity(TRANSIT_PARTITION, row["RowKey"])
    with pytest.raises(SealedDataUnreadable) as caught:
        build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed)
    assert caught.value.reason == {"flipped": "unwrap-refused", "deleted": "key-gone", "algorithm": "key-gone"}[how]


def test_a_queue_writer_cannot_forge_an_event_with_a_key_of_its_own(storage, keyvault_provider, keyvault_tenant):
    """The public key is public: anybody can wrap a key with it. What they cannot do without write access to
    the tenant's Keys table is register it, so a message under their own key does not open; nor does one
    under a registered id with a key they chose."""
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    legit = edge_cipher(storage, public).seal(tenant, SEAL_TABLE, tenant, "e0", b"real")
    registered_id = legit.split(".")[1]
    key = AESGCM.generate_key(bit_length=256)
    public.wrap(key)  # wrapping is possible for anybody; registering is not

    def forged(data_key_id: str, row: str) -> str:
        nonce = b"\x00" * 12
        body = AESGCM(key).encrypt(
            nonce, b'{"forged":1}', associated_data(data_key_id, tenant, SEAL_TABLE, tenant, row)
        )
        return f"gk1.{data_key_id}.{b64url(nonce)}.{b64url(body)}"

    dispatcher = build_cipher(storage, keyvault_provider)
    with pytest.raises(SealedDataUnreadable) as unregistered:
        dispatcher.open(tenant, SEAL_TABLE, tenant, "e1", forged(transit_id(), "e1"))
    assert unregistered.value.reason == "key-gone"
    with pytest.raises(SealedDataUnreadable) as reused:
        dispatcher.open(tenant, SEAL_TABLE, tenant, "e2", forged(registered_id, "e2"))
    assert reused.value.reason == "does-not-open"
    assert dispatcher.open(tenant, SEAL_TABLE, tenant, "e0", legit) == b"real"


def test_a_disabled_kek_stops_the_dispatcher_until_enabled_again(
    storage, keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    local_keyvault.set_enabled(tenant_key_name(tenant), False)
    sealed = edge_cipher(storage, public).seal(tenant, SEAL_TABLE, tenant, "e1", b"x")  # the edge cannot tell
    with pytest.raises(SealingUnavailable):  # transient: the message is retried, never opened or dropped
        build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed)
    local_keyvault.set_enabled(tenant_key_name(tenant), True)
    assert build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed) == b"x"


def test_nothing_is_sealed_when_the_transit_key_cannot_be_registered(keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    port = dead_port()
    down = StorageAccount(connection_string=outage_connection(blob=port, queue=port, table=port)).bounded()
    with pytest.raises(SealingUnavailable, match="transit key cannot be registered"):
        edge_cipher(down, public).seal(tenant, SEAL_TABLE, tenant, "e1", b"x")
    with pytest.raises(SealingUnavailable, match="no KEK public key"):
        edge_cipher(down, None).seal(tenant, SEAL_TABLE, tenant, "e1", b"x")


def test_a_tenant_without_a_keys_table_gets_one_on_its_first_transit_key(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    with pytest.raises(Exception):  # noqa: B017 - no Keys table yet
        transit_rows(storage, tenant)
    sealed = edge_cipher(storage, public).seal(tenant, "t", "p", "r", b"first")
    assert len(transit_rows(storage, tenant)) == 1
    assert build_cipher(storage, keyvault_provider).open(tenant, "t", "p", "r", sealed) == b"first"


def test_kek_rotation_rewraps_transit_keys_so_the_old_version_can_be_disabled(
    storage, keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    old = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    sealed = edge_cipher(storage, old).seal(tenant, SEAL_TABLE, tenant, "e1", b"in flight")
    new_kid = keyvault_provider.new_version(tenant)
    result = DataKeyRing(storage, keyvault_provider).rewrap(tenant)
    (row,) = transit_rows(storage, tenant)
    assert row["RowKey"] in result.rewrapped and row["kek_id"] == new_kid == result.kek_id
    local_keyvault.set_enabled(tenant_key_name(tenant), False, version=old.kid.rsplit("/", 1)[1])
    assert build_cipher(storage, keyvault_provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed) == b"in flight"
    assert keyvault_provider.public_jwk(tenant)["kid"] == new_kid


# -- through the product: routes, queue trigger, CLI -----------------------------------------------------------


def test_records_without_the_public_key_keep_the_old_path_and_both_kinds_of_message_open(
    storage_connection_string, tmp_path
):
    env = make_env(storage_connection_string, tmp_path / "keys")
    set_services(env.services)
    try:
        assert http_function("github_webhook")(github_request("deployment_protection_rule", DPR)).status_code == 202
        [old_style] = env.drain()
        jwk = LocalKeyProvider(str(tmp_path / "keys")).public_jwk(env.tenant_id)
        env.services.registry.set_kek_public(env.tenant_id, jwk)
        assert http_function("github_webhook")(github_request("deployment_protection_rule", DPR)).status_code == 202
        [transit_style] = env.drain()
    finally:
        set_services(None)
    ring = DataKeyRing(storage=env.storage, provider=LocalKeyProvider(str(tmp_path / "keys")))
    old_key = json.loads(old_style)["sealed"].split(".")[1]
    new_key = json.loads(transit_style)["sealed"].split(".")[1]
    assert old_key == ring.active_id(env.tenant_id) and not is_transit_id(old_key)
    assert is_transit_id(new_key)
    opened = [decode_message(env.services.sealer, text) for text in (old_style, transit_style)]
    assert opened[0].event.business_key == opened[1].event.business_key


def test_a_message_sealed_under_a_substituted_record_key_is_dead_lettered_and_audited(
    storage_connection_string, tmp_path
):
    from devstack.durable_api import DurableApiServer
    from gatekeeper.ingest.deadletter import DeadLetters
    from tests.support.worker_loop import run_on_worker

    env = make_env(storage_connection_string, tmp_path / "keys", record_kek_public=True)
    real = env.services.registry.get(env.tenant_id).kek_public
    forged = foreign_public_key(real["kid"]).to_jwk()
    env.services.registry.set_kek_public(env.tenant_id, forged)  # someone with write access to the registry
    set_services(env.services)
    try:
        assert http_function("github_webhook")(github_request("deployment_protection_rule", DPR)).status_code == 202
        [text] = env.drain()
        with DurableApiServer() as durable:
            function = http_function("dispatch_pipeline_events")
            run_on_worker(function(func.QueueMessage(id="x", body=text.encode()), client=durable.client_binding))
            assert durable.posts("/orchestrators/") == [], "nothing may start from an event that did not open"
    finally:
        set_services(None)
    event_id = json.loads(text)["id"]
    [letter] = [d for d in DeadLetters(env.storage).list("pipeline-events") if event_id in d.message]
    assert "integrity" in letter.reason and "unwrap-refused" in letter.reason
    [entry] = [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "integrity_failure"]
    assert entry.data["reason"] == "unwrap-refused" and entry.data["row_key"] == event_id


@pytest.fixture
def local_mode(monkeypatch, tmp_path, storage_connection_string):
    keys = tmp_path / "cli-keys"
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(keys))
    return LocalKeyProvider(keys), storage_connection_string


def test_the_cli_records_the_public_key_on_import_and_moves_it_on_kek_rotation(local_mode, storage, tmp_path, capsys):
    from gatekeeper.cli import main

    provider, connection = local_mode
    tenant = new_tenant_id()
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        f"tenants:\n  - tenant_id: {tenant}\n    display_name: Transit\n"
        f"    identities: [github:org:transit-{uuid.uuid4().hex[:12]}]\n"
    )
    assert main(["tenants", "import", str(tenants), "--storage-connection", connection]) == 0
    registry = TenantRegistry(storage)
    first = registry.get(tenant).kek_public
    assert first == provider.public_jwk(tenant) and first["kid"].startswith(f"local://keys/tenant-{tenant}/")
    assert "d" not in first and set(first) == {"kty", "kid", "n", "e"}

    public = KekPublicKey.from_jwk(first, tenant)
    sealed = edge_cipher(storage, public).seal(tenant, SEAL_TABLE, tenant, "e1", b"before rotation")
    capsys.readouterr()
    assert main(["keys", "rotate", "--tenant", tenant, "--new-kek-version", "--storage-connection", connection]) == 0
    out = capsys.readouterr().out
    second = TenantRegistry(storage).get(tenant).kek_public
    assert second["kid"] != first["kid"] and second == provider.public_jwk(tenant)
    assert f"ingestion now wraps transit keys with {second['kid']}" in out
    (row,) = transit_rows(storage, tenant)
    assert row["kek_id"] == second["kid"], "the transit key was re-wrapped under the new version"
    assert build_cipher(storage, provider).open(tenant, SEAL_TABLE, tenant, "e1", sealed) == b"before rotation"


def test_cli_import_without_usable_key_settings_imports_without_the_key_and_says_so(
    monkeypatch, tmp_path, storage_connection_string, storage, capsys
):
    from gatekeeper.cli import main

    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "keyvault")
    monkeypatch.delenv("GATEKEEPER_KEY_VAULT_URL", raising=False)
    tenant = new_tenant_id()
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(f"tenants:\n  - tenant_id: {tenant}\n    display_name: No key\n")
    assert main(["tenants", "import", str(tenants), "--storage-connection", storage_connection_string]) == 0
    assert "KEK public keys not recorded" in capsys.readouterr().err
    assert TenantRegistry(storage).get(tenant).kek_public is None


def test_keys_rotate_of_an_unregistered_tenant_records_nothing_and_creates_no_key(local_mode, capsys):
    from gatekeeper.cli import main

    provider, connection = local_mode
    tenant = new_tenant_id()
    assert main(["keys", "rotate", "--tenant", tenant, "--storage-connection", connection]) == 0
    assert "not in the registry; no KEK public key recorded" in capsys.readouterr().out
    assert not provider.path(tenant).exists()


def test_the_public_key_of_a_local_and_a_key_vault_kek_is_the_public_half(
    keyvault_provider, keyvault_tenant, local_keyvault, tmp_path
):
    tenant = keyvault_tenant()
    jwk = keyvault_provider.public_jwk(tenant)
    assert set(jwk) == {"kty", "kid", "n", "e"} and jwk["e"] == int_to_b64url(65537)
    assert KekPublicKey.from_jwk(jwk, tenant).n.bit_length() == 3072
    local = LocalKeyProvider(tmp_path / "k", key_size=2048)
    with pytest.raises(Exception, match="no local key yet"):
        local.public_jwk("fresh1")
    made = local.public_jwk("fresh1", create=True)
    assert made == local.public_jwk("fresh1") and made["kid"] == local.key_id("fresh1")


def test_creating_and_rotating_a_kek_may_take_longer_than_a_request_paths_budget(
    keyvault_provider, keyvault_tenant, local_keyvault
):
    """Key Vault generates the key pair before it answers create/rotate (seconds for RSA-3072 or an HSM); these
    are CLI operations, so they are not held to the 1 s read budget of the request paths."""
    tenant = keyvault_tenant()
    local_keyvault.key_generation_seconds = 1.5
    try:
        rotated = keyvault_provider.new_version(tenant)
        created = keyvault_provider.create_key(new_tenant_id(), size=2048)
    finally:
        local_keyvault.key_generation_seconds = 0.0
    assert rotated == keyvault_provider.public_jwk(tenant)["kid"] and "/keys/tenant-" in created
