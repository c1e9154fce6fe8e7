"""Builds the real Gatekeeper services for tests: Azurite storage, local tenant keys, a fresh registry."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

from gatekeeper.services import Services, build_services
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.registry import IDENTITY_PARTITION, TENANT_PARTITION

GITHUB_SECRET = "gh-webhook-secret-for-tests"
ADO_CHECK_SECRET = "ado-check-secret-for-tests"
ADO_HOOK_SECRET = "ado-hook-secret-for-tests"
API_KEY = "generic-api-key-for-tests"
CONNECTOR_SECRET = "connector-secret-for-tests"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

FIXTURE_IDENTITIES = (
    "github:org:octo-org",
    "github:org:octocoders",
    "github:org:terraform-test-github",
    "github:repo:codertocat/hello-world",
    "github:repo:lineville/elastic-machines-testing",
    "azure-devops:org:https://dev.azure.com/fabrikam/",
    "azure-devops:account:f844ec47-a9db-4511-8281-8b63f4eaf94e",
    # The App installations the fixture payloads name (callbacks use only registered installations).
    "github:installation:35490125",
    "github:installation:1",
    "github:installation:23154469",
)
CALLBACK_PREFIXES = ("https://ci.contoso.com/gatekeeper/",)


@dataclass
class GatekeeperEnv:
    services: Services
    tenant_id: str
    storage: StorageAccount

    def queue(self) -> QueueClient:
        return self.storage.queue(
            self.services.queue_name,
            message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )

    def queued_texts(self) -> list[str]:
        return [m.content.decode() for m in self.queue().peek_messages(max_messages=32)]

    def drain(self) -> list[str]:
        queue = self.queue()
        texts = []
        for message in queue.receive_messages(max_messages=32):
            texts.append(message.content.decode())
            queue.delete_message(message)
        return texts


def make_env(
    connection_string: str,
    key_dir: Path,
    *,
    extra_identities: tuple[str, ...] = (),
    extra_tenants: tuple[TenantRecord, ...] = (),
    extra_environ: dict[str, str] | None = None,
    record_kek_public: bool = False,
) -> GatekeeperEnv:
    storage = StorageAccount(connection_string=connection_string)
    tenant_id = "t" + uuid.uuid4().hex[:12]
    settings = Settings.from_environ(
        {
            "GATEKEEPER_TENANT_CACHE_SECONDS": "0",
            "GK_GITHUB": GITHUB_SECRET,
            "GK_ADO_CHECK": ADO_CHECK_SECRET,
            "GK_ADO_HOOK": ADO_HOOK_SECRET,
            "GK_API_KEY": API_KEY,
            "GK_CONNECTOR": CONNECTOR_SECRET,
            **(extra_environ or {}),
        }
    )
    services = build_services(
        settings,
        storage=storage,
        sealer=build_cipher(storage, LocalKeyProvider(str(key_dir))),
        queue_name="q" + uuid.uuid4().hex[:12],
        checkpoint_signer_factory=None,  # no checkpoints unless a test assigns a signer
    )
    registry = services.registry
    # The fixture payloads' organisations are claimed by exactly one tenant at a time.
    for entity in list(registry.table.list_entities()):
        if entity["PartitionKey"] in (IDENTITY_PARTITION, TENANT_PARTITION):
            registry.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    registry.import_records(
        [
            TenantRecord(
                tenant_id=tenant_id,
                display_name="Contoso",
                identities=FIXTURE_IDENTITIES + extra_identities,
                entra_tenant_ids=(ENTRA_TENANT,),
                callback_url_prefixes=CALLBACK_PREFIXES,
                secrets={
                    SecretPurpose.GITHUB_WEBHOOK: ("env:GK_GITHUB",),
                    SecretPurpose.AZURE_DEVOPS_CHECK: ("env:GK_ADO_CHECK",),
                    SecretPurpose.AZURE_DEVOPS_SERVICE_HOOK: ("env:GK_ADO_HOOK",),
                    SecretPurpose.GENERIC_API_KEY: ("env:GK_API_KEY",),
                    SecretPurpose.CONNECTOR: ("env:GK_CONNECTOR",),
                },
            ),
            *extra_tenants,
        ]
    )
    if record_kek_public:  # as `gatekeeper tenants import` does: the edge then seals with transit keys
        registry.set_kek_public(tenant_id, LocalKeyProvider(str(key_dir)).public_jwk(tenant_id, create=True))
    services.sink.ensure_queue()
    return GatekeeperEnv(services, tenant_id, storage)


def signed_connector(document: dict[str, Any] | bytes, secret: str = CONNECTOR_SECRET) -> bytes:
    """A connector queue message body signed over the whole envelope, as a connector relay sends it."""
    from gatekeeper.ingest.service import sign_envelope

    parsed = json.loads(document) if isinstance(document, bytes) else document
    return json.dumps(sign_envelope(secret.encode(), parsed)).encode()


def github_request(
    event: str,
    payload: dict[str, Any] | bytes,
    *,
    secret: str = GITHUB_SECRET,
    delivery: str | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    all_headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    all_headers.update(headers or {})
    return func.HttpRequest("POST", "http://localhost/api/github/webhook", headers=all_headers, body=body)


def app_functions() -> tuple[Any, ...]:
    """The real function app's functions, with their bindings (indexed once per process, shared with devstack)."""
    from devstack.functions_host import app_functions as indexed

    return indexed()


def registered_functions() -> dict[str, Any]:
    """The user functions of the real function app by name."""
    return {f.get_function_name(): f.get_user_function() for f in app_functions()}


def http_function(name: str):  # type: ignore[no-untyped-def]
    """The user function registered under `name` in the real function app (decorators and all)."""
    return registered_functions()[name]


def problem(response: func.HttpResponse) -> dict[str, Any]:
    assert response.mimetype == "application/problem+json", response.get_body()
    return json.loads(response.get_body())
