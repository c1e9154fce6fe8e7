"""Envelope encryption cost: sealing/opening against bare AES-GCM, and Key Vault calls per tenant.

Runs the product cipher on Azurite and the local Key Vault server (real SDK clients); the baselines are bare
`AESGCM.encrypt/decrypt` of the same payload and the number of tenants, measured in the same run.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import Ratio, best_of, rate
from devstack.azurite import start_azurite
from devstack.keyvault_server import LocalKeyVault
from gatekeeper.store.keys import KeyVaultKeyProvider, build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(512)  # a typical sealed event payload or callback handle
COUNT = 10_000
TENANTS = ("bencha", "benchb", "benchc")


def run() -> list[Ratio]:
    azurite = start_azurite(ROOT)
    try:
        with LocalKeyVault() as vault:
            return _measure(StorageAccount(connection_string=azurite.connection_string), vault)
    finally:
        azurite.stop()


def _measure(storage: StorageAccount, vault: LocalKeyVault) -> list[Ratio]:
    suffix = os.urandom(3).hex()
    tenants = [t + suffix for t in TENANTS]
    for tenant in tenants:
        vault.create_key(tenant_key_name(tenant), size=3072, key_ops=["wrapKey", "unwrapKey"])
    provider = KeyVaultKeyProvider(vault.vault_url, vault.credential(), **vault.client_kwargs())
    build_cipher(storage, provider).seal(tenants[0], "t", "p", "r", b"x")  # data keys exist before the run
    for tenant in tenants[1:]:
        build_cipher(storage, provider).seal(tenant, "t", "p", "r", b"x")
    vault.reset_counts()

    cipher = build_cipher(storage, provider)  # cold cache, as in a new process
    sealed = [cipher.seal(tenants[n % 3], "t", "p", str(n), PAYLOAD) for n in range(COUNT)]
    for n, value in enumerate(sealed):
        cipher.open(tenants[n % 3], "t", "p", str(n), value)
    unwraps = vault.count("unwrapkey")

    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    raw = aead.encrypt(nonce, PAYLOAD, b"aad")
    one = sealed[0]

    def seal() -> None:
        cipher.seal(tenants[0], "t", "p", "0", PAYLOAD)

    def raw_seal() -> None:
        aead.encrypt(os.urandom(12), PAYLOAD, b"aad")

    def open_one() -> None:
        cipher.open(tenants[0], "t", "p", "0", one)

    def raw_open() -> None:
        aead.decrypt(nonce, raw, b"aad")

    seal_rate, raw_seal_rate, open_rate, raw_open_rate = (
        best_of(functools.partial(rate, fn, 5_000)) for fn in (seal, raw_seal, open_one, raw_open)
    )
    return [
        Ratio("seal rate vs bare AES-GCM encrypt", seal_rate, raw_seal_rate, "ops/s", ""),
        Ratio("open rate vs bare AES-GCM decrypt", open_rate, raw_open_rate, "ops/s", ""),
        Ratio(
            f"Key Vault unwraps for {COUNT:,} seals+opens vs tenants (one per tenant per cache period)",
            unwraps,
            len(tenants),
            "calls",
            "<= 1",
            higher_is_better=False,
        ),
    ]
