"""The schema-driven instance generator (tests/support/schema_instances.py) can fail: its format checks reject
what they should, `check` refuses an invalid instance, and its variants are what they claim to be."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.conftest import SHARED_FIXTURES
from tests.support.schema_instances import FORMATS, GeneratorBug, SchemaInstances, load

SCHEMAS = SHARED_FIXTURES / "github" / "schemas"


def github(name: str) -> SchemaInstances:
    return load(SCHEMAS / f"{name}.schema.json", SCHEMAS / "common")


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        (
            "uri",
            ["a:", "https://github.com/o/r", "urn:x:y", "https://h/%C3%A9#f"],
            ["", "/relative", "a b:", "https://h/é"],
        ),
        ("date-time", ["0001-01-01T00:00:00Z", "2024-02-29T23:59:60+14:00"], ["2023-02-29T00:00:00Z", "2024-01-01"]),
        ("uri-template", ["", "https://h/{owner}{/repo}", "{?q,page}"], ["{", "https://h/{ x}", "a b"]),
    ],
)
def test_format_checks_accept_and_reject(fmt: str, good: list[str], bad: list[str]) -> None:
    assert all(FORMATS.conforms(value, fmt) for value in good)
    assert not any(FORMATS.conforms(value, fmt) for value in bad)


def test_check_refuses_an_instance_the_schema_does_not_allow() -> None:
    generator = github("deployment_protection_rule.requested")
    valid = generator.minimal()
    with pytest.raises(GeneratorBug, match="environment"):
        generator.check({**valid, "environment": 5})
    with pytest.raises(GeneratorBug, match="deployment_callback_url"):
        generator.check({**valid, "deployment_callback_url": "not a uri"})


def test_minimal_has_only_required_properties_and_the_smallest_values() -> None:
    generator = github("deployment_protection_rule.requested")
    minimal = generator.minimal()
    assert set(minimal) == {"action", "repository", "sender"}
    assert minimal["action"] == "requested" and minimal["sender"]["id"] == 0 and minimal["sender"]["login"] == ""
    assert minimal["repository"]["description"] is None  # nullable: null
    assert minimal["repository"]["url"] == "a:"  # the shortest absolute URI


def test_nulls_and_empties_has_every_property_with_nulls_and_empty_arrays() -> None:
    generator = github("deployment_protection_rule.requested")
    full = generator.nulls_and_empties()
    assert set(full) == set(generator.schema["properties"])
    assert full["pull_requests"] == [] and full["repository"]["topics"] == []
    assert full["deployment"]["performed_via_github_app"] is None


def test_all_of_is_merged_with_the_narrower_branch() -> None:
    """workflow_run.completed narrows the run's `conclusion` to a non-null enum through `allOf`."""
    generator = github("workflow_run.completed")
    assert generator.minimal()["workflow_run"]["conclusion"] == "success"


def test_strategy_varies_presence_branches_and_strings() -> None:
    generator = github("deployment_status.created")
    seen: dict[str, set[Any]] = {"workflow_run": set(), "environment_url": set(), "state": set()}

    @hypothesis_settings(derandomize=True, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(generator.strategy())
    def collect(payload: dict[str, Any]) -> None:
        assert generator.errors(payload) == []
        seen["workflow_run"].add("workflow_run" in payload)
        url = payload["deployment_status"].get("environment_url")
        seen["environment_url"].add("absent" if url is None else "empty" if url == "" else "uri")
        seen["state"].add(payload["deployment_status"]["state"])

    collect()
    assert seen["workflow_run"] == {True, False}
    assert seen["environment_url"] == {"absent", "empty", "uri"}  # both oneOf branches
    assert len(seen["state"]) >= 3
