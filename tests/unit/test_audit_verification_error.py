"""Audit verification fails one way: `verify_*` raise VerificationError naming the first bad entry and why,
the same entry and reason the result-reporting `check_*` give (which the CLI lines and OSCAL show)."""

from __future__ import annotations

import json

import pytest

from gatekeeper.audit import strict_json
from gatekeeper.audit.bundle import BundleFormatError, check_bundle, dumps, read_bundle, verify_bundle
from gatekeeper.audit.checkpoints import load_public_keys
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.audit.verify import VerificationError, check_log, verify_log
from gatekeeper.errors import GatekeeperError, IntegrityError, InvalidInput
from tests.unit.test_audit_support import make_bundle

ALTERED = "content altered: its hash does not match its fields"


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


@pytest.fixture
def bundle(signer):
    return make_bundle(signer, n=30, every=10)


def test_an_intact_bundle_verifies_and_returns_its_result(bundle, signer):
    result = verify_bundle(json.loads(dumps(bundle)), public_key_pem=signer.public_key_pem())
    assert result.ok and result.size == 30


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        (
            lambda b: b["entries"][7].update(kind="approval_decided"),
            7,
            "content altered: its hash does not match its fields",
        ),
        (lambda b: b["entries"].pop(12), 12, None),
        (lambda b: b["entries"][3].update(approved_by="someone"), 3, None),
    ],
)
def test_a_tampered_bundle_raises_one_error_naming_the_first_bad_entry(bundle, signer, tamper, seq, reason):
    tamper(bundle)
    pem = signer.public_key_pem()
    reported = check_bundle(json.loads(dumps(bundle)), public_key_pem=pem)
    with pytest.raises(VerificationError) as info:
        verify_bundle(json.loads(dumps(bundle)), public_key_pem=pem)
    error = info.value
    assert isinstance(error, IntegrityError) and isinstance(error, GatekeeperError)
    assert (error.seq, error.reason) == (reported.first_bad_seq, reported.problem) and error.seq == seq
    if reason is not None:
        assert error.reason == reason
    assert str(error) == reported.summary() and error.result == reported
    assert error.code == "verification-failed" and error.extra == {"seq": seq}


def test_verify_log_raises_where_check_log_reports(signer):
    keys = load_public_keys(signer.public_key_pem())
    assert verify_log("contoso", [], [], keys).ok  # an empty log claims nothing
    reported = check_log("contoso", [], [], keys, expected_size=2)
    assert not reported.ok
    with pytest.raises(VerificationError) as info:
        verify_log("contoso", [], [], keys, expected_size=2)
    assert (info.value.seq, info.value.reason) == (reported.first_bad_seq, reported.problem)


def test_a_repeated_key_is_a_verification_error_not_a_format_error(bundle):
    raw = b'{"format":"x",' + dumps(bundle)[1:]
    with pytest.raises(VerificationError) as info:
        read_bundle(raw)
    assert not isinstance(info.value, BundleFormatError)
    assert info.value.seq == 0 and "top level repeats the key 'format'" in info.value.reason
    assert isinstance(info.value.__cause__, strict_json.DuplicateKeyError)


def test_an_unreadable_bundle_is_invalid_input_naming_the_source():
    with pytest.raises(BundleFormatError) as info:
        read_bundle(b"[1]", "b.json")
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert str(info.value) == "b.json: top level must be a JSON object"
