"""Shared fixtures: Azurite for the whole session, fixture payloads from ../shared/fixtures.

Under CI=true a skipped test is a failed test (issue 21): the infrastructure checks skip when .venv-infra or
../shared/fixtures is missing, and a CI run that silently skipped them would pass without having checked anything.
A test whose skip is not about a missing tool or fixture can say so with @pytest.mark.allow_skip(reason=...).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import Azurite, start_azurite

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
CI_SKIP_MESSAGE = "skipped under CI=true, where every check must run"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_skip(reason): this test may skip even under CI=true; the reason says why that is safe"
    )


def _skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI=true turn a skip (a skipif mark, a fixture or the test calling pytest.skip) into a failure."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and running_in_ci():
        marker = item.get_closest_marker("allow_skip")
        if marker is None or not str(marker.kwargs.get("reason", "")).strip():
            report.outcome = "failed"
            report.longrepr = (
                f"{CI_SKIP_MESSAGE}: {_skip_reason(report.longrepr)}\n"
                "Install what the test needs (make bootstrap, ../shared/fixtures), or mark it "
                "@pytest.mark.allow_skip(reason=...) if the skip is not about a missing tool or fixture."
            )
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """A whole module skipped at import (pytest.skip(allow_module_level=True), importorskip) fails under CI."""
    report = yield
    if report.outcome == "skipped" and running_in_ci():
        report.outcome = "failed"
        report.longrepr = f"{CI_SKIP_MESSAGE}: {_skip_reason(report.longrepr)}"
    return report


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite process per test session (per xdist worker), stopped by us at the end."""
    server = start_azurite(ROOT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A storage-safe unique name so tests sharing one Azurite never see each other's data."""
    return "t" + uuid.uuid4().hex[:20]


def load_fixture(relative: str) -> dict[str, Any]:
    return json.loads((SHARED_FIXTURES / relative).read_text())


@pytest.fixture
def shared_fixture():
    return load_fixture


@pytest.fixture
def served_env(storage_connection_string: str, tmp_path: Path) -> Iterator[Any]:
    """A seeded Gatekeeper over Azurite whose `Services` the registered functions use for the test."""
    from gatekeeper.services import set_services
    from tests.support.gatekeeper_env import make_env

    env = make_env(storage_connection_string, tmp_path / "keys")
    set_services(env.services)
    yield env
    set_services(None)


@pytest.fixture
def durable() -> Iterator[Any]:
    """The local Durable HTTP API server, answering as the extension does."""
    from devstack.durable_api import DurableApiServer

    with DurableApiServer() as server:
        yield server
