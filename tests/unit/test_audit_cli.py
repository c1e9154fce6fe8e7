"""`python -m gatekeeper audit verify`: exit codes and the exact output lines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gatekeeper.audit.bundle import dumps
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.cli import main
from tests.unit.test_audit_support import ROOT_DIR, make_bundle


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


@pytest.fixture
def files(tmp_path, signer):
    bundle_path = tmp_path / "audit.bundle.json"
    bundle_path.write_bytes(dumps(make_bundle(signer, n=30, every=10)))
    pem_path = tmp_path / "checkpoint-public-key.pem"
    pem_path.write_text(signer.public_key_pem())
    return bundle_path, pem_path


def test_verify_ok_prints_size_and_root(files, capsys):
    bundle_path, pem_path = files
    assert main(["audit", "verify", str(bundle_path), "--public-key", str(pem_path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("verified 30 entries, root ") and len(out.split("root ")[1].strip()) == 64
    assert "note:" not in err


def test_verify_without_trusted_key_says_so(files, capsys):
    assert main(["audit", "verify", str(files[0])]) == 0
    assert "pass --public-key" in capsys.readouterr().err


def test_verify_tampered_names_the_first_bad_entry(files, capsys):
    bundle_path, pem_path = files
    bundle = json.loads(bundle_path.read_text())
    bundle["entries"][17]["subject"] = "a different deployment"
    bundle_path.write_text(json.dumps(bundle))
    assert main(["audit", "verify", str(bundle_path), "--public-key", str(pem_path)]) == 1
    assert capsys.readouterr().out == ("first bad entry: seq 17: content altered: its hash does not match its fields\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a JSON document"),
        (b"[]", "top level must be a JSON object"),
        (b'{"format": "gatekeeper-audit-bundle/1"}', "field tenant: Field required"),
    ],
)
def test_unreadable_bundle_exits_2_naming_file_and_field(tmp_path, capsys, content, message):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    assert main(["audit", "verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_missing_files_exit_2(tmp_path, files, capsys):
    assert main(["audit", "verify", str(tmp_path / "absent.json")]) == 2
    assert "absent.json: cannot be read" in capsys.readouterr().err
    assert main(["audit", "verify", str(files[0]), "--public-key", str(tmp_path / "absent.pem")]) == 2
    assert "absent.pem: cannot read" in capsys.readouterr().err


def test_bad_key_file_exits_2(tmp_path, files, capsys):
    pem = tmp_path / "bad.pem"
    pem.write_text("hello")
    assert main(["audit", "verify", str(files[0]), "--public-key", str(pem)]) == 2
    assert "bad.pem" in capsys.readouterr().err


def test_module_entry_point_runs_offline(files):
    bundle_path, pem_path = files
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "audit", "verify", str(bundle_path), "--public-key", str(pem_path)],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verified 30 entries, root ")
