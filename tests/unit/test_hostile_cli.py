"""CLI inputs read through the bounded reader: a hostile file is exit 2 with a message naming the file and
the problem, never a traceback (RecursionError, ValueError from `int`) and never a half-done import."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.cli import main
from gatekeeper.policy.document import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "examples" / "policy.yaml"

HOSTILE_JSON = {
    "depth": (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 64"),
    "digits": (b'{"runId": ' + b"7" * 5000 + b"}", "integer with 5000 digits"),
    "nan": (b'{"x": NaN}', "NaN is not a JSON number"),
    "duplicate": (b'{"action": "deploy", "action": "rollback"}', "key appears more than once"),
    "not-utf8": (b'{"x": "\xff"}', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_evaluate_event_files_outside_the_bounds_exit_2_naming_the_file(tmp_path, capsys, case):
    body, expected = HOSTILE_JSON[case]
    event = tmp_path / "event.json"
    event.write_bytes(body)
    assert main(["evaluate", "--policy", str(POLICY), "--event", str(event)]) == 2
    err = capsys.readouterr().err
    assert str(event) in err and expected in err and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_evaluate_evidence_files_outside_the_bounds_exit_2(tmp_path, capsys, case):
    body, expected = HOSTILE_JSON[case]
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(body)
    event = ROOT / "examples" / "events" / "github-deployment-protection-rule.json"
    code = main(["evaluate", "--policy", str(POLICY), "--event", str(event), "--evidence", str(evidence)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err


HOSTILE_YAML = {
    "depth": ("tenants: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64"),
    "digits": ("tenants:\n  - tenant_id: contoso\n    display_name: " + "9" * 5000 + "\n", "more than 20 digits"),
    "duplicate": ("tenants:\n  - tenant_id: contoso\n    tenant_id: fabrikam\n", "key appears more than once"),
    "bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
        + "tenants: []\n",
        "once aliases are expanded",
    ),
    "nan": ("tenants:\n  - tenant_id: .nan\n", "not a finite number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_tenants_import_of_a_hostile_file_exits_2_before_touching_storage(tmp_path, capsys, case):
    text, expected = HOSTILE_YAML[case]
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    # an unreachable storage account: the file is refused before any client is built
    code = main(["tenants", "import", str(path), "--storage-connection", "UseDevelopmentStorage=true;Bogus"])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and expected in err, err


def test_tenants_import_of_hostile_json_exits_2(tmp_path, capsys):
    path = tmp_path / "tenants.json"
    path.write_bytes(b'{"tenants": [' + b"[" * 5000 + b"]" * 5000 + b"]}")
    assert main(["tenants", "import", str(path), "--storage-connection", "UseDevelopmentStorage=true"]) == 2
    assert "nested deeper than 64" in capsys.readouterr().err


def test_tenants_import_of_a_file_that_is_not_utf8_exits_2(tmp_path, capsys):
    path = tmp_path / "tenants.yaml"
    path.write_bytes(b"tenants:\n  - tenant_id: \xff\xfe\n")
    assert main(["tenants", "import", str(path), "--storage-connection", "UseDevelopmentStorage=true"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n", "(document)"),
        ("version: 1\nversion: 2\nrules: []\n", "$.version"),
        ("version: 1\nrules:\n  - name: " + "1" * 5000 + "\n", "(document)"),
    ],
)
def test_policy_files_outside_the_bounds_are_a_policy_error(text, where):
    with pytest.raises(PolicyError) as caught:
        load_policy(text, name="hostile.yaml")
    assert caught.value.field == where


def test_audit_export_bounds_outside_the_representable_range_exit_2(capsys):
    code = main(
        [
            "audit",
            "export",
            "--tenant",
            "contoso",
            "--format",
            "bundle",
            "--out",
            "-",
            "--from",
            "0001-01-01T00:00:00+14:00",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--from" in err and "Traceback" not in err
