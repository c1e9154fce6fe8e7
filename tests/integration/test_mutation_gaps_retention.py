"""Gaps the mutation run (issue 21) found in gatekeeper/store/retention.py, each closed by a test that fails on the
mutant: the exact bounds and defaults, keyword-only arguments, the frozen result, the per-run limit and the
transaction and page sizes (observed on the real client's calls against Azurite), that a limited scan stops
reading, and how each storage error is settled (real conflicts against Azurite; answers Azurite never gives,
such as a 412 without its usual error code, from a small loopback server speaking the Tables wire format)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from gatekeeper.store.key_errors import KeyServiceUnavailable
from gatekeeper.store.retention import (
    MAX_DELETIONS_PER_RUN,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    PAGE_SIZE,
    QUEUE_MESSAGE_TTL_DAYS,
    TRANSACTION_SIZE,
    PruneResult,
    TransitKeyPruner,
    cutoff,
)
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.store.transit import TRANSIT_PARTITION, transit_id, transit_row
from tests.keyvault_fixtures import new_tenant_id, storage  # noqa: F401

pytestmark = pytest.mark.azurite

NOW = dt.datetime(2026, 12, 5, 3, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=31)


def register_rows(storage: StorageAccount, tenant: str, count: int) -> list[str]:
    """`count` expired transit rows, written in transactions of 100 (fast even for a thousand)."""
    table = storage.ensure_tenant_table(tenant, TablePurpose.KEYS)
    ids = [transit_id() for _ in range(count)]
    rows = [transit_row(i, secrets.token_bytes(16), "local://keys/x/1", OLD) for i in ids]
    for start in range(0, count, 100):
        table.submit_transaction([("create", row) for row in rows[start : start + 100]])
    return ids


class _Recording:
    """The real TableClient, with the sizes of its transactions and the page size of its queries written down."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.transactions: list[int] = []
        self.pages: list[Any] = []

    def submit_transaction(self, operations: list[Any], **kwargs: Any) -> Any:
        self.transactions.append(len(operations))
        return self._table.submit_transaction(operations, **kwargs)

    def query_entities(self, query: str, **kwargs: Any) -> Any:
        self.pages.append(kwargs.get("results_per_page"))
        assert 1 <= kwargs["results_per_page"] <= 1000, "a page size the service would refuse or never finish"
        return self._table.query_entities(query, **kwargs)


class _Observed(TransitKeyPruner):
    """A pruner whose table calls are recorded and whose scan counts the rows it has read so far."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[_Recording] = []
        self.read = 0

    def _table(self, tenant_id: str) -> TableClient:
        recording = _Recording(super()._table(tenant_id))
        self.recorded.append(recording)
        return recording  # type: ignore[return-value]

    def _expired(self, tenant_id: str, before: dt.datetime) -> Iterator[TableEntity]:
        for entity in super()._expired(tenant_id, before):
            self.read += 1
            yield entity


# -- constants, bounds and signatures ----------------------------------------------------------------------------
def test_the_retention_bounds_are_exactly_one_day_past_the_queue_ttl_and_ten_years():
    assert cutoff(NOW, QUEUE_MESSAGE_TTL_DAYS + 1) == NOW - dt.timedelta(days=8)
    assert cutoff(NOW, 3650) == NOW - dt.timedelta(days=3650)
    for days in (QUEUE_MESSAGE_TTL_DAYS, 3651):
        with pytest.raises(ValueError, match="retention_days"):
            cutoff(NOW, days)
    assert (MIN_RETENTION_DAYS, MAX_RETENTION_DAYS) == (8, 3650)


def test_options_after_the_tenant_or_period_are_keyword_only(storage):
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW)
    with pytest.raises(TypeError):
        TransitKeyPruner(storage, 30, lambda: NOW)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pruner.expired_ids(new_tenant_id(), 5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pruner.prune(new_tenant_id(), 5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pruner.prune(new_tenant_id(), limit=5, dry_run=True, extra=1)  # type: ignore[call-arg]
    kinds = {
        name: p.kind
        for fn in (TransitKeyPruner.__init__, TransitKeyPruner.expired_ids, TransitKeyPruner.prune)
        for name, p in inspect.signature(fn).parameters.items()
    }
    assert {kinds[n] for n in ("clock", "page_size", "limit", "dry_run")} == {inspect.Parameter.KEYWORD_ONLY}


def test_a_prune_result_is_frozen_defaults_to_nothing_done_and_ignores_the_cutoff_in_equality():
    result = PruneResult("t1", True)
    assert (result.deleted, result.already_gone, result.changed, result.more, result.cutoff) == ((), 0, 0, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.more = True  # type: ignore[misc]
    assert PruneResult("t1", False, cutoff=NOW) == PruneResult("t1", False, cutoff=OLD)


# -- limits, bounds of a run, page and transaction sizes (Azurite) ----------------------------------------------
def test_the_limit_is_at_least_one_and_one_is_accepted(storage):
    tenant = new_tenant_id()
    ids = register_rows(storage, tenant, 2)
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW)
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            pruner.prune(tenant, limit=limit)
    result = pruner.prune(tenant, limit=1)
    assert len(result.deleted) == 1 and result.more and result.deleted[0] in ids
    assert not result.dry_run and result.already_gone == result.changed == 0


def test_expired_ids_lists_every_expired_row_or_exactly_the_limit_and_stops_reading(storage):
    tenant = new_tenant_id()
    ids = register_rows(storage, tenant, 5)
    pruner = _Observed(storage, 30, clock=lambda: NOW, page_size=1)
    assert sorted(pruner.expired_ids(tenant)) == sorted(ids)
    pruner.read = 0
    listed = pruner.expired_ids(tenant, limit=2)
    assert len(listed) == 2 and set(listed) <= set(ids)
    assert pruner.read == 3, "a limited scan stops at the first row past its limit"
    assert pruner.expired_ids(tenant, limit=5) == pruner.expired_ids(tenant)


def test_a_prune_stops_reading_at_the_first_row_past_its_limit(storage):
    tenant = new_tenant_id()
    register_rows(storage, tenant, 6)
    pruner = _Observed(storage, 30, clock=lambda: NOW, page_size=2)
    result = pruner.prune(tenant, limit=2, dry_run=True)
    assert len(result.deleted) == 2 and result.more and pruner.read == 3


def test_the_default_limit_is_a_thousand_rows_per_run(storage):
    tenant = new_tenant_id()
    ids = register_rows(storage, tenant, MAX_DELETIONS_PER_RUN + 1)
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW)
    dry = pruner.prune(tenant, dry_run=True)
    assert len(dry.deleted) == 1000 and dry.more and set(dry.deleted) < set(ids)


def test_deletions_go_in_transactions_of_exactly_one_hundred(storage):
    tenant = new_tenant_id()
    ids = register_rows(storage, tenant, 230)
    pruner = _Observed(storage, 30, clock=lambda: NOW)
    result = pruner.prune(tenant)
    assert sorted(result.deleted) == sorted(ids) and TRANSACTION_SIZE == 100
    assert [n for r in pruner.recorded for n in r.transactions] == [100, 100, 30]


@pytest.mark.parametrize(("asked", "used"), [(None, 100), (0, 1), (1, 1), (2, 2), (1000, 1000), (1001, 1000)])
def test_the_page_size_defaults_to_100_and_is_clamped_to_1_through_1000(storage, asked, used):
    tenant = new_tenant_id()
    ids = register_rows(storage, tenant, 3)
    options = {} if asked is None else {"page_size": asked}
    pruner = _Observed(storage, 30, clock=lambda: NOW, **options)
    assert sorted(pruner.expired_ids(tenant)) == sorted(ids)
    assert [p for r in pruner.recorded for p in r.pages] == [used] and PAGE_SIZE == 100


# -- how each storage answer is settled ---------------------------------------------------------------------------
def _delete(entity: TableEntity) -> Any:
    return ("delete", entity, {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified})


def test_a_row_in_a_table_that_vanished_counts_as_gone(storage):
    tenant = new_tenant_id()
    (row,) = register_rows(storage, tenant, 1)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    entity = table.get_entity(TRANSIT_PARTITION, row)
    table.delete_table()  # 404 with the code TableNotFound, not ResourceNotFound
    with pytest.raises(TableTransactionError) as caught:
        table.submit_transaction([_delete(entity)])
    assert (caught.value.status_code, caught.value.error_code) == (404, "TableNotFound")
    assert TransitKeyPruner._delete_one(tenant, table, entity) == "gone"


def test_a_refused_deletion_that_is_neither_gone_nor_changed_raises_naming_the_tenant(storage):
    tenant = new_tenant_id()
    (row,) = register_rows(storage, tenant, 1)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    entity = table.get_entity(TRANSIT_PARTITION, row)
    entity.metadata["etag"] = "not-an-etag"  # the service answers 400 InvalidInput
    with pytest.raises(KeyServiceUnavailable, match=tenant) as caught:
        TransitKeyPruner._delete_one(tenant, table, entity)
    assert isinstance(caught.value.__cause__, TableTransactionError) and caught.value.__cause__.status_code == 400
    assert TransitKeyPruner._delete_together(table, [entity]) is False
    assert {e["RowKey"] for e in table.list_entities()} == {row}, "nothing deleted"


def test_a_row_changed_meanwhile_is_settled_as_changed_row_by_row(storage):
    tenant = new_tenant_id()
    (row,) = register_rows(storage, tenant, 1)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    entity = table.get_entity(TRANSIT_PARTITION, row)
    table.update_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": row, "rewrapped": NOW}, UpdateMode.MERGE)
    assert TransitKeyPruner._delete_together(table, [entity]) is False
    assert TransitKeyPruner._delete_one(tenant, table, entity) == "changed"


class _TablesAnswer(BaseHTTPRequestHandler):
    """Answers every Tables request with one fixed status and `x-ms-error-code` (none if empty); with `in_part`,
    a transaction is accepted (202) and the status and code are those of its one operation, as the service
    reports a failed operation inside an entity-group transaction."""

    status = 500
    code = ""
    in_part = False

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"odata.error":{"code":"%s","message":{"value":"fixed answer"}}}' % self.code.encode()
        if self.in_part and self.path.endswith("$batch"):
            self._answer_in_part(body)
            return
        self.send_response(self.status)
        if self.code:
            self.send_header("x-ms-error-code", self.code)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("Content-Length", str(len(body) if self.code else 0))
        self.end_headers()
        if self.code:
            self.wfile.write(body)

    def _answer_in_part(self, error: bytes) -> None:
        part = (
            b"HTTP/1.1 %d Failed\r\nX-Content-Type-Options: nosniff\r\nDataServiceVersion: 3.0;\r\n"
            b"Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8\r\n\r\n%s\r\n"
        ) % (self.status, error)
        body = (
            b"--batchresponse_b\r\nContent-Type: multipart/mixed; boundary=changesetresponse_c\r\n\r\n"
            b"--changesetresponse_c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            b"%s--changesetresponse_c--\r\n--batchresponse_b--\r\n"
        ) % part
        self.send_response(202)
        self.send_header("Content-Type", "multipart/mixed; boundary=batchresponse_b")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def tables_answering(storage_connection_string: str) -> Iterator[Any]:
    """`answer(status, code)` -> a StorageAccount whose Tables endpoint is a loopback server giving that answer."""
    servers: list[ThreadingHTTPServer] = []
    key = re.search(r"AccountKey=([^;]+)", storage_connection_string)
    assert key is not None

    def answer(status: int, code: str, *, in_part: bool = False) -> StorageAccount:
        handler = type("Handler", (_TablesAnswer,), {"status": status, "code": code, "in_part": in_part})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        return StorageAccount(
            connection_string=f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key.group(1)};"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
            request_path=True,
        )

    yield answer
    for server in servers:
        server.shutdown()
        server.server_close()


def _entity() -> TableEntity:
    entity = TableEntity(PartitionKey=TRANSIT_PARTITION, RowKey=transit_id(), created=OLD)
    entity._metadata = {"etag": "W/\"datetime'2026-12-05T03%3A00%3A00Z'\""}  # as a query returns it
    return entity


@pytest.mark.parametrize(
    ("status", "code", "in_part", "outcome"),
    [
        (412, "ConditionNotMet", False, "changed"),  # a 412 settles as changed whatever its code
        (412, "", True, "changed"),  # or without one
        (409, "UpdateConditionNotSatisfied", True, "changed"),  # and the code alone does too
        (409, "ResourceNotFound", True, "gone"),  # the code alone says gone
        (404, "TableNotFound", False, "gone"),
        (404, "", True, "gone"),
    ],
)
def test_a_deletion_is_settled_by_its_status_or_by_its_error_code(tables_answering, status, code, in_part, outcome):
    storage = tables_answering(status, code, in_part=in_part)
    tenant = new_tenant_id()
    assert TransitKeyPruner._delete_one(tenant, storage.tenant_table(tenant, TablePurpose.KEYS), _entity()) == outcome


def test_an_unexpected_storage_error_is_a_key_service_outage_naming_the_tenant(tables_answering):
    storage = tables_answering(400, "OutOfRangeInput")  # an HttpResponseError, not a transaction error
    tenant = new_tenant_id()
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    assert TransitKeyPruner._delete_together(table, [_entity()]) is False, "settled row by row instead"
    with pytest.raises(KeyServiceUnavailable, match=tenant):
        TransitKeyPruner._delete_one(tenant, table, _entity())
    with pytest.raises(KeyServiceUnavailable, match=f"tenant {tenant}: Keys table cannot be read"):
        TransitKeyPruner(storage, 30, clock=lambda: NOW).expired_ids(tenant)
