"""The commit time of what a gate deploys (DORA lead time): read from the published GitHub payloads, validated
at the generic API's edge, read from GitHub's commit object, and carried by sealed events old and new."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.http import problem_body, status_of
from gatekeeper.errors import InvalidInput
from gatekeeper.events.codec import event_from_sealable, event_to_sealable
from gatekeeper.events.commit_time import MAX_FUTURE_SKEW, commit_time_or_none, parse_rfc3339
from gatekeeper.events.generic import parse_generic
from gatekeeper.events.github import parse_github
from gatekeeper.integrations.github_commits import committed_at
from tests.conftest import load_fixture

HEAD_COMMIT_TIME = datetime(2020, 10, 5, 16, 32, 7, tzinfo=UTC)  # workflow_run.head_commit.timestamp, both fixtures


def gate_request(**extra: Any) -> dict[str, Any]:
    return {"kind": "gate_request", "environment": "production", "runId": "1287", **extra}


# ----- GitHub webhooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["workflow_run.completed.payload.json", "workflow_run.requested.payload.json"])
def test_a_workflow_run_carries_its_head_commit_time(name: str):
    event = parse_github("workflow_run", load_fixture(f"github/{name}"), tenant_id="contoso", delivery_id="d1")
    assert event.commit_time == HEAD_COMMIT_TIME
    assert event.commit == "3484a3fb816e0859fd6e1cea078d76385ff50625"


@pytest.mark.parametrize(
    ("event_name", "fixture"),
    [
        ("deployment_status", "deployment_status.payload.json"),
        ("workflow_job", "workflow_job.queued.with-deployment.payload.json"),
    ],
)
def test_payloads_without_a_documented_commit_time_have_none(event_name: str, fixture: str):
    event = parse_github(event_name, load_fixture(f"github/{fixture}"), tenant_id="contoso", delivery_id="d1")
    assert event.commit_time is None


@pytest.mark.parametrize(
    "timestamp",
    ["yesterday", "2020-10-05 16:32:07", "2020-10-05T16:32:07", 1601915527, None, "9999-12-31T23:59:59Z"],
)
def test_an_implausible_head_commit_time_leaves_the_run_without_one_but_parsed(timestamp: Any):
    payload = copy.deepcopy(load_fixture("github/workflow_run.completed.payload.json"))
    payload["workflow_run"]["head_commit"]["timestamp"] = timestamp
    event = parse_github("workflow_run", payload, tenant_id="contoso", delivery_id="d1")
    assert event.commit_time is None and event.status == "success"


def test_a_workflow_run_without_head_commit_has_no_commit_time():
    payload = copy.deepcopy(load_fixture("github/workflow_run.completed.payload.json"))
    payload["workflow_run"]["head_commit"] = None
    assert parse_github("workflow_run", payload, tenant_id="contoso", delivery_id="d1").commit_time is None


# ----- the generic API ----------------------------------------------------------------------------------


def test_the_generic_api_takes_an_rfc3339_commit_time_as_utc():
    event = parse_generic(gate_request(commitTime="2026-12-01T09:15:30.250+01:00"), tenant_id="contoso")
    assert event.commit_time == datetime(2026, 12, 1, 8, 15, 30, 250000, tzinfo=UTC)
    by_name = parse_generic(gate_request(commit_time="2026-12-01T08:15:30Z"), tenant_id="contoso")
    assert by_name.commit_time == datetime(2026, 12, 1, 8, 15, 30, tzinfo=UTC)


def test_without_a_commit_time_the_event_has_none():
    assert parse_generic(gate_request(), tenant_id="contoso").commit_time is None


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01",  # a date is not a time
        "2026-12-01T08:15:30",  # no zone: whose 08:15?
        "2026-12-01 08:15:30Z",  # RFC 3339's T
        "2026-13-01T08:15:30Z",  # no 13th month
        "2026-12-01T08:15:30+25:00",
        "1733040000",
        "next tuesday",
        "2026-12-01T08:15:30Z" + " " * 30 + "x",  # over the length bound
        12345,
        True,
    ],
)
def test_a_bad_commit_time_is_a_problem_naming_the_field(value: Any):
    with pytest.raises(InvalidInput) as caught:
        parse_generic(gate_request(commitTime=value), tenant_id="contoso")
    body = problem_body(caught.value)
    assert status_of(caught.value) == 422 and caught.value.field == "commitTime"
    assert "commitTime" in body["detail"] and body["errors"][0]["field"] == "commitTime"


def test_a_commit_time_in_the_future_beyond_the_skew_is_refused_and_within_it_accepted():
    now = datetime.now(UTC)
    later = (now + MAX_FUTURE_SKEW + timedelta(minutes=2)).isoformat()
    with pytest.raises(InvalidInput) as caught:
        parse_generic(gate_request(commitTime=later), tenant_id="contoso")
    assert caught.value.field == "commitTime" and "future" in str(caught.value)
    soon = (now + MAX_FUTURE_SKEW - timedelta(minutes=2)).replace(microsecond=0)
    accepted = parse_generic(gate_request(commitTime=soon.isoformat()), tenant_id="contoso")
    assert accepted.commit_time == soon


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
    )
)
def test_any_rfc3339_time_reads_back_as_the_same_instant(when: datetime):
    text = when.isoformat().replace("+00:00", "Z")
    assert parse_rfc3339(text) == when
    assert parse_rfc3339(text).tzinfo == UTC
    assert commit_time_or_none(text, datetime(2100, 1, 1, tzinfo=UTC)) == when


# ----- GitHub's commit object ---------------------------------------------------------------------------

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def person(date: Any) -> dict[str, Any]:
    return {"name": "Mona Lisa", "email": "mona@example.com", "date": date}


def test_the_committer_date_is_the_commit_time_and_the_author_date_the_fallback():
    both = {"commit": {"author": person("2026-12-01T08:00:00Z"), "committer": person("2026-12-02T09:30:00+02:00")}}
    assert committed_at(both, NOW) == datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    no_committer = {"commit": {"author": person("2026-12-01T08:00:00Z"), "committer": None}}
    assert committed_at(no_committer, NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    bad_committer = {"commit": {"author": person("2026-12-01T08:00:00Z"), "committer": person("soon")}}
    assert committed_at(bad_committer, NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "document",
    [
        {},
        [],
        {"commit": None},
        {"commit": {"author": None, "committer": None}},
        {"commit": {"committer": person("2027-01-01T00:00:00Z")}},  # in the future of NOW
        {"commit": {"committer": person(1733040000)}},
        "not a commit",
    ],
)
def test_a_commit_object_without_a_plausible_time_gives_none(document: Any):
    assert committed_at(document, NOW) is None


# ----- sealed events and replay ------------------------------------------------------------------------


def test_the_commit_time_survives_sealing_and_an_event_sealed_before_it_existed_still_opens():
    event = parse_generic(gate_request(commitTime="2026-12-01T08:15:30Z"), tenant_id="contoso")
    document = event_to_sealable(event)
    assert event_from_sealable(document).commit_time == datetime(2026, 12, 1, 8, 15, 30, tzinfo=UTC)
    old = {k: v for k, v in document.items() if k != "commit_time"}
    assert event_from_sealable(old).commit_time is None
    assert event_from_sealable(old).instance_id == event.instance_id  # the business key does not include it
