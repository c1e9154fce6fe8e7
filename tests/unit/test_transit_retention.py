"""The retention rule for transit keys, without storage: the setting's bounds, the cutoff, and which rows a run may
delete (only dated transit rows older than the cutoff), and what `sealed_key` reads from a dead letter."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.ingest.deadletter import KeyState, sealed_key
from gatekeeper.settings import SETTINGS, Settings
from gatekeeper.store.retention import (
    DEFAULT_RETENTION_DAYS,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    QUEUE_MESSAGE_TTL_DAYS,
    cutoff,
    is_expired,
)
from gatekeeper.store.transit import TRANSIT_PARTITION, transit_id

SETTING = "GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS"
NOW = dt.datetime(2026, 12, 5, 3, 0, tzinfo=dt.UTC)


def test_the_setting_defaults_to_30_days_and_matches_the_module():
    assert Settings.from_environ({}).transit_key_retention_days == DEFAULT_RETENTION_DAYS == 30
    assert next(s.default for s in SETTINGS if s.name == SETTING) == str(DEFAULT_RETENTION_DAYS)
    assert Settings.from_environ({SETTING: ""}).transit_key_retention_days == 30  # empty: the default


@pytest.mark.parametrize("value", [str(MIN_RETENTION_DAYS), "30", " 365 ", str(MAX_RETENTION_DAYS)])
def test_the_setting_accepts_whole_days_within_bounds(value):
    assert Settings.from_environ({SETTING: value}).transit_key_retention_days == int(value)


@pytest.mark.parametrize(
    "value",
    ["7", "0", "-30", "3651", "30.5", "1e3", "thirty", "9" * 400, "٣٠"],  # ٣٠: Arabic-Indic digits
)
def test_a_setting_out_of_bounds_or_not_a_whole_number_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=SETTING):
        Settings.from_environ({SETTING: value})


def test_the_lower_bound_exceeds_the_queue_message_lifetime():
    assert MIN_RETENTION_DAYS > QUEUE_MESSAGE_TTL_DAYS
    with pytest.raises(ValueError, match=SETTING):
        Settings.from_environ({SETTING: str(QUEUE_MESSAGE_TTL_DAYS)})


@pytest.mark.parametrize("days", [MIN_RETENTION_DAYS - 1, MAX_RETENTION_DAYS + 1, 0])
def test_cutoff_refuses_a_period_out_of_bounds(days):
    with pytest.raises(ValueError, match="retention_days"):
        cutoff(NOW, days)


def test_cutoff_refuses_a_naive_clock():
    with pytest.raises(ValueError, match="now"):
        cutoff(NOW.replace(tzinfo=None), 30)


def row(created: object, *, partition: str = TRANSIT_PARTITION, row_key: str | None = None) -> dict:
    return {"PartitionKey": partition, "RowKey": row_key or transit_id(), "created": created}


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    age=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=4000)),
    days=st.integers(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS),
)
def test_a_transit_row_is_expired_exactly_when_older_than_the_retention(age, days):
    before = cutoff(NOW, days)
    assert is_expired(row(NOW - age), before) == (age > dt.timedelta(days=days))


def test_the_boundary_instant_is_kept():
    before = cutoff(NOW, 30)
    assert not is_expired(row(before), before)
    assert is_expired(row(before - dt.timedelta(microseconds=1)), before)


@pytest.mark.parametrize(
    "entity",
    [
        row(NOW - dt.timedelta(days=400), partition="datakey"),  # a data key, however old
        row(NOW - dt.timedelta(days=400), partition="pointer", row_key="active"),
        row(NOW - dt.timedelta(days=400), row_key="0123456789abcdef"),  # a data-key id in the transit partition
        row(NOW - dt.timedelta(days=400), row_key="t0123"),
        row(None),  # undated: cannot be shown old enough
        row("2000-01-01T00:00:00Z"),  # a string, not a stored DateTime
        row((NOW - dt.timedelta(days=400)).replace(tzinfo=None)),
        {"PartitionKey": TRANSIT_PARTITION, "created": NOW - dt.timedelta(days=400)},  # no RowKey
    ],
)
def test_only_dated_transit_rows_can_expire(entity):
    assert not is_expired(entity, cutoff(NOW, 30))


class Blobs:
    def __init__(self, stored: dict[str, str]) -> None:
        self.stored = stored

    def get(self, name: str) -> str | None:
        return self.stored.get(name)


def test_sealed_key_names_the_tenant_and_key_of_a_message_or_its_claim_check():
    key = transit_id()
    message = json.dumps({"v": 1, "tenant": "contoso", "id": "e1", "sealed": f"gk1.{key}.bm9uY2U.Ym9keQ"})
    assert sealed_key(message) == ("contoso", key)
    claim = json.dumps({"v": 1, "tenant": "contoso", "id": "e2", "blob": "contoso/e2.sealed"})
    assert sealed_key(claim, Blobs({"contoso/e2.sealed": "gk1.0123456789abcdef.bg.Yg"})) == (
        "contoso",
        "0123456789abcdef",
    )
    assert sealed_key(claim, Blobs({})) is KeyState.BLOB_GONE


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"v": 1, "tenant": "../x", "id": "e", "sealed": "gk1.t0123456789abcdef.n.c"}),
        json.dumps({"v": 1, "tenant": "contoso", "id": "e", "sealed": "gk2.t0123456789abcdef.n.c"}),
        json.dumps({"v": 1, "tenant": "contoso", "id": "e", "sealed": 5}),
        json.dumps({"v": 1, "tenant": "contoso", "id": "e", "blob": "other/e.sealed"}),  # another tenant's blob
        '{"tenant": "contoso", "sealed": "gk1.t0123456789abcdef.n.c", "tenant": "x"}',  # duplicate key
        "[" * 5000,  # too deep
        '{"v": 1, "tenant": "contoso", "id": "e", "sealed": "gk1.t01234',  # truncated at 30,000 characters
    ],
)
def test_sealed_key_of_hostile_or_damaged_messages_is_unknown(message):
    assert sealed_key(message, Blobs({"other/e.sealed": "gk1.0123456789abcdef.n.c"})) is KeyState.UNKNOWN
