"""A whole Gatekeeper on this machine: Azurite, local tenant keys, a seeded registry, local secrets.

`make demo` and the benchmarks run on it; in Azure the same `Services` are built from app settings
(gatekeeper.services.build_services), so only where things live differs, not the code that runs.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from devstack.azurite import PROJECT_ROOT, Azurite, start_azurite
from gatekeeper.services import Services, build_services
from gatekeeper.settings import Settings
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.registry import load_tenant_file

DEFAULT_TENANTS = PROJECT_ROOT / "examples" / "tenants.yaml"


@dataclass
class LocalStack:
    azurite: Azurite
    services: Services
    key_dir: Path
    local_secrets: dict[str, str] = field(default_factory=dict)

    @property
    def storage(self) -> StorageAccount:
        return self.services.storage

    def secret(self, reference: str) -> str:
        return self.local_secrets[reference.removeprefix("env:")]

    def stop(self) -> None:
        self.azurite.stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_stack(tenants_file: Path = DEFAULT_TENANTS, key_dir: Path | None = None) -> LocalStack:
    """Start Azurite, import the tenants and give every secret they reference a fresh random value."""
    azurite = start_azurite()
    try:
        storage = StorageAccount(connection_string=azurite.connection_string)
        keys = key_dir or Path(tempfile.mkdtemp(prefix="gatekeeper-keys-"))
        records = load_tenant_file(tenants_file.read_text(), filename=str(tenants_file))
        local_secrets = {
            ref.removeprefix("env:"): secrets.token_urlsafe(24)
            for record in records
            for refs in (
                *record.secrets.values(),
                (record.slack.bot_token, *record.slack.signing_secrets) if record.slack else (),
            )
            for ref in refs
        }
        settings = Settings.from_environ(
            {
                "GATEKEEPER_STORAGE_CONNECTION": azurite.connection_string,
                "GATEKEEPER_KEY_MODE": "local",
                "GATEKEEPER_LOCAL_KEY_DIR": str(keys),
                **local_secrets,  # the values of the tenants' `env:` secret references
            }
        )
        services = build_services(settings, storage=storage, checkpoint_signer_factory=None)  # the demo assigns one
        services.registry.import_records(records)
        services.sink.ensure_queue()
        return LocalStack(azurite, services, keys, local_secrets)
    except BaseException:
        azurite.stop()
        raise
