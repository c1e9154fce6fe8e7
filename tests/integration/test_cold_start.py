"""A fresh instance answers each ingestion route without importing what those routes do not use.

Each child is the benchmark's own (bench/bench_coldstart.py): a new interpreter with only the app settings
Azure sets, indexing the real function app and answering one correctly signed request against Azurite.
"""

from __future__ import annotations

import pytest

from bench import bench_coldstart

# Never needed to authenticate, parse, seal and queue an event: token validation (PyJWT), the directory and
# mail (Graph SDK, Kiota, MSAL), audit checkpoint signing, policy documents and schemas, and the tenant's KEK:
# the edge wraps its transit key with the KEK's public key from the tenant record, so neither the Key Vault
# SDK nor the modules that load or use a private key (keys, keyring) are imported.
PRIVATE_KEY_MODULES = ("azure.keyvault", "gatekeeper.store.keys", "gatekeeper.store.keyring")
NOT_ON_THE_INGESTION_PATH = (
    *PRIVATE_KEY_MODULES,
    "jwt",
    "msgraph",
    "kiota_abstractions",
    "kiota_http",
    "msal",
    "azure.identity",
    "yaml",
    "jsonschema",
    "gatekeeper.audit",
    "gatekeeper.policy",
    "gatekeeper.integrations",
    "gatekeeper.approvals",
    "gatekeeper.gates",
    "gatekeeper.teams",
    "microsoft_agents",  # the Teams bot's Agents SDK: /api/messages only
    "slack_sdk",  # Slack: /api/slack/*, the slack-interactions queue and Slack notifications only
    "gatekeeper.slack",
    "azure.eventgrid",  # the event mesh: gate and watch activities only
    "gatekeeper.mesh",
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tenant onboarded as `gatekeeper tenants import` does it: its record carries the KEK's public key."""
    from devstack.azurite import start_azurite
    from tests.conftest import ROOT

    server = start_azurite(ROOT)
    try:
        yield bench_coldstart.seed(server.connection_string, tmp_path_factory.mktemp("coldstart"))
    finally:
        server.stop()


@pytest.mark.parametrize(
    "label", ["github webhook", "azure-devops check", "azure-devops service hook", "generic events"]
)
def test_a_fresh_process_answers_the_route_without_the_heavy_imports(setup, label):
    route = next(r for r in setup.routes if r.label == label)
    sample = bench_coldstart.run_child(route.spec(), setup.environ, route.expect)  # raises unless 202/200
    assert "function_app" in sample.loaded and "gatekeeper.ingest" in sample.loaded
    assert "gatekeeper.store.transit" in sample.loaded
    assert [name for name in NOT_ON_THE_INGESTION_PATH if name in sample.loaded] == []
    assert sample.maxrss_kb > 0 and sample.modules > 0


def test_a_record_from_before_the_public_key_still_answers_on_the_old_path(tmp_path_factory):
    """The migration path (and proof the check above can fail): a record without `kek_public` makes the edge
    unwrap the tenant's active data key with the KEK, which loads the Key Vault SDK and the key modules."""
    from devstack.azurite import start_azurite
    from tests.conftest import ROOT

    server = start_azurite(ROOT)
    try:
        old = bench_coldstart.seed(
            server.connection_string, tmp_path_factory.mktemp("coldstart-old"), record_kek_public=False
        )
        route = next(r for r in old.routes if r.label == "github webhook")
        sample = bench_coldstart.run_child(route.spec(), old.environ, route.expect)
    finally:
        server.stop()
    assert [name for name in PRIVATE_KEY_MODULES if name in sample.loaded] == list(PRIVATE_KEY_MODULES)


def test_the_baseline_child_loads_only_the_sdk(setup):
    sample = bench_coldstart.run_child(bench_coldstart.BASELINE_SPEC, setup.environ, None)
    assert "azure.functions" in sample.loaded and "function_app" not in sample.loaded


@pytest.mark.parametrize(
    "label", ["github webhook", "azure-devops check", "azure-devops service hook", "generic events"]
)
def test_a_fresh_process_answers_without_startup_work_the_route_does_not_need(setup, label):
    """With the app settings the Bicep sets, no pydantic plugin is looked up (a scan of every installed
    distribution's entry points), no model's default factory makes pydantic tokenize a builtin's text
    signature, the heap built while indexing the app is frozen out of the garbage collector, and so is what
    the first request built (it ran with the collector paused, which is running again after the answer)."""
    route = next(r for r in setup.routes if r.label == label)
    sample = bench_coldstart.run_child(route.spec(), setup.environ, route.expect)
    assert sample.lookups["pydantic_plugins"] is False
    assert sample.lookups["tokenize_patterns"] == 0
    assert sample.lookups["frozen_at_index"] > 10_000  # 0 when nothing was frozen
    # the first request's imports and services: about 51,000 objects more, frozen when its window closed (about
    # 29,000 if only the services build held it, not the route's whole action)
    assert sample.lookups["frozen_objects"] > sample.lookups["frozen_at_index"] + 40_000
    assert sample.lookups["collector_enabled"] is True


def test_without_the_setting_pydantic_looks_for_plugins(setup):
    """The check above can fail: the same child without PYDANTIC_DISABLE_PLUGINS scans for plugins."""
    route = next(r for r in setup.routes if r.label == "github webhook")
    environ = {k: v for k, v in setup.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    sample = bench_coldstart.run_child(route.spec(), environ, route.expect)
    assert sample.lookups["pydantic_plugins"] is True
