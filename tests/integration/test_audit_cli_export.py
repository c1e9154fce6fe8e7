"""`gatekeeper audit export|public-key|checkpoint` against Azurite, then `audit verify` offline: the path
`make demo` takes (export into demo-output/, verify the bundle with the exported public key)."""

from __future__ import annotations

import json

import pytest

from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.cli import main
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.conftest import SHARED_FIXTURES

pytestmark = pytest.mark.azurite


@pytest.fixture
def settings_env(monkeypatch, tmp_path, storage_connection_string):
    key_dir = tmp_path / "keys"
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(key_dir))
    monkeypatch.setenv("GATEKEEPER_STORAGE_CONNECTION", storage_connection_string)
    monkeypatch.setenv("GATEKEEPER_CHECKPOINT_EVERY", "4")
    return key_dir


def seed(connection, key_dir, tenant):
    storage = StorageAccount(connection_string=connection)
    cipher = build_cipher(storage, LocalKeyProvider(key_dir))
    every = Settings.from_environ().checkpoint_every  # the value the CLI's services pass (4, from settings_env)
    log = AuditLog(storage, cipher, LocalCheckpointKey(key_dir).signer(), tenant, checkpoint_every=every)
    log.append(
        "event_received",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:1:production",
        {"repository": "contoso/web", "commit": "9f2c1ab", "source": "github"},
    )
    log.append(
        "decision",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:1:production",
        {"level": "L1", "outcome": "proceed", "reasons": ["staging branch"]},
    )
    log.append(
        "callback",
        "system:gatekeeper",
        "gate-1",
        "github:contoso/web:1:production",
        {"target": "github", "result": "approved", "status": 204},
    )
    return log


def test_export_then_verify_offline(settings_env, storage_connection_string, unique_name, tmp_path, capsys):
    seed(storage_connection_string, settings_env, unique_name)
    out = tmp_path / "demo-output"
    assert main(["audit", "checkpoint", "--tenant", unique_name]) == 0
    assert capsys.readouterr().out.endswith("no checkpoint due yet (3 unsigned entries; --force signs now)\n")
    assert main(["audit", "checkpoint", "--tenant", unique_name, "--force"]) == 0
    assert ": checkpoint at size 3, root " in capsys.readouterr().out
    assert (
        main(
            ["audit", "export", "--tenant", unique_name, "--format", "bundle", "--out", str(out / "audit.bundle.json")]
        )
        == 0
    )
    assert (
        main(["audit", "export", "--tenant", unique_name, "--format", "oscal", "--out", str(out / "audit.oscal.json")])
        == 0
    )
    assert (
        main(
            [
                "audit",
                "export",
                "--tenant",
                unique_name,
                "--format",
                "jsonl",
                "--out",
                str(out / "audit.jsonl"),
                "--from",
                "2000-01-01",
                "--to",
                "2999-01-01T00:00:00Z",
            ]
        )
        == 0
    )
    assert main(["audit", "public-key", "--out", str(out / "checkpoint-public-key.pem")]) == 0
    capsys.readouterr()

    assert (
        main(
            ["audit", "verify", str(out / "audit.bundle.json"), "--public-key", str(out / "checkpoint-public-key.pem")]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("verified 3 entries, root ")
    schema = json.loads((SHARED_FIXTURES / "oscal" / "oscal_complete_schema-1.2.3.json").read_text())
    assert validation_errors(json.loads((out / "audit.oscal.json").read_text()), schema) == []
    lines = (out / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["event_received", "decision", "callback"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tenant", "Bad_Tenant", "--format", "bundle", "--out", "x"], "--tenant:"),
        (["--tenant", "contoso", "--format", "bundle", "--out", "x", "--from", "last tuesday"], "--from:"),
        (
            ["--tenant", "contoso", "--format", "bundle", "--out", "x", "--from", "2026-02-01", "--to", "2026-01-01"],
            "--to: must not be earlier",
        ),
    ],
)
def test_export_bad_input_exits_2(settings_env, argv, message, capsys):
    assert main(["audit", "export", *argv]) == 2
    assert message in capsys.readouterr().err


def test_export_with_bad_key_mode_exits_2(settings_env, monkeypatch, capsys):
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "floppy")
    assert main(["audit", "export", "--tenant", "contoso", "--format", "bundle", "--out", "x"]) == 2
    assert "GATEKEEPER_KEY_MODE" in capsys.readouterr().err


def test_verify_against_worm_catches_a_bundle_cut_back_to_an_older_checkpoint(
    settings_env, storage_connection_string, unique_name, tmp_path, capsys
):
    """An export, then the log grows and is checkpointed again: the old bundle (or one cut back to an
    older checkpoint) still verifies on its own, but not against the checkpoints in the WORM container."""
    log = seed(storage_connection_string, settings_env, unique_name)  # 3 entries, GATEKEEPER_CHECKPOINT_EVERY=4
    key = tmp_path / "checkpoint-public-key.pem"
    assert main(["audit", "public-key", "--out", str(key)]) == 0
    old, new = tmp_path / "old.bundle.json", tmp_path / "new.bundle.json"
    assert main(["audit", "export", "--tenant", unique_name, "--format", "bundle", "--out", str(old)]) == 0
    for i in range(5):
        log.append("decision", "system:gatekeeper", f"gate-{i + 2}", f"deploy-{i}", {"level": "L1"})
    assert main(["audit", "export", "--tenant", unique_name, "--format", "bundle", "--out", str(new)]) == 0
    capsys.readouterr()

    def verify(path, *extra):
        code = main(["audit", "verify", str(path), "--public-key", str(key), "--no-progress", *extra])
        return code, capsys.readouterr()

    code, captured = verify(old)
    assert code == 0 and captured.out.startswith("verified 3 entries, root ")  # alone it cannot know
    code, captured = verify(old, "--against-worm")
    assert code == 1
    assert captured.out == (
        "first bad entry: seq 3: missing: the WORM archive holds a checkpoint signed at size 8 "
        f"({log.checkpoints()[-1].checkpoint().time}) but the bundle ends at seq 2\n"
    )
    code, captured = verify(old, "--against-worm", "--storage-connection", storage_connection_string)
    assert code == 1 and "missing: the WORM archive holds a checkpoint signed at size 8" in captured.out

    code, captured = verify(new, "--against-worm")
    assert code == 0, captured.out
    lines = captured.out.splitlines()
    assert lines[0].startswith("verified 8 entries, root ")
    archived = len(log.archive.list(unique_name))
    assert lines[1] == f"WORM archive: {archived} checkpoints, none beyond size 8, all agree with the bundle"

    # Cut the new bundle back to its checkpoint at size 7, consistently: only the archive tells.
    bundle = json.loads(new.read_text())
    sizes = [int(c["note"].split("\n")[1]) for c in bundle["checkpoints"]]
    assert sizes == [3, 7, 8]
    bundle["entries"] = bundle["entries"][:7]
    bundle["range"]["end_seq"] = 7
    bundle["checkpoints"] = [c for c, s in zip(bundle["checkpoints"], sizes, strict=True) if s <= 7]
    bundle["consistency"] = [p for p in bundle["consistency"] if p["to_size"] <= 7]
    cut = tmp_path / "cut.bundle.json"
    cut.write_text(json.dumps(bundle))
    assert verify(cut)[0] == 0
    code, captured = verify(cut, "--against-worm")
    assert code == 1 and captured.out.startswith("first bad entry: seq 7: missing: the WORM archive holds")
    assert verify(cut, "--expect-size", "8")[0] == 1


def test_verify_against_worm_without_storage_is_bad_input(settings_env, tmp_path, monkeypatch, capsys):
    from tests.unit.test_audit_support import make_bundle

    signer = LocalCheckpointKey(settings_env).signer()
    path = tmp_path / "b.json"
    path.write_bytes(json.dumps(make_bundle(signer, n=3, every=3)).encode())
    monkeypatch.delenv("GATEKEEPER_STORAGE_CONNECTION")
    monkeypatch.delenv("GATEKEEPER_STORAGE_ACCOUNT", raising=False)
    assert main(["audit", "verify", str(path), "--against-worm"]) == 2
    assert "--against-worm" in capsys.readouterr().err
