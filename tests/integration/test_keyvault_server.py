"""The local Key Vault answers the real azure-keyvault-keys clients over HTTPS with challenge auth."""

from __future__ import annotations

import hashlib

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from devstack.keyvault_server import KEY_VAULT_SCOPE, LocalKeyVault, StaticTokenCredential
from tests.keyvault_fixtures import local_keyvault  # noqa: F401

ALG = KeyWrapAlgorithm.rsa_oaep_256


def _client(vault: LocalKeyVault, credential=None) -> KeyClient:
    return KeyClient(vault.vault_url, credential or vault.credential(), **vault.client_kwargs())


def test_challenge_then_bearer_token(local_keyvault: LocalKeyVault):
    credential = local_keyvault.credential()
    key = _client(local_keyvault, credential).create_rsa_key("tenant-acme", size=2048)
    assert key.id.startswith(f"{local_keyvault.vault_url}/keys/tenant-acme/")
    assert local_keyvault.count("challenge") == 1  # one unauthenticated discovery request, then the token
    assert local_keyvault.count("create") == 1
    assert credential.scopes_requested == [KEY_VAULT_SCOPE]
    assert local_keyvault.api_versions, "the SDK sent its api-version"


def test_wrong_token_is_refused(local_keyvault: LocalKeyVault):
    local_keyvault.create_key("tenant-acme", size=2048)
    with pytest.raises(ClientAuthenticationError):
        _client(local_keyvault, StaticTokenCredential("not-the-token")).get_key("tenant-acme")
    assert local_keyvault.count("get") == 0


def test_get_key_returns_public_material_only(local_keyvault: LocalKeyVault):
    kid = local_keyvault.create_key("tenant-acme", size=3072, key_ops=["wrapKey", "unwrapKey"])
    key = _client(local_keyvault).get_key("tenant-acme")
    assert key.id == kid and key.key_type == "RSA"
    assert key.key_operations == ["wrapKey", "unwrapKey"]
    assert key.key.n and key.key.e and not key.key.d and not key.key.p
    assert _client(local_keyvault).get_key("tenant-acme", kid.rsplit("/", 1)[1]).id == kid


def test_wrap_locally_unwrap_remotely(local_keyvault: LocalKeyVault):
    local_keyvault.create_key("tenant-acme", size=2048, key_ops=["wrapKey", "unwrapKey"])
    credential, kwargs = local_keyvault.credential(), local_keyvault.client_kwargs()
    key = _client(local_keyvault).get_key("tenant-acme")
    wrapped = CryptographyClient(key, credential, **kwargs).wrap_key(ALG, b"d" * 32)
    assert local_keyvault.count("wrapkey") == 0  # public-key operation done by the SDK itself
    by_id = CryptographyClient(wrapped.key_id, credential, **kwargs)
    assert by_id.unwrap_key(ALG, wrapped.encrypted_key).key == b"d" * 32
    assert local_keyvault.count("unwrapkey") == 1
    # remote wrap also works (a client built from a bare id before it has fetched the key)
    remote = local_keyvault.handle(
        "POST", f"/keys/tenant-acme/{key.properties.version}/wrapkey", {"alg": "RSA-OAEP-256", "value": "ZGRkZA"}
    )
    assert remote[0] == 200 and remote[1]["kid"] == key.id


def test_sign_rsa_and_ec_verifiable_with_public_keys(local_keyvault: LocalKeyVault):
    credential, kwargs = local_keyvault.credential(), local_keyvault.client_kwargs()
    digest = hashlib.sha256(b"checkpoint 42 root abc").digest()

    ec_id = local_keyvault.create_key("audit-checkpoint", "EC", curve="P-256")
    ec_client = CryptographyClient(ec_id, credential, **kwargs)
    signature = ec_client.sign(SignatureAlgorithm.es256, digest).signature
    assert len(signature) == 64 and local_keyvault.count("sign") == 1
    ec_key = _client(local_keyvault).get_key("audit-checkpoint").key
    point = ec.EllipticCurvePublicNumbers(
        int.from_bytes(ec_key.x, "big"), int.from_bytes(ec_key.y, "big"), ec.SECP256R1()
    ).public_key()
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    point.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if invalid
    assert ec_client.verify(SignatureAlgorithm.es256, digest, signature).is_valid
    assert not ec_client.verify(SignatureAlgorithm.es256, hashlib.sha256(b"other").digest(), signature).is_valid

    rsa_id = local_keyvault.create_key("signer", size=2048)
    rsa_client = CryptographyClient(rsa_id, credential, **kwargs)
    jwk = _client(local_keyvault).get_key("signer").key
    rsa_public = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    for algorithm, pad in (
        (SignatureAlgorithm.rs256, padding.PKCS1v15()),
        (SignatureAlgorithm.ps256, padding.PSS(padding.MGF1(hashes.SHA256()), 32)),
    ):
        rsa_signature = rsa_client.sign(algorithm, digest).signature
        rsa_public.verify(rsa_signature, digest, pad, Prehashed(hashes.SHA256()))  # raises if invalid


def test_rotate_and_list_versions(local_keyvault: LocalKeyVault):
    client = _client(local_keyvault)
    first = client.create_rsa_key("tenant-acme", size=2048)
    second = client.rotate_key("tenant-acme")
    assert second.id != first.id and client.get_key("tenant-acme").id == second.id
    versions = {p.version for p in client.list_properties_of_key_versions("tenant-acme")}
    assert versions == {first.properties.version, second.properties.version}


def test_delete_makes_every_version_unusable(local_keyvault: LocalKeyVault):
    client = _client(local_keyvault)
    key = client.create_rsa_key("tenant-acme", size=2048)
    wrapped = CryptographyClient(key, local_keyvault.credential(), **local_keyvault.client_kwargs()).wrap_key(
        ALG, b"d" * 32
    )
    deleted = client.begin_delete_key("tenant-acme").result()
    assert deleted.name == "tenant-acme" and deleted.recovery_id
    with pytest.raises(ResourceNotFoundError):
        client.get_key("tenant-acme")
    by_id = CryptographyClient(key.id, local_keyvault.credential(), **local_keyvault.client_kwargs())
    with pytest.raises(ResourceNotFoundError):
        by_id.unwrap_key(ALG, wrapped.encrypted_key)


def test_disabled_key_and_outages_are_http_errors(local_keyvault: LocalKeyVault):
    kid = local_keyvault.create_key("tenant-acme", size=2048)
    client = CryptographyClient(kid, local_keyvault.credential(), **local_keyvault.client_kwargs())
    wrapped = client.wrap_key(ALG, b"d" * 32)
    local_keyvault.set_enabled("tenant-acme", False)
    with pytest.raises(HttpResponseError) as disabled:
        client.unwrap_key(ALG, wrapped.encrypted_key)
    assert disabled.value.status_code == 403
    local_keyvault.set_enabled("tenant-acme", True)
    local_keyvault.outage = "unavailable"
    with pytest.raises(HttpResponseError) as outage:
        client.unwrap_key(ALG, wrapped.encrypted_key)
    assert outage.value.status_code == 503
    local_keyvault.outage = None
    assert client.unwrap_key(ALG, wrapped.encrypted_key).key == b"d" * 32


def test_bad_ciphertext_is_a_400(local_keyvault: LocalKeyVault):
    kid = local_keyvault.create_key("tenant-acme", size=2048)
    client = CryptographyClient(kid, local_keyvault.credential(), **local_keyvault.client_kwargs())
    with pytest.raises(HttpResponseError) as bad:
        client.unwrap_key(ALG, b"\x00" * 256)
    assert bad.value.status_code == 400
