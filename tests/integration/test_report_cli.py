"""`gatekeeper report` against the real audit log on Azurite: a history written through `AuditLog`, read back
by the command with the settings every other command uses, and written as report.json and report.html."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from azure.data.tables import UpdateMode

from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.records import RecordKind
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.cli import main
from gatekeeper.report.metrics import build_report
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.support.report_history import WINDOW, History, rich_history

pytestmark = pytest.mark.azurite

PERIOD = ["--since", WINDOW.since.isoformat(), "--until", WINDOW.until.isoformat()]
KINDS = {k.value for k in RecordKind}  # `override` and `model_fitted` once the recommendations add them


@pytest.fixture
def settings_env(monkeypatch, tmp_path, storage_connection_string):
    key_dir = tmp_path / "keys"
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(key_dir))
    monkeypatch.setenv("GATEKEEPER_STORAGE_CONNECTION", storage_connection_string)
    return key_dir


def write(history: History, connection: str, key_dir, tenant: str) -> tuple[AuditLog, History]:
    """The history's entries through the real log (sealed, chained); returns what the log accepted."""
    storage = StorageAccount(connection_string=connection)
    cipher = build_cipher(storage, LocalKeyProvider(key_dir))
    log = AuditLog(storage, cipher, LocalCheckpointKey(key_dir).signer(), tenant)
    kept = History([e for e in sorted(history.entries, key=lambda e: e[1]) if e[0] in KINDS])
    items = [
        {"kind": kind, "actor": actor, "instance_id": instance_id, "subject": instance_id, "data": data, "at": at}
        for kind, at, instance_id, actor, data in kept.entries
    ]
    for start in range(0, len(items), 90):
        log.append_many(items[start : start + 90])
    return log, kept


def test_report_from_the_audit_log_has_the_figures_of_the_history(
    settings_env, storage_connection_string, unique_name, tmp_path, capsys
):
    _, kept = write(rich_history(), storage_connection_string, settings_env, unique_name)
    out = tmp_path / "report"
    assert main(["report", "--tenant", unique_name, *PERIOD, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"report for tenant {unique_name} (33 gates, " in said and "report.html" in said
    written = json.loads((out / "report.json").read_text())
    expected = build_report(kept.as_entries(), WINDOW, tenant=unique_name, generated_at=WINDOW.until)
    assert {k: v for k, v in written.items() if k != "generated_at"} == {
        k: v for k, v in expected.items() if k != "generated_at"
    }
    assert written["summary"]["gates"] == 33 and written["dora"]["deployments"] == 9
    assert written["overrides"]["by_kind"]["flagged_for_rollback"] == 4  # from follow_up entries
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg ") >= 4
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("report.html", "report.json"):  # as any file the user writes (mkstemp alone would give 0600)
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_entry_that_does_not_open_is_counted_and_left_out(
    settings_env, storage_connection_string, unique_name, tmp_path, capsys
):
    h = History()
    h.gate("g1", WINDOW.since + timedelta(hours=1), "L1", "staging", final="approved")
    h.gate("g2", WINDOW.since + timedelta(hours=2), "L0", "builds", final="approved")
    log, _ = write(h, storage_connection_string, settings_env, unique_name)
    entries = list(log.entries())
    moved = next(e for e in entries if e["instance_id"] == "g2" and e["kind"] == "decision")
    entity = log.table.get_entity("log", f"{moved['seq']:020d}")
    entity["data"] = next(e for e in entries if e["instance_id"] == "g1" and e["kind"] == "decision")["data"]
    log.table.update_entity(entity, mode=UpdateMode.MERGE)  # a sealed value moved to another row
    assert main(["report", "--tenant", unique_name, *PERIOD, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["entries"]["unreadable"] == 1
    assert report["gates"]["by_level"]["L1"] == 1 and report["gates"]["by_level"]["L0"] == 0
    assert "1 entries could not be opened" in capsys.readouterr().err
    assert "could not be opened" in (tmp_path / "report.html").read_text()


def test_a_tenant_without_entries_gets_a_report_that_says_so(settings_env, unique_name, tmp_path, capsys):
    assert main(["report", "--tenant", unique_name, "--since", "7d", "--out", str(tmp_path)]) == 0
    assert "(no audit entries in the period)" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["empty"] is True
    assert "No audit entries were recorded" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "forever"], "--since: 'forever' is not a span like 30d"),
        (["--since", "800d"], "--since: the period may span at most 731 days"),
        (["--since", "99999w"], "--since: "),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "--since: must be earlier than --until"),
        (["--until", "tomorrow"], "--until: 'tomorrow' is not"),
    ],
)
def test_bad_periods_exit_2_naming_the_option(settings_env, unique_name, tmp_path, capsys, options, message):
    assert main(["report", "--tenant", unique_name, *options, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_tenant_and_out_exit_2_and_write_nothing(settings_env, unique_name, tmp_path, capsys):
    assert main(["report", "--tenant", "../etc", "--out", str(tmp_path / "r")]) == 2
    assert "--tenant: " in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["report", "--tenant", unique_name, "--out", str(blocker)]) == 2
    assert f"--out: {blocker} is not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"


def test_unreachable_storage_is_named_not_a_traceback(settings_env, monkeypatch, unique_name, tmp_path, capsys):
    closed = "http://127.0.0.1:9/devstoreaccount1"  # the discard port: nothing listens
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's
    connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};TableEndpoint={closed};"
    monkeypatch.setenv("GATEKEEPER_STORAGE_CONNECTION", connection)
    assert main(["report", "--tenant", unique_name, "--out", str(tmp_path / "r")]) == 2
    said = capsys.readouterr().err
    assert f"storage: cannot read the audit log of tenant {unique_name} (ServiceRequestError)" in said
    assert not (tmp_path / "r").exists()
