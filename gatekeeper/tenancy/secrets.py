"""Resolve tenant secret references to secret bytes at the moment they are needed.

`env:NAME` reads an app setting. In Azure that setting is a Key Vault reference
(`@Microsoft.KeyVault(SecretUri=...)`), resolved by the platform, so the secret never sits in our tables.
These names are per tenant and chosen by the admin, so they are deliberately not in gatekeeper.settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gatekeeper.tenancy.model import SecretPurpose, TenantRecord


class SecretResolver:
    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = environ if environ is not None else os.environ

    def resolve(self, tenant: TenantRecord, purpose: SecretPurpose) -> list[bytes]:
        """Every configured secret for the purpose (several during rotation); missing ones are skipped."""
        values: list[bytes] = []
        for ref in tenant.secrets.get(purpose, ()):
            value = self._environ.get(ref.removeprefix("env:"))
            if value:
                values.append(value.encode("utf-8"))
        return values

    def reference(self, ref: str) -> str | None:
        """The value behind one `env:NAME` reference (a PSA credential in `psa.credentials`), or None."""
        if not ref.startswith("env:"):
            return None
        return self._environ.get(ref.removeprefix("env:")) or None
