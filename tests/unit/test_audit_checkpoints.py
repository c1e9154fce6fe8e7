"""Checkpoint notes, RS256 (new keys) and ES256 (earlier keys) signatures through CryptographyClient.from_jwk,
offline verification."""

from __future__ import annotations

import base64
import hashlib
import json
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from gatekeeper.audit.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    SignedCheckpoint,
    key_fingerprint,
    load_public_keys,
    public_key_pem,
    sign_checkpoint,
    verify_signature,
)
from gatekeeper.audit.signing import CheckpointKeyError, LocalCheckpointKey

ROOT = bytes(range(32))
CP = Checkpoint("gatekeeper.audit/contoso", 42, ROOT, "2026-03-01T09:00:00.000000Z")


def test_note_is_the_documented_four_lines():
    assert CP.note() == (
        "gatekeeper.audit/contoso\n42\n" + base64.b64encode(ROOT).decode() + "\n2026-03-01T09:00:00.000000Z\n"
    )
    assert Checkpoint.parse(CP.note()) == CP
    assert CP.tenant == "contoso"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("gatekeeper.audit/contoso\n42\n", "expected 4 lines"),
        ("other/contoso\n1\n" + base64.b64encode(ROOT).decode() + "\n2026-03-01T09:00:00Z\n", "line 1"),
        ("gatekeeper.audit/contoso\n042\n" + base64.b64encode(ROOT).decode() + "\n2026-03-01T09:00:00Z\n", "line 2"),
        ("gatekeeper.audit/contoso\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n2026-03-01T09:00:00Z\n", "line 3"),
        ("gatekeeper.audit/contoso\n1\n" + base64.b64encode(ROOT).decode() + "\nyesterday\n", "line 4"),
        ("gatekeeper.audit/contoso\n1\n" + base64.b64encode(ROOT).decode() + "\n2026-03-01T09:00:00Z", "newline"),
    ],
)
def test_malformed_notes_name_the_line(note, message):
    with pytest.raises(CheckpointFormatError, match=message):
        Checkpoint.parse(note)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("keys"))


def test_local_key_file_is_private_and_reused(key):
    first = key.signer()
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    jwk = json.loads(key.path.read_text())
    assert (jwk["kty"], jwk["key_ops"]) == ("RSA", ["sign", "verify"])
    assert len(base64.urlsafe_b64decode(jwk["n"] + "==")) * 8 == 3072
    assert key.signer().key_fingerprint == first.key_fingerprint
    assert jwk["d"] not in repr(first) and jwk["d"] not in repr(key)


def test_rs256_signature_is_pkcs1_v15_over_the_note_digest(key):
    signer = key.signer()
    signed = sign_checkpoint(signer, CP)
    raw = signed.signature_bytes()
    assert signed.algorithm == "RS256" and len(raw) == 384
    # Independent check with plain `cryptography`: PKCS#1 v1.5 over SHA-256(note).
    public = load_public_keys(signer.public_key_pem())[signed.key_fingerprint]
    public.verify(raw, hashlib.sha256(CP.note().encode()).digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert verify_signature(public, "RS256", CP.note().encode(), raw)
    assert not verify_signature(public, "RS256", CP.note().encode().replace(b"42", b"43"), raw)
    assert not verify_signature(public, "ES256", CP.note().encode(), raw)


@pytest.fixture(scope="module")
def ec_key(tmp_path_factory):
    """A local key file in the EC P-256 form earlier versions created: still used as it is."""
    key = LocalCheckpointKey(tmp_path_factory.mktemp("ec-keys"))
    numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()

    def b64u(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "local://keys/audit-checkpoint/earlier",
        "x": b64u(numbers.public_numbers.x),
        "y": b64u(numbers.public_numbers.y),
        "d": b64u(numbers.private_value),
        "key_ops": ["sign", "verify"],
    }
    key.path.write_text(json.dumps(jwk))
    return key


def test_an_earlier_ec_key_file_signs_es256_as_raw_r_s_over_the_note_digest(ec_key):
    signer = ec_key.signer()
    signed = sign_checkpoint(signer, CP)
    raw = signed.signature_bytes()
    assert signed.algorithm == "ES256" and len(raw) == 64
    # Independent check with plain `cryptography`: DER-encode r||s and verify over SHA-256(note).
    public = load_public_keys(signer.public_key_pem())[signed.key_fingerprint]
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, hashlib.sha256(CP.note().encode()).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    assert verify_signature(public, "ES256", CP.note().encode(), raw)
    assert not verify_signature(public, "ES256", CP.note().encode().replace(b"42", b"43"), raw)
    assert not verify_signature(public, "RS256", CP.note().encode(), raw)


def test_rs256_verification_with_an_rsa_key():
    private = rsa.generate_private_key(65537, 2048)
    note = CP.note().encode()
    sig = private.sign(hashlib.sha256(note).digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert verify_signature(private.public_key(), "RS256", note, sig)
    assert not verify_signature(private.public_key(), "RS256", note + b"x", sig)


def test_der_signatures_are_not_accepted_as_es256():
    private = ec.generate_private_key(ec.SECP256R1())
    note = CP.note().encode()
    der = private.sign(hashlib.sha256(note).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    r, s = decode_dss_signature(der)
    assert not verify_signature(private.public_key(), "ES256", note, der)
    assert verify_signature(private.public_key(), "ES256", note, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_pem_with_several_keys_is_indexed_by_fingerprint():
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    keys = load_public_keys(public_key_pem(a.public_key()) + "\n" + public_key_pem(b.public_key()))
    assert set(keys) == {key_fingerprint(a.public_key()), key_fingerprint(b.public_key())}
    with pytest.raises(CheckpointFormatError, match="block 1: not a valid PEM"):
        load_public_keys("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_signed_checkpoint_model_rejects_unknown_fields_and_bad_algorithms(key):
    signed = sign_checkpoint(key.signer(), CP).model_dump()
    with pytest.raises(ValueError, match="algorithm"):
        SignedCheckpoint.model_validate({**signed, "algorithm": "none"})
    with pytest.raises(ValueError, match="extra"):
        SignedCheckpoint.model_validate({**signed, "extra": 1})


def test_signed_note_text_has_a_c2sp_style_signature_line(key):
    signed = sign_checkpoint(key.signer(), CP)
    text = signed.signed_note_text()
    body, sig_line = text.split("\n\n")
    assert body + "\n" == CP.note()
    assert sig_line.startswith("\u2014 rs256:local://keys/audit-checkpoint/")
    blob = base64.b64decode(sig_line.rsplit(" ", 1)[1])
    assert blob[:4] == bytes.fromhex(signed.key_fingerprint)[:4] and blob[4:] == signed.signature_bytes()


@pytest.mark.parametrize(
    "content",
    [
        '{"kty": "RSA"}',
        '{"kty": "EC", "crv": "P-384", "x": "AQ", "y": "AQ", "d": "AQ"}',
        '{"kty": "oct", "k": "AQ"}',
        '{"kty": "RSA", "n": "!", "e": "AQAB", "d": "AQ", "p": "AQ", "q": "AQ", "dp": "AQ", "dq": "AQ", "qi": 1}',
        "[]",
        "not json",
        json.dumps({"kty": "RSA", **dict.fromkeys(("n", "e", "d", "p", "q", "dp", "dq", "qi"), "AQAB")}),
    ],
)
def test_unreadable_local_key_is_reported_without_material(tmp_path, content):
    broken = LocalCheckpointKey(tmp_path)
    broken.path.write_text(content)
    with pytest.raises(CheckpointKeyError, match="unreadable"):
        broken.signer()


def test_local_key_names_are_plain(tmp_path):
    with pytest.raises(ValueError, match="name"):
        LocalCheckpointKey(tmp_path, "../escape")


def test_rsa_keys_shorter_than_2048_bits_are_not_trusted():
    weak = rsa.generate_private_key(65537, 1024).public_key()  # noqa: S505 - the point of the test
    with pytest.raises(CheckpointFormatError, match="at least 2048 bits"):
        load_public_keys(public_key_pem(weak))


def test_a_log_signed_first_by_an_ec_key_then_by_an_rsa_key_verifies_with_both_public_keys(key, ec_key):
    """The upgrade path: checkpoints before the switch stay ES256, later ones are RS256."""
    from gatekeeper.audit.bundle import build_bundle, check_bundle
    from tests.unit.test_audit_support import make_checkpoints, make_entries

    entries = make_entries("contoso", 30)
    old, new = ec_key.signer(), key.signer()
    checkpoints = [
        *make_checkpoints("contoso", entries[:10], old, 10),
        *make_checkpoints("contoso", entries, new, 10)[1:],
    ]
    assert [c.algorithm for c in checkpoints] == ["ES256", "RS256", "RS256"]
    bundle = build_bundle(
        "contoso", entries, checkpoints, start_seq=0, end_seq=30, exported_at="2026-03-01T12:00:00.000000Z"
    )
    both = old.public_key_pem() + new.public_key_pem()
    result = check_bundle(bundle, public_key_pem=both)
    assert result.ok and result.size == 30 and result.checkpoints_checked == 3
    only_new = check_bundle(bundle, public_key_pem=new.public_key_pem())
    assert not only_new.ok and only_new.first_bad_seq == 0 and "not a trusted checkpoint key" in only_new.problem
