"""`gatekeeper deadletters replay`: dead letters go back to their queue as their producer sent them, then
their row is deleted. Azurite, the real SDK clients, the registered queue triggers (the poison triggers that
keep a dead letter, the dispatcher and the connector trigger that read the replay) and the local Durable HTTP
API. The CLI writes to the product's queue names (`pipeline-events`, `connector-events`), shared by the tests
in this Azurite, so each test takes only its own message from them."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import BinaryBase64DecodePolicy, QueueClient

from gatekeeper.cli import main
from gatekeeper.ingest.deadletter import DEAD_LETTER_TABLE, DeadLetter, DeadLetters
from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT
from gatekeeper.ingest.redelivery import defer, defer_wrapped
from gatekeeper.services import set_services
from gatekeeper.telemetry import LOGGER_NAME, PREFIX
from tests.conftest import ROOT
from tests.integration.test_ingest_sources import connector_identities
from tests.support.gatekeeper_env import GatekeeperEnv, github_request, http_function, make_env, signed_connector
from tests.support.outage import dead_port, storage_connection_string
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

DPR = (ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_bytes()
CONNECTOR_FIXTURE = sorted((ROOT / "tests/fixtures/connectors").glob("*.json"))[0]


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatekeeperEnv]:
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=connector_identities())
    set_services(env.services)
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")  # the CLI builds its services from the environment
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    for name in ("pipeline-events", "connector-events", "slack-interactions"):
        with contextlib.suppress(ResourceExistsError):  # Bicep creates them in Azure
            product_queue(env, name).create_queue()
    yield env
    set_services(None)


@pytest.fixture
def cli(storage_connection_string: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def run(*argv: str, connection: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["deadletters", "replay", *argv, "--storage-connection", connection or storage_connection_string])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def product_queue(env: GatekeeperEnv, name: str) -> QueueClient:
    return env.storage.queue(name, message_decode_policy=BinaryBase64DecodePolicy())


def take(env: GatekeeperEnv, queue: str, wanted: Callable[[str], bool], seconds: float = 3.0) -> list[str]:
    """This test's messages on a shared queue (received and deleted, as the host does); others are left."""
    client, found = product_queue(env, queue), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in client.receive_messages(max_messages=32, visibility_timeout=1):
            text = message.content.decode()
            if wanted(text):
                client.delete_message(message)
                found.append(text)
        if found:
            return found
        time.sleep(0.1)
    return found


def peek_mine(env: GatekeeperEnv, queue: str, needle: str) -> list[str]:
    return [m.content.decode() for m in product_queue(env, queue).peek_messages(max_messages=32)
            if needle in m.content.decode()]  # fmt: skip


def poisoned(trigger: str, text: str) -> None:
    """What the host does after five failed dequeues: the message goes to `<queue>-poison`, whose trigger keeps it."""
    http_function(trigger)(QueueMessage(id="p", body=text.encode(), dequeue_count=5))


def row_of(env: GatekeeperEnv, queue: str, message: str) -> DeadLetter:
    [letter] = [d for d in DeadLetters(env.storage).list(queue) if d.message == message]
    return letter


def still_there(env: GatekeeperEnv, letter: DeadLetter) -> bool:
    return DeadLetters(env.storage).get(letter.queue, letter.row_key) is not None


def a_gate_request(env: GatekeeperEnv) -> str:
    """The edge's message for a deployment protection rule request (deduplicated per tenant: each test has one)."""
    response = http_function("github_webhook")(github_request("deployment_protection_rule", DPR))
    assert response.status_code == 202, response.get_body()
    [text] = env.drain()
    return text


def dispatch(text: str, durable: Any) -> None:
    function = http_function("dispatch_pipeline_events")
    run_on_worker(function(QueueMessage(id="r", body=text.encode()), client=durable.client_binding))


def restore(env: GatekeeperEnv, entity: dict[str, Any]) -> None:
    """The row back, as a crash between the send and the delete would have left it."""
    env.storage.table(DEAD_LETTER_TABLE).upsert_entity(entity)


def replay_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    events = [json.loads(r.getMessage()[len(PREFIX) :]) for r in caplog.records if r.name == LOGGER_NAME]
    return [e for e in events if e["name"] == "DeadLetterReplayed"]


# ----- replayed: reaches its trigger, starts its gate once --------------------------------------------------


def test_a_poisoned_pipeline_event_replayed_twice_reaches_the_dispatcher_and_starts_its_gate_once(
    env, durable, cli, caplog
):
    text = a_gate_request(env)
    copy = defer(text, datetime.now(UTC), datetime(2020, 1, 1, tzinfo=UTC), QUEUE_MESSAGE_LIMIT)
    assert copy is None  # waited past 24 h: the host's retries and the poison path apply
    with_note = json.dumps({**json.loads(text), "deferred": {"since": "2020-01-01T00:00:00+00:00", "n": 9}})
    poisoned("pipeline_events_poison", with_note)
    letter = row_of(env, "pipeline-events", with_note)
    entity = dict(env.storage.table(DEAD_LETTER_TABLE).get_entity("pipeline-events", letter.row_key))

    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    code, out, _ = cli("--queue", "pipeline-events", letter.row_key)
    assert code == 0, out
    assert out.splitlines() == [f"pipeline-events  {letter.row_key}  replayed", "1 of 1 dead letter(s): 1 replayed"]
    assert not still_there(env, letter)
    [first] = take(env, "pipeline-events", lambda t: t == text)  # the edge's message exactly: no stale note
    assert replay_events(caplog) == [{"name": "DeadLetterReplayed", "queue": "pipeline-events", "outcome": "replayed"}]
    assert json.loads(text)["sealed"] not in caplog.text  # never the message content

    restore(env, entity)  # a crash after the send, before the delete: the operator replays the row again
    assert cli("--queue", "pipeline-events", letter.row_key)[0] == 0
    [second] = take(env, "pipeline-events", lambda t: t == text)

    dispatch(first, durable)
    dispatch(second, durable)
    starts = durable.posts("/orchestrators/")
    assert len(starts) == 1 and starts[0][1]["tenant_id"] == env.tenant_id  # deduplicated on the business key
    assert [d for d in DeadLetters(env.storage).list("pipeline-events") if json.loads(text)["id"] in d.message] == []


def test_a_connector_event_is_replayed_byte_for_byte_and_passes_the_signature_check(env, cli):
    document = json.loads(CONNECTOR_FIXTURE.read_text())
    document["payload"] = {**document.get("payload", {}), "test_nonce": uuid.uuid4().hex}
    body = signed_connector(document).decode()
    wrapped = defer_wrapped(body, datetime.now(UTC), datetime.now(UTC), QUEUE_MESSAGE_LIMIT)
    assert wrapped is not None
    poisoned("connector_events_poison", wrapped.text)  # a deferred copy that then failed five times
    letter = row_of(env, "connector-events", wrapped.text)

    code, out, _ = cli("--queue", "connector-events", letter.row_key, "--json")
    assert code == 0
    assert json.loads(out) == [
        {"queue": "connector-events", "row_key": letter.row_key, "outcome": "replayed", "reason": None}
    ]
    [replayed] = take(env, "connector-events", lambda t: document["payload"]["test_nonce"] in t)
    assert replayed.encode() == body.encode()  # the relay's signed envelope, byte for byte
    http_function("connector_events")(QueueMessage(id="c", body=replayed.encode(), dequeue_count=1))
    assert len(env.queued_texts()) == 1  # authenticated and handed over as a pipeline event
    assert [d for d in DeadLetters(env.storage).list("connector-events") if document["payload"]["test_nonce"] in
            d.message] == []  # fmt: skip


def test_a_slack_vote_is_replayed_still_sealed_and_opens_as_the_same_decision(env, cli):
    from gatekeeper.slack.edge import Interaction, queue_message, read_queue_message

    interaction = Interaction(kind="approve", team_id="T0001", user_id="U0001", instance_id="gate-" + uuid.uuid4().hex)
    body = queue_message(env.services.sealer, env.tenant_id, interaction).decode()
    wrapped = defer_wrapped(body, datetime.now(UTC), datetime.now(UTC), QUEUE_MESSAGE_LIMIT)
    assert wrapped is not None
    poisoned("slack_interactions_poison", wrapped.text)
    letter = row_of(env, "slack-interactions", wrapped.text)

    assert cli("--queue", "slack-interactions", letter.row_key)[0] == 0
    [replayed] = take(env, "slack-interactions", lambda t: t == body)
    assert "U0001" not in replayed  # still sealed on the queue
    assert read_queue_message(env.services.sealer, replayed.encode()) == (env.tenant_id, interaction)
    assert not still_there(env, letter)


# ----- refused: the reason per row, nothing sent, exit 3 ------------------------------------------------------


def test_truncated_shredded_blob_gone_and_other_queue_rows_are_refused_with_exit_3_and_kept(env, cli):
    letters = DeadLetters(env.storage)
    nobody = "t" + uuid.uuid4().hex[:12]  # a tenant without a Keys table: every key of it is gone
    shredded = json.dumps({"v": 1, "tenant": nobody, "id": "e1", "sealed": "gk1.abcdefgh12.x"})
    blob_gone = json.dumps({"v": 1, "tenant": env.tenant_id, "id": "e2", "blob": f"{env.tenant_id}/e2.sealed"})
    rows = [
        letters.record("pipeline-events", json.dumps({"v": 1, "tenant": env.tenant_id, "pad": "x" * 30_000}), "r"),
        letters.record("pipeline-events", shredded, "integrity: key-gone"),
        letters.record("pipeline-events", blob_gone, "undecodable: blob missing"),
        letters.record("connector-events", '{"connector": "halopsa"}', "400 invalid-payload: x"),
    ]
    code, out, _ = cli("--queue", "pipeline-events", *rows, "--json")
    assert code == 3
    by_row = {r["row_key"]: r for r in json.loads(out)}
    assert {r["outcome"] for r in by_row.values()} == {"refused"}
    assert by_row[rows[0]]["reason"].startswith("truncated")
    assert by_row[rows[1]]["reason"].startswith("key shredded")
    assert by_row[rows[2]]["reason"].startswith("blob gone")
    assert by_row[rows[3]]["reason"] == "a dead letter of connector-events, not pipeline-events"
    queues = ["pipeline-events"] * 3 + ["connector-events"]
    assert all(letters.get(q, r) is not None for q, r in zip(queues, rows, strict=True))
    assert peek_mine(env, "pipeline-events", env.tenant_id) == [] and peek_mine(env, "pipeline-events", nobody) == []

    code, out, _ = cli("--queue", "pipeline-events", rows[0])
    assert code == 3
    assert out.splitlines()[0].startswith(f"pipeline-events  {rows[0]}  refused: truncated")
    assert out.splitlines()[-1] == "1 of 1 dead letter(s): 1 refused"


UNKNOWN = "20300101T000000000000-deadbeef"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["ROW", UNKNOWN], UNKNOWN),  # one unknown among known rows: nothing at all is sent
        (["ROW", "x' or PartitionKey ne '"], "ROW_KEY"),
        (["ROW", "z" * 65], "ROW_KEY"),
        ([], "--all or ROW_KEY"),
        (["--all", "ROW"], "--all or ROW_KEY"),
    ],
)
def test_an_unknown_or_malformed_row_key_exits_2_naming_it_and_nothing_is_sent(env, cli, argv, named):
    text = a_gate_request(env)
    poisoned("pipeline_events_poison", text)
    letter = row_of(env, "pipeline-events", text)
    code, out, err = cli("--queue", "pipeline-events", *[letter.row_key if a == "ROW" else a for a in argv])
    assert code == 2 and named in err and out == ""
    assert still_there(env, letter) and peek_mine(env, "pipeline-events", json.loads(text)["id"]) == []


def test_a_missing_queue_option_is_an_argument_error(cli):
    with pytest.raises(SystemExit) as exited:
        cli("20300101T000000000000-deadbeef")
    assert exited.value.code == 2


# ----- dry run, outages ---------------------------------------------------------------------------------------


def test_a_dry_run_says_what_would_happen_and_changes_nothing(env, cli, caplog):
    text = a_gate_request(env)
    poisoned("pipeline_events_poison", text)
    readable = row_of(env, "pipeline-events", text)
    truncated = DeadLetters(env.storage).record("pipeline-events", "y" * 30_001, "undecodable: x")
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)

    code, out, _ = cli("--queue", "pipeline-events", readable.row_key, truncated, "--dry-run")
    assert code == 3
    lines = out.splitlines()
    assert lines[0] == f"pipeline-events  {readable.row_key}  would replay"
    assert lines[1].startswith(f"pipeline-events  {truncated}  refused: truncated")
    assert lines[2] == "2 of 2 dead letter(s): 1 would replay, 1 refused"
    assert cli("--queue", "pipeline-events", readable.row_key, "--dry-run")[0] == 0

    code, out, _ = cli("--queue", "pipeline-events", "--all", "--dry-run", "--json")
    mine = [r for r in json.loads(out) if r["row_key"] in (readable.row_key, truncated)]
    assert [r["outcome"] for r in mine] == ["would replay", "refused"]
    assert still_there(env, readable) and DeadLetters(env.storage).get("pipeline-events", truncated) is not None
    assert peek_mine(env, "pipeline-events", json.loads(text)["id"]) == []
    assert replay_events(caplog) == []  # a dry run reports nothing as replayed


def test_the_queue_down_exits_1_and_keeps_the_row(env, cli, azurite):
    text = a_gate_request(env)
    poisoned("pipeline_events_poison", text)
    letter = row_of(env, "pipeline-events", text)
    queue_down = storage_connection_string(blob=azurite.blob_port, queue=dead_port(), table=azurite.table_port)
    started = time.monotonic()
    code, out, err = cli("--queue", "pipeline-events", letter.row_key, connection=queue_down)
    assert code == 1 and time.monotonic() - started < 20
    assert f"{letter.row_key}  failed: could not send" in out and "kept" in err and letter.row_key in err
    assert still_there(env, letter)
    assert cli("--queue", "pipeline-events", letter.row_key)[0] == 0  # once the queue is back
    assert take(env, "pipeline-events", lambda t: t == text) == [text]


def test_tables_down_exit_1_before_anything_is_sent(env, cli, azurite):
    text = a_gate_request(env)
    poisoned("pipeline_events_poison", text)
    letter = row_of(env, "pipeline-events", text)
    tables_down = storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    code, _, err = cli("--queue", "pipeline-events", letter.row_key, connection=tables_down)
    assert code == 1 and "cannot be read" in err and "nothing sent" in err
    assert still_there(env, letter) and peek_mine(env, "pipeline-events", json.loads(text)["id"]) == []
