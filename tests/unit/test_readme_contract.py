"""The README is part of the product: its quick start, settings and routes must match the code."""

from gatekeeper.settings import SETTINGS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_quick_start_is_the_two_commands():
    assert "make demo" in README and "make test" in README


def test_every_app_setting_is_listed():
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in README]
    assert missing == []


def test_every_public_route_is_listed():
    for route in ("/api/github/webhook", "/api/azure-devops/checks", "/api/azure-devops/service-hooks", "/api/events"):
        assert f"`POST {route}`" in README
    for route in ("/api/azure-monitor/alerts", "/api/deployments/{id}/hold", "/api/deployments/{id}/rollback"):
        assert f"`POST {route}`" in README
    assert "`POST /api/connectors/{vendor}?tenant=<id>`" in README
    assert "`GET /api/deployments/{id}`" in README


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
