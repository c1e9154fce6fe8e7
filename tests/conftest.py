"""Shared fixtures: Azurite for the whole session, fixture payloads from ../shared/fixtures."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import Azurite, start_azurite

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


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
