"""Tenant key-encryption keys (KEKs): where they live and how to get a `CryptographyClient` for them.

Both providers hand out the same `azure.keyvault.keys.crypto.CryptographyClient`, so the envelope code runs
one path: in Azure on the tenant's customer-managed Key Vault key (`tenant-<tenantId>`), locally and in the
demo on a JSON Web Key file through `CryptographyClient.from_jwk`. The factories at the bottom build the
`EnvelopeCipher` the rest of the product uses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyVaultKey, KeyVaultKeyIdentifier
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekeeper.encoding import int_to_b64url, jwk_binary_fields
from gatekeeper.store import budgets
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable, classify
from gatekeeper.store.keyring import DataKeyRing
from gatekeeper.store.tables import StorageAccount, validate_tenant_id

TENANT_KEY_PREFIX = "tenant-"
LOCAL_KEY_OPS = ["wrapKey", "unwrapKey", "encrypt", "decrypt"]
LOCAL_KEY_SIZE = 3072
DEFAULT_CACHE_SECONDS = 300


def tenant_key_name(tenant_id: str) -> str:
    """The Key Vault key name for a tenant's KEK: `tenant-<tenantId>`."""
    return TENANT_KEY_PREFIX + validate_tenant_id(tenant_id)


class TenantKeyProvider(ABC):
    """Hands out CryptographyClients for a tenant's KEK: the current version to wrap, any version to unwrap."""

    @abstractmethod
    def key_id(self, tenant_id: str) -> str:
        """The versioned id of the tenant's current KEK (stored with every data key it wraps)."""

    @abstractmethod
    def crypto_client(self, tenant_id: str) -> CryptographyClient:
        """A client on the current KEK version; its `key_id` is the versioned id."""

    @abstractmethod
    def crypto_client_for(self, tenant_id: str, key_id: str) -> CryptographyClient:
        """A client on one specific version, which must belong to this tenant's key (else KeyGone)."""

    @abstractmethod
    def new_version(self, tenant_id: str) -> str:
        """Rotate the KEK: make a new current version and return its versioned id."""

    @abstractmethod
    def public_jwk(self, tenant_id: str, *, create: bool = False) -> dict[str, str]:
        """The current KEK version's public key as a JWK {kty, kid, n, e} (for the tenant record). KeyGone when
        the tenant has no KEK; `create` makes a local key then (onboarding), Key Vault keys are never made here."""


class KeyVaultKeyProvider(TenantKeyProvider):
    """Customer-managed keys in Azure Key Vault: one RSA key `tenant-<tenantId>` per tenant.

    The current version comes from `KeyClient.get_key`; wrapping then runs locally on the public key that
    call returned, unwrapping runs in Key Vault (the private key never leaves it).

    Sealing sits on request paths, so the clients get bounded timeouts and retry budgets
    (gatekeeper.store.budgets) unless `client_kwargs` says otherwise."""

    def __init__(self, vault_url: str, credential: TokenCredential, **client_kwargs: Any) -> None:
        self._vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._client_kwargs = {**budgets.keyvault_client_options(), **client_kwargs}
        self._keys = KeyClient(self._vault_url, credential, **self._client_kwargs)

    def __repr__(self) -> str:
        return f"KeyVaultKeyProvider({self._vault_url!r})"

    def current_key(self, tenant_id: str) -> KeyVaultKey:
        name = tenant_key_name(tenant_id)
        try:
            return self._keys.get_key(name)
        except Exception as exc:
            raise classify(exc, f"tenant {tenant_id}: get key {name}") from exc

    def key_id(self, tenant_id: str) -> str:
        return str(self.current_key(tenant_id).id)

    def crypto_client(self, tenant_id: str) -> CryptographyClient:
        return CryptographyClient(self.current_key(tenant_id), self._credential, **self._client_kwargs)

    def public_jwk(self, tenant_id: str, *, create: bool = False) -> dict[str, str]:
        key = self.current_key(tenant_id)
        # JsonWebKey sets its members dynamically (n and e are big-endian bytes)
        kty, n_bytes, e_bytes = (getattr(key.key, name, None) for name in ("kty", "n", "e"))
        if kty not in ("RSA", "RSA-HSM") or not n_bytes or not e_bytes or not key.id:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: the KEK is not an RSA key with a versioned id")
        n, e = int.from_bytes(n_bytes, "big"), int.from_bytes(e_bytes, "big")
        return {"kty": "RSA", "kid": str(key.id), "n": int_to_b64url(n), "e": int_to_b64url(e)}

    def crypto_client_for(self, tenant_id: str, key_id: str) -> CryptographyClient:
        try:
            parsed = KeyVaultKeyIdentifier(key_id)
        except ValueError as exc:
            raise KeyGone(f"tenant {tenant_id}: stored key id is not a Key Vault key id") from exc
        if (
            parsed.vault_url.rstrip("/").lower() != self._vault_url.lower()
            or parsed.name != tenant_key_name(tenant_id)
            or not parsed.version
        ):
            raise KeyGone(f"tenant {tenant_id}: stored key id does not name this tenant's key in this vault")
        return CryptographyClient(key_id, self._credential, **self._client_kwargs)

    def new_version(self, tenant_id: str) -> str:
        name = tenant_key_name(tenant_id)
        try:
            return str(self._keys.rotate_key(name, **budgets.admin_call_options()).id)
        except Exception as exc:
            raise classify(exc, f"tenant {tenant_id}: rotate key {name}") from exc

    def create_key(self, tenant_id: str, size: int = LOCAL_KEY_SIZE) -> str:
        """Onboarding helper: create the tenant's RSA KEK (wrap/unwrap only); returns its versioned id."""
        name = tenant_key_name(tenant_id)
        try:
            key = self._keys.create_rsa_key(
                name, size=size, key_operations=["wrapKey", "unwrapKey"], **budgets.admin_call_options()
            )
        except Exception as exc:
            raise classify(exc, f"tenant {tenant_id}: create key {name}") from exc
        return str(key.id)


class LocalKeyProvider(TenantKeyProvider):
    """Development keys: an RSA-3072 JWK Set per tenant in `key_dir/<tenant>.jwk.json` (mode 0600).

    The file is a standard JWK Set (RFC 7517); the last key is the current version, earlier ones stay so
    data keys wrapped under them still unwrap. Removing the file crypto-shreds the tenant's data."""

    def __init__(self, key_dir: str | os.PathLike[str], *, key_size: int = LOCAL_KEY_SIZE) -> None:
        self.key_dir = Path(key_dir)
        self._key_size = key_size
        self._memo: dict[tuple[str, bytes], CryptographyClient] = {}
        self._memo_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalKeyProvider({str(self.key_dir)!r})"

    def path(self, tenant_id: str) -> Path:
        return self.key_dir / f"{validate_tenant_id(tenant_id)}.jwk.json"

    def _kid(self, tenant_id: str, version: str) -> str:
        return f"local://keys/{tenant_key_name(tenant_id)}/{version}"

    def _new_jwk(self, tenant_id: str) -> dict[str, Any]:
        private = rsa.generate_private_key(public_exponent=65537, key_size=self._key_size)
        numbers = private.private_numbers()
        public = numbers.public_numbers
        values = {
            "n": public.n,
            "e": public.e,
            "d": numbers.d,
            "p": numbers.p,
            "q": numbers.q,
            "dp": numbers.dmp1,
            "dq": numbers.dmq1,
            "qi": numbers.iqmp,
        }
        jwk: dict[str, Any] = {"kty": "RSA", "kid": self._kid(tenant_id, secrets.token_hex(16))}
        jwk.update({name: int_to_b64url(value) for name, value in values.items()})
        jwk["key_ops"] = list(LOCAL_KEY_OPS)
        return jwk

    def _read(self, tenant_id: str) -> list[dict[str, Any]] | None:
        try:
            text = self.path(tenant_id).read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: local key file cannot be read") from exc
        try:
            keys = json.loads(text)["keys"]
            if not isinstance(keys, list) or not keys:
                raise ValueError("empty key set")
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: local key file is not a JWK Set") from exc
        return keys

    def _write_new(self, tenant_id: str, keys: list[dict[str, Any]], *, replace: bool) -> bool:
        """Write the key set through a 0600 temp file; when not replacing, lose gracefully to a racer."""
        self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.path(tenant_id)
        fd, temp = tempfile.mkstemp(dir=self.key_dir, prefix=f".{tenant_id}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"keys": keys}, handle)
            if replace:
                os.replace(temp, target)
                return True
            try:
                os.link(temp, target)  # atomic create-if-absent: two processes cannot both create the key
            except FileExistsError:
                return False
            return True
        finally:
            Path(temp).unlink(missing_ok=True)

    def _current_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        keys = self._read(tenant_id)
        if keys is None:
            self._write_new(tenant_id, [self._new_jwk(tenant_id)], replace=False)
            keys = self._read(tenant_id)
            if keys is None:
                raise KeyServiceUnavailable(f"tenant {tenant_id}: local key file could not be created")
        return keys

    def _client(self, jwk: dict[str, Any]) -> CryptographyClient:
        """A from_jwk client. Loading an RSA-3072 private key is slow (validation), so clients are memoised by
        kid and a digest of the JWK; callers always re-read the file first, so a destroyed key is never used."""
        memo_key = (str(jwk["kid"]), hashlib.sha256(json.dumps(jwk, sort_keys=True).encode()).digest())
        with self._memo_lock:
            client = self._memo.get(memo_key)
        if client is not None:
            return client
        fields: dict[str, Any] = {"kid": jwk["kid"], "kty": jwk["kty"], "key_ops": list(LOCAL_KEY_OPS)}
        fields.update(jwk_binary_fields(jwk))
        client = CryptographyClient.from_jwk(JsonWebKey(**fields))
        with self._memo_lock:
            if len(self._memo) >= 256:
                self._memo.clear()
            self._memo[memo_key] = client
        return client

    def key_id(self, tenant_id: str) -> str:
        return str(self._current_keys(tenant_id)[-1]["kid"])

    def crypto_client(self, tenant_id: str) -> CryptographyClient:
        return self._client(self._current_keys(tenant_id)[-1])

    def public_jwk(self, tenant_id: str, *, create: bool = False) -> dict[str, str]:
        keys = self._current_keys(tenant_id) if create else self._read(tenant_id)
        if not keys:
            raise KeyGone(f"tenant {tenant_id}: no local key yet")
        jwk = keys[-1]
        return {"kty": "RSA", "kid": str(jwk["kid"]), "n": str(jwk["n"]), "e": str(jwk["e"])}

    def crypto_client_for(self, tenant_id: str, key_id: str) -> CryptographyClient:
        keys = self._read(tenant_id)  # never creates: a missing file means the tenant's key was destroyed
        if keys is None:
            raise KeyGone(f"tenant {tenant_id}: local key file does not exist")
        for jwk in keys:
            if jwk.get("kid") == key_id:
                return self._client(jwk)
        raise KeyGone(f"tenant {tenant_id}: local key has no version matching the stored key id")

    def new_version(self, tenant_id: str) -> str:
        self._current_keys(tenant_id)
        jwk = self._new_jwk(tenant_id)
        # read-modify-write under a lock: a version lost to a racing rotation would shred data keys
        with open(self.key_dir / f".{tenant_id}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read(tenant_id) or []
            self._write_new(tenant_id, [*keys, jwk], replace=True)
        return str(jwk["kid"])

    def destroy(self, tenant_id: str) -> bool:
        """Crypto-shred a tenant locally: remove its key file. True when there was one."""
        try:
            self.path(tenant_id).unlink()
        except FileNotFoundError:
            return False
        return True


def build_cipher(
    storage: StorageAccount,
    provider: TenantKeyProvider,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    *,
    max_cached_keys: int = 1024,
) -> EnvelopeCipher:
    """The product's cipher: data keys in each tenant's Keys table, wrapped by the provider's KEKs. The Keys
    table is read on request paths (every seal after a cache miss), so it is read with bounded budgets."""
    return EnvelopeCipher(
        DataKeyRing(storage.bounded(), provider), cache_seconds=cache_seconds, max_cached_keys=max_cached_keys
    )
