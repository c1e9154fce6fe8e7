"""LocalKeyProvider: RSA-3072 JWK Sets on disk behind the real CryptographyClient.from_jwk."""

from __future__ import annotations

import json
import stat

import pytest
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.hashes import SHA256

from gatekeeper.services import build_key_provider
from gatekeeper.settings import Settings
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable
from gatekeeper.store.keys import LocalKeyProvider

ALG = KeyWrapAlgorithm.rsa_oaep_256


def _b64u_int(text: str) -> int:
    import base64

    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_key_created_on_first_use_with_private_file_mode(tmp_path):
    provider = LocalKeyProvider(tmp_path / "keys")
    client = provider.crypto_client("acme")
    assert isinstance(client, CryptographyClient)
    path = tmp_path / "keys" / "acme.jwk.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    jwk_set = json.loads(path.read_text())
    (jwk,) = jwk_set["keys"]
    assert jwk["kty"] == "RSA" and jwk["key_ops"] == ["wrapKey", "unwrapKey", "encrypt", "decrypt"]
    assert _b64u_int(jwk["n"]).bit_length() == 3072
    assert client.key_id == jwk["kid"] == provider.key_id("acme")
    assert jwk["kid"].startswith("local://keys/tenant-acme/")
    assert not list((tmp_path / "keys").glob(".*.tmp")), "temporary files are cleaned up"


def test_wrap_is_standard_rsa_oaep_256(tmp_path):
    """The wrapped key is plain RSA-OAEP-256 under the JWK's public key, as Key Vault would produce it."""
    provider = LocalKeyProvider(tmp_path)
    wrapped = provider.crypto_client("acme").wrap_key(ALG, b"k" * 32)
    jwk = json.loads(provider.path("acme").read_text())["keys"][0]
    public = RSAPublicNumbers(_b64u_int(jwk["e"]), _b64u_int(jwk["n"])).public_key()
    assert wrapped.encrypted_key != b"k" * 32 and len(wrapped.encrypted_key) == 384
    assert public.key_size == 3072
    # unwrap through the same API, by versioned id
    unwrapped = provider.crypto_client_for("acme", wrapped.key_id).unwrap_key(ALG, wrapped.encrypted_key)
    assert unwrapped.key == b"k" * 32
    # and the key really is OAEP/SHA-256: a second encryption with cryptography unwraps through the provider
    other = public.encrypt(b"z" * 32, padding.OAEP(padding.MGF1(SHA256()), SHA256(), None))
    assert provider.crypto_client_for("acme", wrapped.key_id).unwrap_key(ALG, other).key == b"z" * 32


def test_rotation_adds_a_version_and_keeps_the_old_one(tmp_path):
    provider = LocalKeyProvider(tmp_path)
    first = provider.crypto_client("acme")
    wrapped = first.wrap_key(ALG, b"a" * 32)
    second_id = provider.new_version("acme")
    assert second_id != first.key_id and provider.key_id("acme") == second_id
    assert provider.crypto_client_for("acme", str(first.key_id)).unwrap_key(ALG, wrapped.encrypted_key).key == b"a" * 32
    assert len(json.loads(provider.path("acme").read_text())["keys"]) == 2
    assert stat.S_IMODE(provider.path("acme").stat().st_mode) == 0o600


def test_versions_of_another_tenant_are_refused(tmp_path):
    provider = LocalKeyProvider(tmp_path)
    acme_id = provider.key_id("acme")
    provider.key_id("contoso")
    with pytest.raises(KeyGone):
        provider.crypto_client_for("contoso", acme_id)


def test_destroy_shreds_and_does_not_recreate_for_reading(tmp_path):
    provider = LocalKeyProvider(tmp_path)
    key_id = provider.key_id("acme")
    assert provider.destroy("acme") is True
    with pytest.raises(KeyGone):
        provider.crypto_client_for("acme", key_id)
    assert not provider.path("acme").exists(), "reading must never create a replacement key"
    assert provider.destroy("acme") is False


def test_damaged_key_file_is_unavailable_not_replaced(tmp_path):
    provider = LocalKeyProvider(tmp_path)
    provider.path("acme").write_text("{not json")
    with pytest.raises(KeyServiceUnavailable):
        provider.crypto_client("acme")
    assert provider.path("acme").read_text() == "{not json"


@pytest.mark.parametrize("tenant", ["../etc", "A", "ab", "x" * 40])
def test_tenant_ids_are_validated_before_touching_the_disk(tmp_path, tenant):
    provider = LocalKeyProvider(tmp_path)
    with pytest.raises(ValueError):
        provider.crypto_client(tenant)
    assert list(tmp_path.iterdir()) == []


def test_provider_from_settings_local(tmp_path):
    settings = Settings.from_environ({"GATEKEEPER_KEY_MODE": "local", "GATEKEEPER_LOCAL_KEY_DIR": str(tmp_path)})
    provider = build_key_provider(settings, credential=lambda: None)  # type: ignore[arg-type,return-value]
    assert isinstance(provider, LocalKeyProvider) and provider.key_dir == tmp_path
