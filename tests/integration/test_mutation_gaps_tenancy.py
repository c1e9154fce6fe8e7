"""Tenant resolution edges (issue 21: survivors of `make mutation MODULES=tenancy`), on Azurite.

The registry caches what it read for `cache_seconds` (GATEKEEPER_TENANT_CACHE_SECONDS): within that time a
change made elsewhere is not seen, and from the instant it expires the next read sees it, so an offboarded tenant
stops resolving within the documented bound. The suite ran with the cache off, so the cache's answers were never
checked. Callback URLs: a user name alone (no password) is refused like full credentials, and a prefix that does
not match does not stop the search through the tenant's other prefixes.
"""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from gatekeeper.errors import GatekeeperError
from gatekeeper.events.github import parse_github
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import AzureDevOpsCallback, EventKind, EventSource, PipelineEvent
from gatekeeper.gates.psa import company_refusal
from gatekeeper.ingest.scope import bind_azure_devops, bind_connector, bind_github
from gatekeeper.settings import DataBoundary
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.ownership import callback_url_allowed
from gatekeeper.tenancy.registry import TenantRegistry, load_tenant_file
from tests.conftest import load_fixture


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def storage(storage_connection_string):
    return StorageAccount(connection_string=storage_connection_string)


def _record(tenant_id: str, identity: str, *, enabled: bool = True) -> TenantRecord:
    return TenantRecord(tenant_id=tenant_id, display_name="Fabrikam", identities=(identity,), enabled=enabled)


def test_the_registry_answers_from_its_cache_until_it_expires_then_reads_again(storage):
    tenant_id, identity = "t" + uuid.uuid4().hex[:12], f"github:org:org-{uuid.uuid4().hex[:8]}"
    writer = TenantRegistry(storage, cache_seconds=0)
    writer.import_records([_record(tenant_id, identity)])
    clock = Clock()
    cached = TenantRegistry(storage, cache_seconds=60, clock=clock)

    first = cached.resolve([identity])
    assert first is not None and first.tenant_id == tenant_id
    writer.import_records([_record(tenant_id, identity, enabled=False)])  # offboarded elsewhere

    clock.now += 59.9
    again = cached.get(tenant_id)
    assert isinstance(again, TenantRecord) and again.enabled  # still the cached record, as documented
    assert cached.tenant_for_identity(identity) == tenant_id
    assert cached.resolve([identity]) == first

    clock.now += 0.1  # exactly cache_seconds after the read: expired
    assert cached.resolve([identity]) is None
    assert cached.get(tenant_id) is not None and cached.get(tenant_id).enabled is False  # type: ignore[union-attr]


def test_an_unknown_identity_is_cached_as_unknown_too(storage):
    identity = f"github:org:org-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    cached = TenantRegistry(storage, cache_seconds=60, clock=clock)
    assert cached.tenant_for_identity(identity) is None
    tenant_id = "t" + uuid.uuid4().hex[:12]
    TenantRegistry(storage, cache_seconds=0).import_records([_record(tenant_id, identity)])
    assert cached.tenant_for_identity(identity) is None
    clock.now += 60
    assert cached.tenant_for_identity(identity) == tenant_id


def test_a_callback_url_with_a_user_name_is_refused_even_without_a_password():
    prefixes = ["https://ci.contoso.com/gatekeeper/"]
    assert callback_url_allowed(prefixes, "https://ci.contoso.com/gatekeeper/run/1")
    assert not callback_url_allowed(prefixes, "https://user@ci.contoso.com/gatekeeper/run/1")
    assert not callback_url_allowed(prefixes, "https://:secret@ci.contoso.com/gatekeeper/run/1")
    assert not callback_url_allowed(prefixes, "https:///gatekeeper/run/1")


def test_every_prefix_of_the_tenant_is_tried():
    prefixes = ["https://other.example/hooks/", "https://ci.contoso.com:8443/x/", "https://ci.contoso.com/gatekeeper/"]
    assert callback_url_allowed(prefixes, "https://ci.contoso.com/gatekeeper/run/1")
    assert callback_url_allowed(list(reversed(prefixes)), "https://other.example/hooks/1")


def test_a_loopback_http_prefix_and_its_explicit_default_port_are_the_same_origin():
    assert callback_url_allowed(["http://127.0.0.1/gk/"], "http://127.0.0.1:80/gk/run/1")
    assert callback_url_allowed(["https://ci.contoso.com/gk/"], "https://ci.contoso.com:443/gk/run/1")
    assert not callback_url_allowed(["http://127.0.0.1/gk/"], "http://127.0.0.1:8080/gk/run/1")


def test_a_tenant_record_is_immutable():
    record = _record("tenanta", "github:org:a")
    with pytest.raises(ValidationError):
        record.enabled = False  # type: ignore[misc]


def _ado_event(plan_url: str) -> PipelineEvent:
    callback = AzureDevOpsCallback(
        plan_url=plan_url,
        project_id="p",
        hub_name="checks",
        plan_id="1",
        job_id="2",
        task_instance_id="3",
        auth_token="job-token",
    )
    return PipelineEvent.model_construct(callback=callback)  # bind_azure_devops reads the callback only


def test_an_azure_devops_check_is_bound_only_to_the_organisation_of_its_plan_url():
    tenant = _record("tenanta", "azure-devops:org:https://dev.azure.com/fabrikam/")
    bind_azure_devops(tenant, {}, _ado_event("https://dev.azure.com/fabrikam/"))
    for plan_url in ("https://dev.azure.com/contoso-other/", "not a url"):
        with pytest.raises(GatekeeperError) as info:
            bind_azure_devops(tenant, {}, _ado_event(plan_url))
        assert info.value.field == "header:PlanUrl", plan_url


@pytest.mark.parametrize("full_name", ["a/b/c", "solo", None, ""])
def test_only_an_owner_and_name_make_a_repository_identity(full_name):
    found = list(source_identities(EventSource.GITHUB, {"repository": {"full_name": full_name}}))
    assert not any(i.startswith("github:repo:") for i in found)
    assert "github:repo:octo/app" in source_identities(EventSource.GITHUB, {"repository": {"full_name": "octo/app"}})


def test_a_registry_built_without_a_cache_setting_caches_for_the_documented_60_seconds(storage):
    """The CLI builds its registry without `cache_seconds`: it then caches like GATEKEEPER_TENANT_CACHE_SECONDS'
    default, 60 seconds, so an offboarding made elsewhere is seen from the 60th second on."""
    tenant_id, identity = "t" + uuid.uuid4().hex[:12], f"github:org:org-{uuid.uuid4().hex[:8]}"
    writer = TenantRegistry(storage, cache_seconds=0)
    writer.import_records([_record(tenant_id, identity)])
    clock = Clock()
    default = TenantRegistry(storage, clock=clock)
    assert default.resolve([identity]) is not None
    writer.import_records([_record(tenant_id, identity, enabled=False)])
    clock.now += 59.5
    assert default.resolve([identity]) is not None  # still cached
    clock.now += 0.5
    assert default.resolve([identity]) is None


def test_connector_networks_are_read_as_cidrs_and_a_bad_one_is_named_with_its_index():
    record = TenantRecord(
        tenant_id="tenanta",
        display_name="A",
        connector_allowed_networks=(" 10.0.0.0/8 ", "192.168.1.7/24", "2001:db8::1/32"),
    )
    assert record.connector_allowed_networks == ("10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32")
    with pytest.raises(ValidationError) as info:
        TenantRecord(tenant_id="tenanta", display_name="A", connector_allowed_networks=("10.0.0.0/8", "intranet"))
    assert "connector_allowed_networks[1]: 'intranet' is not an IP network (CIDR)" in str(info.value)


def test_a_bad_connector_network_is_quoted_to_64_characters_in_the_refusal():
    long = "n" * 100
    with pytest.raises(ValidationError) as info:
        TenantRecord(tenant_id="tenanta", display_name="A", connector_allowed_networks=(long,))
    assert f"connector_allowed_networks[0]: {'n' * 64!r} is not an IP network" in str(info.value)


def test_a_callback_prefix_without_a_trailing_slash_admits_itself_and_what_lies_below_it_only():
    prefixes = ["https://ci.contoso.com/hooks"]
    assert callback_url_allowed(prefixes, "https://ci.contoso.com/hooks")
    assert callback_url_allowed(prefixes, "https://ci.contoso.com/hooks/")
    assert callback_url_allowed(prefixes, "https://ci.contoso.com/hooks/deploy/1")
    assert not callback_url_allowed(prefixes, "https://ci.contoso.com/hooks-evil/deploy/1")
    assert not callback_url_allowed(prefixes, "https://ci.contoso.com/hooksdeploy")


@pytest.mark.parametrize(
    "url",
    [
        "https://ci.contoso.com:99999/hooks/run/1",
        "https://ci.contoso.com:port/hooks/run/1",
        "https://[ci.contoso.com/hooks/1",
    ],
    ids=["port-out-of-range", "port-not-a-number", "unclosed-bracket"],
)
def test_a_callback_url_python_cannot_split_is_refused_not_admitted(url):
    assert not callback_url_allowed(["https://ci.contoso.com/hooks/"], url)


def test_a_connectwise_site_may_be_260_characters_and_no_more():
    site = "a" + ("b" * 62 + ".") * 4 + "c" + ":12345"
    assert len(site) == 260
    assert TenantRecord(tenant_id="tenanta", display_name="A", connectwise_site=site).connectwise_site == site
    with pytest.raises(ValidationError):
        TenantRecord(tenant_id="tenanta", display_name="A", connectwise_site=site.replace("c:", "cc:"))


def test_a_disabled_tenant_and_an_identity_whose_tenant_record_is_gone_are_no_candidates(storage):
    """`candidates` (the tenants a request is authenticated against, in turn) yields enabled tenants only: an
    offboarded tenant's identity names no candidate, and an identity row whose tenant record was deleted is
    skipped without a crash while the hints after it are still tried."""
    suffix = uuid.uuid4().hex[:8]
    off, gone, on = (f"t{kind}{suffix}" for kind in ("off", "gone", "on"))
    ids = {t: f"github:org:{t}" for t in (off, gone, on)}
    registry = TenantRegistry(storage, cache_seconds=0)
    registry.import_records([_record(off, ids[off], enabled=False), _record(gone, ids[gone]), _record(on, ids[on])])
    registry.table.delete_entity("tenant", gone)  # the identity row outlived its tenant record
    assert registry.candidates([ids[off]]) == []
    assert [r.tenant_id for r in registry.candidates([ids[off], ids[gone], ids[on]])] == [on]


def _psa_naming(setting: str) -> dict[str, object]:
    return {
        "vendor": "connectwise",
        "url": "https://api-na.myconnectwise.net",
        "login_company": "fabrikammsp",
        "company": "ContosoLtd",
        "board": "Change Management",
        "credentials": {
            "public_key": setting,
            "private_key": "env:GK_CONTOSO_CW_PRIVATE",
            "client_id": "env:GK_CONTOSO_CW_CLIENT",
        },
    }


FOREIGN_SETTING = (
    "tenants[0].psa.credentials.public_key: names another tenant's app setting; this tenant's references must be "
    "GK_CONTOSO_<NAME>"
)


def test_an_import_naming_another_tenant_s_setting_is_refused_with_the_field_and_the_reason(storage):
    record = TenantRecord(tenant_id="contoso", display_name="Contoso", psa=_psa_naming("env:GK_FABRIKAM_CW_PUBLIC"))
    with pytest.raises(GatekeeperError) as info:
        TenantRegistry(storage, cache_seconds=0).import_records([record])
    assert (info.value.field, info.value.detail) == ("tenants[0].psa.credentials.public_key", FOREIGN_SETTING)


@pytest.mark.parametrize("filename", ["tenants.yaml", "tenants.json"])
def test_a_tenants_file_naming_another_tenant_s_setting_is_refused_with_file_field_and_reason(filename):
    document = {
        "tenants": [{"tenant_id": "contoso", "display_name": "Contoso", "psa": _psa_naming("env:GK_FABRIKAM_X")}]
    }
    with pytest.raises(ValueError) as info:
        load_tenant_file(json.dumps(document), filename=filename)
    assert str(info.value) == f"{filename}: {FOREIGN_SETTING}"


@pytest.mark.parametrize(("filename", "kind"), [("tenants.json", "JSON"), ("tenants.yaml", "YAML")])
def test_an_unreadable_tenants_file_is_named_as_the_format_its_name_says(filename, kind):
    with pytest.raises(ValueError) as info:
        load_tenant_file("[" * 100 + "]" * 100, filename=filename)
    assert str(info.value).startswith(f"{filename}: not accepted as {kind}: ")


@pytest.mark.parametrize(
    "url", ["ftp://dev.azure.com/contoso/", "https:///contoso/", "file:///contoso/"], ids=["ftp", "no-host", "file"]
)
def test_an_azure_devops_organisation_url_needs_http_or_https_and_a_host(url):
    containers = {"resourceContainers": {"collection": {"baseUrl": url}}}
    assert source_identities(EventSource.AZURE_DEVOPS, containers) == []
    assert source_identities(EventSource.AZURE_DEVOPS, {}, {"PlanUrl": url}) == []


def test_a_tenant_s_data_boundary_is_read_in_any_case_and_a_bad_one_is_named():
    assert TenantRecord(tenant_id="tenanta", display_name="A", data_boundary=" eu ").data_boundary.value == "EU"
    with pytest.raises(ValidationError) as info:
        TenantRecord(tenant_id="tenanta", display_name="A", data_boundary="mars")
    assert "must be 'EU', 'US' or 'any', not 'mars'" in str(info.value)
    with pytest.raises(ValidationError) as info:
        TenantRecord(tenant_id="tenanta", display_name="A", data_boundary="m" * 50)
    assert f"not {'m' * 40!r}" in str(info.value)


@pytest.mark.parametrize("value", ["999", True, 77.0], ids=["string", "boolean", "float"])
def test_an_installation_id_that_is_not_a_json_integer_names_no_installation(value):
    """A status event's `installation.id` is a number in GitHub's payloads; anything else (a string, `true`, a
    float) is not read as an installation, so it neither binds nor refuses the event."""
    payload = load_fixture("github/deployment_status.payload.json")
    payload["installation"] = {"id": value}
    tenant = TenantRecord(
        tenant_id="contoso",
        display_name="Contoso",
        identities=("github:repo:codertocat/hello-world", "github:installation:77"),
    )
    event = parse_github("deployment_status", payload, tenant_id="contoso", delivery_id="d")
    assert isinstance(event, PipelineEvent)
    assert bind_github(tenant, payload, event) == event


def test_a_tenant_s_display_name_may_be_200_characters_and_no_more():
    assert len(TenantRecord(tenant_id="tenanta", display_name="d" * 200).display_name) == 200
    with pytest.raises(ValidationError):
        TenantRecord(tenant_id="tenanta", display_name="d" * 201)


def test_a_callback_prefix_python_cannot_split_is_named_as_not_a_valid_url():
    with pytest.raises(ValidationError) as info:
        TenantRecord(tenant_id="tenanta", display_name="A", callback_url_prefixes=("https://ci.contoso.com:99999/h/",))
    assert "callback_url_prefixes[0]: 'https://ci.contoso.com:99999/h/' is not a valid URL" in str(info.value)


def test_a_tenant_accepts_no_psa_decision_it_cannot_compare_unless_it_opts_in():
    """`psa_decisions_without_company` defaults to False: a tenant without `psa:` settings refuses a change
    decision whose company cannot be compared, until its record opts in explicitly."""
    event = PipelineEvent(
        tenant_id="tenanta", source=EventSource.CONNECTWISE, kind=EventKind.CHANGE_APPROVED, subject="4711"
    )
    default = TenantRecord(tenant_id="tenanta", display_name="A")
    assert default.psa_decisions_without_company is False
    assert company_refusal(event, default) == "no-psa-company-configured"
    opted_in = TenantRecord(tenant_id="tenanta", display_name="A", psa_decisions_without_company=True)
    assert company_refusal(event, opted_in) is None


def test_a_tenants_file_s_name_is_keyword_only():
    """The file name decides how the text is read (JSON or YAML) and is named in every refusal: never a bare
    positional argument that could be swapped with the text."""
    with pytest.raises(TypeError):
        load_tenant_file("tenants: []", "tenants.yaml")  # type: ignore[misc]
    assert load_tenant_file("tenants: []", filename="tenants.yaml") == []


def test_an_import_of_a_tenant_this_stamp_may_not_hold_is_refused_naming_its_index_and_nothing_is_written(storage):
    suffix = uuid.uuid4().hex[:8]
    fits, us_only = (
        _record(f"teu{suffix}", f"github:org:eu-{suffix}"),
        TenantRecord(
            tenant_id=f"tus{suffix}",
            display_name="US only",
            identities=(f"github:org:us-{suffix}",),
            data_boundary="US",
        ),
    )
    registry = TenantRegistry(storage, cache_seconds=0, data_boundary=DataBoundary.EU)
    with pytest.raises(GatekeeperError) as info:
        registry.import_records([fits, us_only])
    assert info.value.field == "tenants[1].data_boundary"
    assert f"tenant tus{suffix} requires data boundary US" in info.value.detail
    assert registry.get(fits.tenant_id) is None and registry.get(us_only.tenant_id) is None


def test_an_organisation_url_python_cannot_split_drops_only_that_hint():
    """A service hook whose collection URL cannot be split still names its organisation by account id, so the
    tenant is found and the signature decides; one bad field does not blank every hint of the request."""
    account = "b29e3ff3-4a40-4b5b-ab92-1ec7f1c5d8f6"
    body = {
        "resourceContainers": {"collection": {"baseUrl": "https://[dev.azure.com/contoso/"}, "account": {"id": account}}
    }
    assert source_identities(EventSource.AZURE_DEVOPS, body) == [f"azure-devops:account:{account}"]


def test_of_several_problems_in_a_tenant_record_the_first_field_is_named():
    document = {"tenants": [{"tenant_id": "Not A Valid Id", "display_name": ""}]}
    with pytest.raises(ValueError) as info:
        load_tenant_file(json.dumps(document), filename="tenants.json")
    assert str(info.value).startswith("tenants.json: tenants[0].tenant_id: ")


def test_a_connector_envelope_naming_another_account_is_refused_naming_the_envelope_field():
    """The envelope's `account` is checked on its own first, so a foreign account is blamed on `account`, not on
    the vendor payload's field (which names the tenant's own company here)."""
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", identities=("connectwise:company:contoso",))
    document = {"connector": "connectwise", "account": "Fabrikam", "payload": {"CompanyId": "Contoso"}}
    with pytest.raises(GatekeeperError) as info:
        bind_connector(tenant, EventSource.CONNECTWISE, document)
    assert info.value.field == "account"
    bind_connector(tenant, EventSource.CONNECTWISE, {**document, "account": "contoso"})  # its own: bound
