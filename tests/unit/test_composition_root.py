"""One composition root: typed settings read once, one `Services`, one accessor, scoped for local gates."""

from __future__ import annotations

import pytest

from gatekeeper import services as services_module
from gatekeeper.services import Services, build_services, get_services, set_services, using_services
from gatekeeper.settings import SETTINGS, KeyMode, NotifyMode, Settings


def test_every_declared_setting_parses_to_its_default():
    parsed = Settings.from_environ({})
    assert parsed.key_mode is KeyMode.KEYVAULT and parsed.notify_mode is NotifyMode.GRAPH
    assert parsed.max_body_bytes == 1_048_576 and parsed.tenant_cache_seconds == 60.0
    assert parsed.callback_max_attempts == 5 and parsed.checkpoint_every == 100 and parsed.checkpoint_minutes == 15
    assert parsed.trust_easyauth_header is False and parsed.entra_audiences == ()
    declared = {s.name: s.default for s in SETTINGS}
    assert str(parsed.data_key_cache_seconds).rstrip("0").rstrip(".") == declared["GATEKEEPER_DATA_KEY_CACHE_SECONDS"]


def test_typed_values_are_parsed_once():
    parsed = Settings.from_environ(
        {
            "GATEKEEPER_KEY_MODE": " Local ",
            "GATEKEEPER_MAX_BODY_BYTES": "2048",
            "GATEKEEPER_TRUST_EASYAUTH_HEADER": "TRUE",
            "GATEKEEPER_ENTRA_AUDIENCE": "api://a, b ,",
            "GATEKEEPER_NOTIFY_MODE": "outbox",
            "GATEKEEPER_GRAPH_TENANT_ID": "  ",
        }
    )
    assert parsed.key_mode is KeyMode.LOCAL and parsed.max_body_bytes == 2048 and parsed.trust_easyauth_header
    assert parsed.entra_audiences == ("api://a", "b") and parsed.notify_mode is NotifyMode.OUTBOX
    assert parsed.graph_tenant_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEKEEPER_KEY_MODE", "plaintext"),
        ("GATEKEEPER_NOTIFY_MODE", "pigeon"),
        ("GATEKEEPER_MAX_BODY_BYTES", "1MB"),
        ("GATEKEEPER_MAX_BODY_BYTES", "0"),
        ("GATEKEEPER_TENANT_CACHE_SECONDS", "-1"),
        ("GATEKEEPER_CHECKPOINT_EVERY", "ten"),
        ("GATEKEEPER_CHECKPOINT_MINUTES", "0"),
        ("GATEKEEPER_CALLBACK_MAX_ATTEMPTS", "11"),
        ("GATEKEEPER_DATA_KEY_CACHE_SECONDS", "86401"),
        ("GATEKEEPER_KEY_VAULT_URL", "my-vault"),
        ("GATEKEEPER_GITHUB_API_URL", "ftp://github.example"),
        ("GATEKEEPER_APPROVAL_BASE_URL", "/relative"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(name, value):
    with pytest.raises(ValueError, match=f"^{name}: must be"):
        Settings.from_environ({name: value})


def test_secret_values_stay_out_of_the_repr():
    parsed = Settings.from_environ(
        {"GATEKEEPER_STORAGE_CONNECTION": "AccountKey=hunter2", "GK_TENANT_SECRET": "swordfish"}
    )
    assert "hunter2" not in repr(parsed) and "swordfish" not in repr(parsed)
    assert parsed.environ["GK_TENANT_SECRET"] == "swordfish"  # `env:` references resolve over the same mapping


def test_the_accessor_builds_once_from_the_environment(monkeypatch):
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_MAX_BODY_BYTES", "4096")
    set_services(None)
    try:
        first = get_services()
        assert first is get_services() and first.settings.max_body_bytes == 4096
        monkeypatch.setenv("GATEKEEPER_MAX_BODY_BYTES", "8192")
        assert get_services() is first  # read once: a later change of the environment is not seen
    finally:
        set_services(None)


def test_a_scope_serves_its_own_services_and_builds_a_factory_lazily():
    outer = build_services(Settings.from_environ({}))
    built: list[Services] = []

    def factory() -> Services:
        built.append(build_services(Settings.from_environ({"GATEKEEPER_MAX_BODY_BYTES": "1"})))
        return built[-1]

    set_services(outer)
    try:
        with using_services(factory):
            assert built == []  # nothing built until asked
            inner = get_services()
            assert inner is built[0] and get_services() is inner and inner is not outer
        assert get_services() is outer
    finally:
        set_services(None)


def test_building_services_imports_and_builds_nothing_heavy():
    built = Services(Settings.from_environ({"GATEKEEPER_KEY_MODE": "local"}))
    for member in ("storage", "sealer", "notifier", "callbacks", "decider", "registry", "ingestion"):
        assert member not in vars(built), f"{member} was built with the object"
    assert built._credential is None  # no credential until a member needs one


def test_explicit_members_win_over_the_settings_recipe():
    marker = object()
    built = Services(Settings.from_environ({}), notifier=marker, operators_for=lambda t: ("ops",))  # type: ignore[arg-type]
    assert built.notifier is marker and built.operators_for("t1") == ("ops",)
    assert built.approval_link("g1") == "http://localhost:7071/api/approvals/g1/page"


def test_the_old_builders_are_gone():
    import importlib

    for gone in (
        "gatekeeper.runtime",
        "gatekeeper.gates.services",
        "gatekeeper.gates.wiring",
        "gatekeeper.integrations.factory",
    ):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
    assert services_module.build_services is build_services


AZURITE_STYLE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;TableEndpoint=http://127.0.0.1:1/devstoreaccount1"
)


def test_the_audit_log_gets_its_checkpoint_values_from_the_settings():
    """Services passes GATEKEEPER_CHECKPOINT_EVERY / _MINUTES / GATEKEEPER_AUDIT_CONTAINER as values; nothing
    is read here (the storage endpoints are a closed port: building a log touches no storage)."""
    from datetime import timedelta

    from gatekeeper.store.tables import StorageAccount

    settings = Settings.from_environ(
        {
            "GATEKEEPER_CHECKPOINT_EVERY": "7",
            "GATEKEEPER_CHECKPOINT_MINUTES": "2.5",
            "GATEKEEPER_AUDIT_CONTAINER": "tenant-worm",
        }
    )
    storage = StorageAccount(connection_string=AZURITE_STYLE)
    built = build_services(settings, storage=storage, sealer=object(), checkpoint_signer_factory=None)  # type: ignore[arg-type]
    log = built.audit_for("contoso")
    assert log.checkpoint_every == 7 and log.checkpoint_interval == timedelta(minutes=2.5)
    assert repr(log.archive) == "CheckpointArchive('tenant-worm')"
    assert built.audit_for("contoso") is log  # one per tenant and process


def test_an_audit_log_built_directly_takes_values_not_the_environment(monkeypatch):
    from gatekeeper.audit import log as audit_log
    from gatekeeper.store.tables import StorageAccount

    monkeypatch.setenv("GATEKEEPER_CHECKPOINT_EVERY", "3")
    monkeypatch.setenv("GATEKEEPER_CHECKPOINT_MINUTES", "1")
    monkeypatch.setenv("GATEKEEPER_AUDIT_CONTAINER", "from-the-environment")
    storage = StorageAccount(connection_string=AZURITE_STYLE)
    log = audit_log.AuditLog(storage, object(), None, "contoso")  # type: ignore[arg-type]
    declared = Settings.from_environ({})  # the defaults the tools' logs share with the composition root
    assert log.checkpoint_every == declared.checkpoint_every == audit_log.DEFAULT_CHECKPOINT_EVERY
    assert log.checkpoint_interval.total_seconds() == declared.checkpoint_minutes * 60
    assert repr(log.archive) == f"CheckpointArchive({declared.audit_container!r})"
    with pytest.raises(ValueError, match="checkpoint_every"):
        audit_log.AuditLog(storage, object(), None, "contoso", checkpoint_every=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        (None, "https://stgk.table.core.windows.net"),  # the declared default: Azure public
        ("core.usgovcloudapi.net", "https://stgk.table.core.usgovcloudapi.net"),
        ("core.chinacloudapi.cn", "https://stgk.table.core.chinacloudapi.cn"),
    ],
)
def test_storage_endpoints_use_the_clouds_suffix(suffix, expected):
    """Sovereign clouds: the template sets GATEKEEPER_STORAGE_ENDPOINT_SUFFIX from environment()."""
    environ = {"GATEKEEPER_STORAGE_ACCOUNT": "stgk"}
    if suffix is not None:
        environ["GATEKEEPER_STORAGE_ENDPOINT_SUFFIX"] = suffix
    account = services_module.build_storage(Settings.from_environ(environ), lambda: object())  # type: ignore[arg-type,return-value]
    assert account.table_endpoint == expected
    assert account.queue_endpoint == expected.replace(".table.", ".queue.")
    assert account.blob_endpoint == expected.replace(".table.", ".blob.")


@pytest.mark.parametrize("suffix", ["core", "evil.example/x", "https://core.windows.net", "a..b", "-x.net"])
def test_a_storage_suffix_that_is_no_dns_suffix_is_refused(suffix):
    with pytest.raises(ValueError, match="GATEKEEPER_STORAGE_ENDPOINT_SUFFIX: must be a DNS suffix"):
        Settings.from_environ({"GATEKEEPER_STORAGE_ENDPOINT_SUFFIX": suffix})
