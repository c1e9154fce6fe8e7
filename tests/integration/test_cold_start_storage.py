"""A new instance spends no create round trip before its first answer: the registry's lookups create no
table, and the event sink creates its queue only when a send finds it missing."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.ingest.queue import QueueEventSink, decode_message
from gatekeeper.services import Services
from gatekeeper.store.tables import SharedTable, StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from tests.support.gatekeeper_env import make_env


def table_exists(storage: StorageAccount, name: str) -> bool:
    return any(t.name == name for t in storage.tables.list_tables())


def queue_exists(storage: StorageAccount, name: str) -> bool:
    try:
        storage.queue(name).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_lookups_in_a_registry_without_its_table_find_nothing_and_create_nothing(storage_connection_string):
    storage = StorageAccount(connection_string=storage_connection_string)
    TenantRegistry(storage).table.delete_table()  # as before any tenant was imported
    fresh = StorageAccount(connection_string=storage_connection_string)
    registry = TenantRegistry(fresh, cache_seconds=0)
    assert registry.resolve(["github:org:octo-org"]) is None and registry.get("contoso") is None
    assert not table_exists(fresh, SharedTable.TENANTS)
    registry.import_records([TenantRecord(tenant_id="contoso", display_name="Contoso", identities=("github:org:a",))])
    assert registry.resolve(["github:org:a"]).tenant_id == "contoso"  # writes create it
    registry.table.delete_table()


def event(tenant_id: str) -> PipelineEvent:
    return PipelineEvent(tenant_id=tenant_id, source=EventSource.GENERIC, kind=EventKind.GATE_REQUEST, run_id="1")


@pytest.mark.parametrize("existing", [False, True])
def test_the_sink_creates_its_queue_on_the_first_send_that_finds_it_missing(
    storage_connection_string, tmp_path, existing
):
    env = make_env(storage_connection_string, tmp_path / "keys")
    name = "q" + uuid.uuid4().hex[:12]
    runtime = Services(env.services.settings, storage=env.storage, sealer=env.services.sealer, queue_name=name)
    if existing:
        env.storage.queue(name).create_queue()
    sink = runtime.sink
    assert queue_exists(env.storage, name) is existing  # building the sink created nothing
    sink.submit(event(env.tenant_id), "e1")
    sink.submit(event(env.tenant_id), "e2")
    texts = [m.content.decode() for m in sink.queue.receive_messages(max_messages=8)]
    assert sorted(decode_message(env.services.sealer, t).event_id for t in texts) == ["e1", "e2"]
    assert isinstance(sink, QueueEventSink)


class CountingRegistry(TenantRegistry):
    """The real registry over Azurite, counting the identity rows it reads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.identity_reads: list[str] = []

    def _read_identity(self, identity: str) -> str | None:
        self.identity_reads.append(identity)
        return super()._read_identity(identity)


@pytest.mark.parametrize("signed", [True, False])
def test_a_request_whose_first_tenant_authenticates_looks_up_one_hint_and_a_forged_one_all(
    storage_connection_string, tmp_path, signed
):
    """The GitHub fixture names three hints: a repository nobody registered, then the tenant's installation and
    organisation. Hints are looked up only until a tenant's secret verifies, so the organisation is never read
    before the answer (its target is still checked against that tenant's record by ingest/scope.py). A request
    that does not verify has tried every hint."""
    from pathlib import Path

    from gatekeeper.services import set_services
    from tests.support.gatekeeper_env import github_request, http_function

    env = make_env(storage_connection_string, tmp_path / "keys")
    registry = CountingRegistry(env.services.request_storage, cache_seconds=0)
    env.services.registry = registry  # before the ingestion service is built from it
    body = (
        Path(__file__).resolve().parents[1] / "fixtures/github/deployment_protection_rule.requested.json"
    ).read_bytes()
    request = github_request(
        "deployment_protection_rule", body, secret="gh-webhook-secret-for-tests" if signed else "x"
    )
    set_services(env.services)
    try:
        status = http_function("github_webhook")(request).status_code
    finally:
        set_services(None)
    hints = ["github:repo:octo-org/octo-repo", "github:installation:35490125", "github:org:octo-org"]
    if signed:
        assert status == 202 and registry.identity_reads == hints[:2]
        assert len(env.drain()) == 1
    else:
        assert status == 401 and registry.identity_reads == hints
        assert env.drain() == []
