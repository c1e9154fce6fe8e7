"""A fresh install on this machine (devstack/installed.py: the app from app settings only, its routes over real
HTTP, the first tenant bootstrapped by the registered timer) and `gatekeeper admin smoke-test --url` against it:
exit 0 with one line per step when everything works; 1 naming the failed check; 2 on bad usage, never printing
the API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devstack.installed import InstalledApp, start_installed_app
from gatekeeper.cli import main
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[InstalledApp]:
    keys = tmp_path_factory.mktemp("install") / "keys"
    # the async routes run on the loop the other tests' routes use (one Durable SDK session per process)
    with start_installed_app(keys, data_boundary="EU", run_async=lambda c: run_on_worker(c, timeout=120)) as installed:
        yield installed


@pytest.fixture
def admin_shell(app, monkeypatch) -> dict[str, str]:
    for name, value in app.environ.items():
        monkeypatch.setenv(name, value)
    return app.environ


def test_health_after_install(app):
    answer = requests.get(f"{app.url}/api/health", timeout=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["dataBoundary"] == "EU" and body["bootstrap"] == {"status": "done"}


def test_the_smoke_test_passes_every_step(app, admin_shell, capsys):
    assert main(["admin", "smoke-test", "--url", app.url, "--timeout", "60", "--checkpoint"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["health", "event", "gate", "audit"]
    assert all(": ok: " in line for line in lines)
    assert "data boundary EU" in lines[0] and "bootstrap done" in lines[0]
    assert "L0 approved" in lines[2] and lines[3].startswith("audit: ok: verified ")
    assert admin_shell["GK_NORTHWIND_API_KEY"] not in "\n".join(lines)
    assert app.worker_errors == []


def test_a_wrong_api_key_fails_the_event_step(app, admin_shell, capsys, monkeypatch):
    monkeypatch.setenv("OTHER_KEY", "not-the-tenants-key")
    assert main(["admin", "smoke-test", "--url", app.url, "--api-key-env", "OTHER_KEY"]) == 1
    out = capsys.readouterr().out
    assert "event: FAILED: 401" in out and "not-the-tenants-key" not in out


def test_a_task_hub_outage_fails_the_health_step(app, admin_shell, capsys, tmp_path):
    from devstack.durable_api import DurableApiServer

    dead = DurableApiServer().start()
    binding = dead.client_binding
    dead.stop()
    previous, app.host._durable_binding = app.host._durable_binding, binding
    app.services.health_cache.expire()  # the earlier tests' healthy answer is reused for a few seconds
    try:
        assert main(["admin", "smoke-test", "--url", app.url]) == 1
    finally:
        app.host._durable_binding = previous
        app.services.health_cache.expire()
    out = capsys.readouterr().out
    assert out.startswith("health: FAILED: 503") and "taskHub unavailable (unreachable)" in out
    assert "event:" not in out  # it stops at the first failed check


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--url", "ftp://example.com"], "--url"),
        (["--url", "http://gatekeeper.example.com"], "must be https"),
        (["--url", "https://x.example", "--tenant", "Bad-Id"], "--tenant"),
        (["--url", "https://x.example", "--api-key-env", "NOT_SET_ANYWHERE"], "--api-key-env"),
        (["--url", "https://x.example", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(admin_shell, capsys, extra, message):
    assert main(["admin", "smoke-test", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_gate_nobody_processes_fails_the_gate_step_after_the_timeout(tmp_path, monkeypatch, capsys):
    """Last in the module: a second install replaces the process-wide services of the first."""
    keys = tmp_path / "keys"
    with start_installed_app(keys, worker=False, run_async=lambda c: run_on_worker(c, timeout=120)) as stalled:
        for name, value in stalled.environ.items():
            monkeypatch.setenv(name, value)
        assert main(["admin", "smoke-test", "--url", stalled.url, "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "event: ok: accepted" in out
    assert "gate: FAILED: no final decision for gate-" in out and "within 2 s" in out
    assert "audit:" not in out
