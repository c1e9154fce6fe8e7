"""`gatekeeper identities link|list|import`: a tenant's identity map in Azurite, sealed, every change audited."""

from __future__ import annotations

import json
import uuid

import pytest

from gatekeeper.audit.log import AuditLog
from gatekeeper.cli import main
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.slack.channel import slack_external
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from tests.support.outage import AuditDownOnce

pytestmark = pytest.mark.azurite

DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
ANNA = "0a0a0a0a-0000-4000-8000-00000000a000"


@pytest.fixture
def cli(storage_connection_string, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    tenant = "t" + uuid.uuid4().hex[:10]
    conn = ["--storage-connection", storage_connection_string]
    storage = StorageAccount(connection_string=storage_connection_string)

    class Cli:
        def run(self, *args: str) -> int:
            return main(["identities", *args[:1], "--tenant", tenant, *args[1:], *conn])

        def log(self) -> AuditLog:
            return AuditLog(storage, build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys"))), None, tenant)

        def audit(self) -> list:
            return [r for r in self.log().records() if r.kind == "identity_linked"]

        def identity_map(self) -> IdentityMap:
            return IdentityMap(storage, tenant, build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys"))))

        def rows(self) -> list:
            try:
                return list(storage.tenant_table(tenant, TablePurpose.IDENTITIES).list_entities())
            except Exception:
                return []

    return Cli()


def test_link_list_and_relink_are_audited_and_sealed(cli, capsys):
    assert cli.run("link", "github:login:Dev-GH", DEV, "--by", "ops", "--note", "SSO verified") == 0
    assert "linked github:login:dev-gh to " + DEV in capsys.readouterr().out
    assert cli.run("link", "github:login:dev-gh", DEV, "--by", "ops") == 0  # unchanged: nothing to audit
    assert "already linked" in capsys.readouterr().out
    assert cli.run("link", "github:login:dev-gh", ANNA, "--by", "lead") == 0
    assert f"(was {DEV})" in capsys.readouterr().out

    assert cli.run("list", "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["external"] == "github:login:dev-gh" and listed["oid"] == ANNA and listed["linked_by"] == "lead"
    assert cli.run("list") == 0
    assert "github:login:dev-gh" in capsys.readouterr().out

    first, second = cli.audit()
    assert (first.actor, first.data["oid"], first.data["previous_oid"]) == ("ops", DEV, None)
    assert (second.actor, second.data["oid"], second.data["previous_oid"]) == ("lead", ANNA, DEV)
    [row] = cli.rows()
    assert "dev-gh" not in json.dumps({k: str(v) for k, v in row.items()}).lower()  # key hashed, entry sealed
    assert cli.identity_map().oid_of("github:login:dev-gh") == ANNA


def test_an_admin_links_a_slack_user_per_workspace(cli, capsys):
    assert cli.run("link", "slack:user:T0CONTOSO1/U0123ABCD", DEV, "--by", "ops") == 0
    assert "linked slack:user:t0contoso1/u0123abcd to " + DEV in capsys.readouterr().out
    assert cli.identity_map().oid_of(slack_external("T0CONTOSO1", "U0123ABCD")) == DEV  # what a Slack vote looks up
    assert cli.run("link", "slack:user:U0123ABCD", DEV) == 2  # no workspace: refused naming the field
    assert "external: a Slack user is <workspace id>/<user id>" in capsys.readouterr().err


def test_import_links_every_entry_and_audits_each(cli, tmp_path, capsys):
    path = tmp_path / "identities.json"
    path.write_text(
        json.dumps(
            {
                "identities": [
                    {"external": "github:id:4242", "oid": DEV},
                    {"external": "azure-devops:unique:Dev@Contoso.com", "oid": DEV, "note": "ADO"},
                    {"external": "connectwise:member:dev1", "oid": DEV.upper()},
                ]
            }
        )
    )
    assert cli.run("import", str(path), "--by", "ops") == 0
    assert "imported 3 identities" in capsys.readouterr().out
    assert len(cli.audit()) == 3 and {r.data["how"] for r in cli.audit()} == {"import"}
    assert cli.identity_map().oid_of("azure-devops:unique:dev@contoso.com") == DEV


def _links(*pairs: tuple[str, str], **extra: str) -> str:
    return json.dumps([{"external": e, "oid": o, **extra} for e, o in pairs])


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (_links(("github:login:a", DEV), ("github:login:b", "nope")), "[1].oid"),
        (json.dumps({"identities": [{"external": "gitlab:login:a", "oid": DEV}]}), "identities[0].external"),
        ('[{"external": "github:login:a"}]', "[0].oid"),
        (_links(("github:login:a", DEV), role="admin"), "[0].role"),
        (_links(("github:login:A", DEV), ("github:login:a", DEV)), "[1].external"),
        ('{"people": []}', "people"),
        ("[1, 2", "(document)"),
        ("[" * 5000 + "]" * 5000, "(document)"),
        ('[{"external": "github:login:a", "oid": "' + DEV + '", "oid": "' + DEV + '"}]', "[0].oid"),
        ('[{"external": "github:login:a", "oid": ' + "9" * 5000 + "}]", "[0].oid"),
    ],
)
def test_bad_import_files_exit_2_naming_file_and_field_and_write_nothing(cli, tmp_path, capsys, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert cli.run("import", str(path)) == 2
    err = capsys.readouterr().err
    assert f"bad.json: {field}:" in err
    assert cli.rows() == [] and cli.audit() == []


@pytest.mark.parametrize(
    ("external", "oid", "says"),
    [("github:login:dev", "not-a-guid", "oid: must be an Entra object id"), ("ado:dev", DEV, "external: provider")],
)
def test_bad_link_arguments_exit_2_naming_the_field(cli, capsys, external, oid, says):
    assert cli.run("link", external, oid) == 2
    assert says in capsys.readouterr().err
    assert cli.rows() == []


def test_an_unreadable_file_exits_2(cli, tmp_path, capsys):
    assert cli.run("import", str(tmp_path / "missing.json")) == 2
    assert "missing.json: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("relink", [False, True])
def test_a_link_whose_audit_fails_is_not_kept_and_its_retry_links_and_audits_it_once(cli, relink):
    """The map promises that a change that cannot be audited is not made. The link used to be stored before the
    audit: after an outage the retry found it linked already and returned without auditing it, ever."""
    identities = cli.identity_map()
    external = "github:login:octocat-" + uuid.uuid4().hex[:6]
    if relink:
        assert cli.run("link", external, DEV, "--by", "ops") == 0
    before = DEV if relink else None
    log = AuditDownOnce(cli.log())
    with pytest.raises(DependencyUnavailable):
        identities.link(IdentityLink(external=external, oid=ANNA), log, by="ops")
    assert identities.oid_of(external) == before, "nothing changed"
    assert identities.link(IdentityLink(external=external, oid=ANNA), log, by="ops") == before
    assert identities.oid_of(external) == ANNA
    linked = [(r.data["oid"], r.data["previous_oid"]) for r in cli.audit()]
    assert linked == [*([(DEV, None)] if relink else []), (ANNA, before)], "audited once"


def test_a_new_link_whose_audit_fails_leaves_a_re_link_written_meanwhile_in_place(cli):
    """The put-back of a new link whose audit failed deleted the row unconditionally: a re-link another linker
    wrote (ETag-conditionally, over the new row) and audited in between was removed with it, so the map no
    longer held a link its audit log says was made. Driven in that order: the other linker runs inside the
    failing append."""
    identities = cli.identity_map()
    external = "github:login:octocat-" + uuid.uuid4().hex[:6]

    class OtherLinkerThenDown:
        def append(self, *args, **kwargs):
            assert identities.link(IdentityLink(external=external, oid=DEV), cli.log(), by="lead") == ANNA
            raise DependencyUnavailable("the audit log did not answer", code="storage-unavailable")

    with pytest.raises(DependencyUnavailable):
        identities.link(IdentityLink(external=external, oid=ANNA), OtherLinkerThenDown(), by="ops")
    assert identities.oid_of(external) == DEV, "the other linker's audited re-link stays"
    assert [(r.data["oid"], r.data["previous_oid"]) for r in cli.audit()] == [(DEV, ANNA)]
