"""Adapters behind ports, looked up in tables: pipeline targets by the callback handle's type, notification
channels fanned out behind one `Notifier`, connectors by name/source; plus the one base64url helper and the
one canonical audit-entry field list the modules derive from."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.audit import log as audit_log
from gatekeeper.audit import records, verify, views
from gatekeeper.encoding import b64url, b64url_decode, b64url_decode_strict, int_to_b64url
from gatekeeper.events import identity
from gatekeeper.events.common import dedupe
from gatekeeper.events.connectors import BY_SOURCE, CONNECTORS, ConnectorName, parse_connector_message
from gatekeeper.events.model import EventSource, PipelineEvent, WebhookCallback
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.notify import FanOutNotifier, Notification, NotificationResult
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.results import CallbackResult
from gatekeeper.store import envelope

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "connectors"


# ----- PipelineTarget: looked up by the handle's type -------------------------------------------------------


class RecordingTarget:
    """A `PipelineTarget` that records what it was asked (the port's contract is all this test needs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def complete(
        self, tenant_id: str, handle: Any, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        self.calls.append(("complete", tenant_id, handle, approved, comment, dict(context)))
        return CallbackResult(ok=True, target="webhook", action="complete", detail="recorded")

    def progress(self, tenant_id: str, handle: Any, comment: str) -> CallbackResult:
        self.calls.append(("progress", tenant_id, handle, comment))
        return CallbackResult(ok=True, target="webhook", action="progress", detail="recorded")


def test_the_target_is_looked_up_by_the_handles_type_with_a_typed_handle() -> None:
    target = RecordingTarget()
    callbacks = PipelineCallbacks(targets={"webhook": target})
    handle = {"type": "webhook", "url": "https://ci.contoso.com/hooks/gate"}  # as out of a history
    assert callbacks.complete("contoso", handle, True, "ok", {"run": 7}).detail == "recorded"
    assert callbacks.progress("contoso", handle, "waiting").detail == "recorded"
    assert target.calls == [
        ("complete", "contoso", WebhookCallback(url="https://ci.contoso.com/hooks/gate"), True, "ok", {"run": 7}),
        ("progress", "contoso", WebhookCallback(url="https://ci.contoso.com/hooks/gate"), "waiting"),
    ]
    # No adapter for a type: a result naming what is missing, nothing sent anywhere.
    missing = callbacks.complete(
        "contoso", {"type": "github", "owner": "o", "repo": "r", "run_id": 1, "environment_name": "prod"}, True, ""
    )
    assert not missing.ok and missing.target == "github"
    assert missing.detail == "github complete: the GitHub App (GATEKEEPER_GITHUB_APP_ID) is not configured"
    assert len(target.calls) == 2


def test_a_target_that_raises_becomes_a_failed_result_for_audit() -> None:
    class Broken(RecordingTarget):
        def complete(self, *args: Any, **kwargs: Any) -> CallbackResult:
            raise KeyError("bug")

    result = PipelineCallbacks(targets={"webhook": Broken()}).complete(
        "contoso", {"type": "webhook", "url": "https://ci.contoso.com/x"}, False, "no"
    )
    assert not result.ok and result.detail == "webhook complete: unexpected KeyError"


# ----- Notifier: channels fan out behind one port -------------------------------------------------------------

ALERT = Notification(kind="alert", recipients=("ops@contoso.com",), title="Callback failed", text="retry by hand")


def test_one_channel_passes_through_unchanged(tmp_path: Path) -> None:
    outbox = OutboxNotifier(tmp_path)
    result = FanOutNotifier([outbox]).notify("contoso", ALERT)
    assert result.ok and result.path is not None and Path(result.path).is_file()
    assert [d.recipient for d in result.deliveries] == ["ops@contoso.com"]


def test_every_channel_gets_the_notification_and_one_failure_makes_it_not_ok(tmp_path: Path) -> None:
    class Down:
        def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
            raise ConnectionError("channel down")

    first, second = OutboxNotifier(tmp_path / "a"), OutboxNotifier(tmp_path / "b")
    both = FanOutNotifier([first, second]).notify("contoso", ALERT)
    assert both.ok and len(both.deliveries) == 2
    assert len(first.read_all("contoso")) == 1 and len(second.read_all("contoso")) == 1
    third = OutboxNotifier(tmp_path / "c")
    partly = FanOutNotifier([Down(), third]).notify("contoso", ALERT)
    assert not partly.ok and "Down: ConnectionError" in partly.detail
    assert len(third.read_all("contoso")) == 1  # the channel after the broken one still ran
    with pytest.raises(ValueError):
        FanOutNotifier([])


# ----- connectors: one module per vendor, one table ----------------------------------------------------------


def test_a_counted_vote_reaches_every_channel_that_cannot_refresh_itself_and_one_failure_stops_none() -> None:
    """`FanOutNotifier.gate_changed` (and the chain's step over it) tell each `GateChangedListener`; a channel
    that raises (Slack down, a bug) neither reaches the chain nor keeps the next channel from being told."""
    from types import SimpleNamespace

    from gatekeeper.contracts.gate import UpdateMessagesInput
    from gatekeeper.gates.outcome import update_live_messages
    from gatekeeper.ports import GateChangedListener

    told: list[tuple[str, str, str]] = []

    class Live:
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
            return NotificationResult(ok=True)

        def gate_changed(self, tenant_id: str, instance_id: str) -> None:
            told.append((self.name, tenant_id, instance_id))
            if self.fails:
                raise ConnectionError("slack is down")

    class Plain:  # a channel without live messages (mail): not told
        def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
            return NotificationResult(ok=True)

    fan_out = FanOutNotifier([Live("slack", fails=True), Plain(), Live("other")])
    assert isinstance(fan_out, GateChangedListener) and not isinstance(Plain(), GateChangedListener)
    request = UpdateMessagesInput(tenant_id="contoso", instance_id="gate-1")
    assert update_live_messages(SimpleNamespace(notifier=fan_out), request).ok  # type: ignore[arg-type]
    assert told == [("slack", "contoso", "gate-1"), ("other", "contoso", "gate-1")]
    failing = SimpleNamespace(notifier=Live("alone", fails=True))  # a listener that raises, not behind a fan-out
    assert update_live_messages(failing, request).ok is False  # type: ignore[arg-type]
    assert update_live_messages(SimpleNamespace(notifier=Plain()), request).ok  # type: ignore[arg-type]


def test_the_connector_table_covers_every_connector_name_and_source() -> None:
    assert set(CONNECTORS) == set(get_args(ConnectorName))
    for name, connector in CONNECTORS.items():
        assert connector.source is EventSource(name) and BY_SOURCE[connector.source] is connector
        assert connector.parse.__module__ == f"gatekeeper.events.connectors.{name}"
        assert connector.payload.__module__ == f"gatekeeper.events.connectors.{name}"


@pytest.mark.parametrize("sample", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_each_vendor_bundle_parses_and_hints_as_the_routes_do(sample: str) -> None:
    message = json.loads((FIXTURES / f"{sample}.json").read_text())
    connector = CONNECTORS[message["connector"]]
    connector.payload.model_validate(message["payload"])  # the bundled model is the vendor's body
    result = parse_connector_message(message, tenant_id="contoso")
    assert isinstance(result, PipelineEvent) and result.source is connector.source
    hints = dedupe(connector.identity_hints(message, None))
    assert hints and identity.source_identities(connector.source, message) == hints


# ----- one base64url helper ---------------------------------------------------------------------------------


@settings(derandomize=True, max_examples=200)
@given(st.binary(min_size=1, max_size=64))
def test_base64url_round_trips_and_the_strict_decoder_accepts_only_the_canonical_text(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text and text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data and b64url_decode_strict(text) == data
    if text:
        assert b64url_decode(text + "=" * (-len(text) % 4)) == data  # JWK files may be padded
        if len(text) % 4:  # the last character carries unused bits: another spelling of the same bytes
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            twin = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
            if b64url_decode(twin) == data:
                with pytest.raises(ValueError):
                    b64url_decode_strict(twin)


def test_the_envelope_keeps_the_strict_decoder() -> None:
    assert envelope._unb64u is b64url_decode_strict
    for bad in ("", "QQ==", "QR"):  # empty, padded, non-canonical spelling of b"A"
        with pytest.raises(ValueError):
            envelope._unb64u(bad)
    assert int_to_b64url(65537) == "AQAB"


# ----- one canonical audit-entry field list -----------------------------------------------------------------


def test_every_entry_field_list_derives_from_the_canonical_one() -> None:
    assert records.ENTRY_FIELDS[0] == "seq" and records.ENTRY_FIELDS[-1] == "entry_hash"
    assert records.HASHED_FIELDS == records._FIELD_NAMES == records.ENTRY_FIELDS[1:-1]
    assert records.ENTRY_FIELDS[1:] == verify._TEXT_FIELDS
    assert frozenset(records.ENTRY_FIELDS) == verify._ENTRY_KEYS


def test_an_entry_survives_the_table_layout_and_the_export_view() -> None:
    entry = {
        "seq": 12,
        "tenant": "contoso",
        "kind": "gate_decided",
        "at": "2026-01-01T00:00:00.000000Z",
        "actor": "system",
        "instance_id": "gate-1",
        "subject": "deploy",
        "data": "x" * (audit_log.DATA_CHUNK_CHARS * 2 + 5),  # chunked over three columns
        "prev_hash": "a" * 64,
        "entry_hash": "b" * 64,
    }
    entity = audit_log._entry_entity(entry)
    assert entity["data_parts"] == 3
    back = audit_log.entity_to_entry(entity)
    assert back == entry and tuple(back) == records.ENTRY_FIELDS
    view = views.opened_entry(entry, {"ok": True})
    assert tuple(view) == (*records.ENTRY_FIELDS[:7], "data", "prev_hash", "entry_hash")
