"""The cold-start benchmark's children get the app settings a deployment gets: the platform settings that
change what a new instance does before its first answer must be the Bicep's own values."""

from __future__ import annotations

from pathlib import Path

from bench import bench_coldstart
from tests.infra.test_app_settings_contract import _bicep_settings


def test_the_deployment_and_the_benchmark_both_turn_off_the_pydantic_plugin_lookup(parsed_infra):
    values, _ = _bicep_settings(parsed_infra)
    child = bench_coldstart.child_environment("UseDevelopmentStorage=true", Path("keys"), {})
    assert values["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    assert child["PYDANTIC_DISABLE_PLUGINS"] == values["PYDANTIC_DISABLE_PLUGINS"]
