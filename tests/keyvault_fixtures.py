"""Fixtures for anything that seals data: a local Key Vault server, key providers and ciphers.

Import the ones you need into a test module (`from tests.keyvault_fixtures import local_keyvault, ...`);
they build on the session `azurite` fixture from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from devstack.keyvault_server import LocalKeyVault
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.keys import KeyVaultKeyProvider, LocalKeyProvider, build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount


def new_tenant_id() -> str:
    """A fresh valid tenant id, so tests sharing one Azurite never meet each other's tables."""
    return "t" + uuid.uuid4().hex[:15]


@pytest.fixture
def local_keyvault() -> Iterator[LocalKeyVault]:
    """A running local Key Vault (HTTPS on 127.0.0.1) with per-operation call counters."""
    with LocalKeyVault() as vault:
        yield vault


@pytest.fixture
def keyvault_provider(local_keyvault: LocalKeyVault) -> KeyVaultKeyProvider:
    """The production Key Vault provider, pointed at the local server with its CA and a static token."""
    return KeyVaultKeyProvider(local_keyvault.vault_url, local_keyvault.credential(), **local_keyvault.client_kwargs())


@pytest.fixture
def keyvault_tenant(local_keyvault: LocalKeyVault) -> Callable[[], str]:
    """Make a tenant id whose KEK (`tenant-<id>`, RSA-3072, wrap/unwrap only) exists in the local vault."""

    def make() -> str:
        tenant = new_tenant_id()
        local_keyvault.create_key(tenant_key_name(tenant), size=3072, key_ops=["wrapKey", "unwrapKey"])
        return tenant

    return make


@pytest.fixture
def local_key_provider(tmp_path) -> LocalKeyProvider:
    return LocalKeyProvider(tmp_path / "keys")


@pytest.fixture
def storage(storage_connection_string: str) -> StorageAccount:
    return StorageAccount(connection_string=storage_connection_string)


@pytest.fixture
def keyvault_cipher(storage: StorageAccount, keyvault_provider: KeyVaultKeyProvider) -> EnvelopeCipher:
    """A product cipher on the local Key Vault and Azurite (default 300 s cache)."""
    return build_cipher(storage, keyvault_provider)


@pytest.fixture
def local_cipher(storage: StorageAccount, local_key_provider: LocalKeyProvider) -> EnvelopeCipher:
    """A product cipher on local JWK files and Azurite, as in development and the demo."""
    return build_cipher(storage, local_key_provider)
