"""The documented canonical form of an entry, and validation of what callers append."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gatekeeper.audit.records import (
    GENESIS_HASH,
    AuditInput,
    AuditRecord,
    RecordKind,
    canonical_bytes,
    entry_hash,
    format_time,
    parse_time,
    sealed_entry,
)
from gatekeeper.audit.views import opened_entry, redact


def test_canonical_bytes_are_the_documented_unit_separated_fields():
    canonical = canonical_bytes(
        "contoso",
        7,
        "decision",
        "2026-03-01T09:00:00.000000Z",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:42:production",
        "gk1.k.n.c",
        GENESIS_HASH,
    )
    expected = "\x1f".join(
        [
            "gatekeeper.audit/1",
            "7",
            "contoso",
            "decision",
            "2026-03-01T09:00:00.000000Z",
            "system:gatekeeper",
            "gate-1",
            "github:contoso/web:42:production",
            "gk1.k.n.c",
            GENESIS_HASH,
        ]
    ).encode()
    assert canonical == expected
    assert entry_hash(canonical) == hashlib.sha256(b"\x00" + expected).digest()


def test_non_ascii_is_utf8_and_the_separator_is_refused():
    canonical = canonical_bytes("contoso", 0, "decision", "t", 'Zoë "QA"', "", "é", "d", GENESIS_HASH)
    assert '\x1fZoë "QA"\x1f\x1fé\x1f'.encode() in canonical
    with pytest.raises(ValueError, match=r"actor: must not contain the control character U\+001F"):
        canonical_bytes("contoso", 0, "decision", "t", "a\x1fb", "", "", "d", GENESIS_HASH)


def test_sealed_entry_hash_covers_every_field():
    base = sealed_entry("contoso", 3, "decision", "t", "a", "i", "s", "d", GENESIS_HASH)
    for field, value in [
        ("tenant", "fabrikam"),
        ("seq", 4),
        ("kind", "rollback"),
        ("at", "u"),
        ("actor", "b"),
        ("instance_id", "j"),
        ("subject", "x"),
        ("data", "e"),
        ("prev_hash", "1" * 64),
    ]:
        args = dict(
            tenant="contoso",
            seq=3,
            kind="decision",
            at="t",
            actor="a",
            instance_id="i",
            subject="s",
            data="d",
            prev_hash=GENESIS_HASH,
        )
        args[field] = value
        assert sealed_entry(**args)["entry_hash"] != base["entry_hash"], field


def test_time_format_is_utc_with_microseconds():
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 3, 1, 11, 0, 5, 12, tzinfo=plus_two)) == "2026-03-01T09:00:05.000012Z"
    assert parse_time("2026-03-01T09:00:05.000012Z") == datetime(2026, 3, 1, 9, 0, 5, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="at: must be timezone-aware"):
        format_time(datetime(2026, 3, 1))


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"kind": "bogus", "actor": "system:gatekeeper"}, "kind"),
        ({"kind": "decision", "actor": ""}, "actor"),
        ({"kind": "decision", "actor": "a\nb"}, "actor"),
        ({"kind": "decision", "actor": "a", "instance_id": "x\x1fy"}, "instance_id"),
        ({"kind": "decision", "actor": "a", "subject": "x" * 2000}, "subject"),
        ({"kind": "decision", "actor": "a", "at": datetime(2026, 1, 1)}, "at"),
        ({"kind": "decision", "actor": "a", "data": ["not", "a", "dict"]}, "data"),
    ],
)
def test_audit_input_names_the_bad_field(fields, loc):
    with pytest.raises(ValidationError) as info:
        AuditInput(**fields)
    assert info.value.errors()[0]["loc"][0] == loc


def test_record_kinds_cover_the_issue_list():
    needed = {
        "event_received",
        "decision",
        "approval_requested",
        "approval_decided",
        "callback",
        "rollback",
        "policy_changed",
    }
    assert needed <= {k.value for k in RecordKind}


def test_record_repr_never_shows_data():
    record = AuditRecord(
        tenant_id="contoso",
        seq=1,
        kind="approval_decided",
        at=datetime.now(UTC),
        actor="u",
        data={"comment": "secret plans"},
        prev_hash=GENESIS_HASH,
        entry_hash=GENESIS_HASH,
    )
    assert "secret plans" not in repr(record) and "secret plans" not in str(record)


def test_redaction_of_credential_like_keys():
    data = {
        "comment": "ok",
        "auth_token": "abc",
        "nested": [{"Authorization": "Bearer x", "n": 1}],
        "client_secret": "",
        "password": None,
    }
    assert redact(data) == {
        "comment": "ok",
        "auth_token": "[redacted]",
        "nested": [{"Authorization": "[redacted]", "n": 1}],
        "client_secret": "",
        "password": None,
    }
    view = opened_entry({"seq": 1, "kind": "callback", "entry_hash": "h"}, None)
    assert view["data"] is None and view["data_unreadable"] is True
