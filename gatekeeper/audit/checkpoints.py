"""Checkpoints: a signed statement "tenant T's log had N entries with Merkle root R at time t".

The signed body is a C2SP-checkpoint-like note (https://c2sp.org/tlog-checkpoint):

    gatekeeper.audit/<tenant>\\n<size>\\n<root, standard base64>\\n<time, RFC 3339 UTC>\\n

The signature is RS256 (new keys, RSA-3072) or ES256 (EC P-256) over SHA-256(note), made by a Key Vault
key; RS256 signatures are PKCS#1 v1.5, ES256 signatures raw r||s (JWS form, what Key Vault returns).
Verification here is offline: it needs only the public key PEM and the `cryptography` package, never Azure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.audit.ports import NoteSignature, NoteSigner
from gatekeeper.errors import MalformedInput

ORIGIN_PREFIX = "gatekeeper.audit/"
ES256 = "ES256"
RS256 = "RS256"
MIN_RSA_BITS = 2048  # below this an RSA signature proves little; new checkpoint keys are 3072
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class CheckpointFormatError(MalformedInput, ValueError):
    """A checkpoint note or signature block is malformed; the message names the line or field."""

    default_code = "malformed-checkpoint"
    default_title = "The checkpoint is malformed"

    def __str__(self) -> str:
        return self.detail


def origin_for(tenant_id: str) -> str:
    return ORIGIN_PREFIX + tenant_id


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str

    @property
    def tenant(self) -> str:
        return self.origin[len(ORIGIN_PREFIX) :] if self.origin.startswith(ORIGIN_PREFIX) else ""

    def note(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n{self.time}\n"

    @classmethod
    def parse(cls, note: str) -> Checkpoint:
        if not isinstance(note, str) or not note.endswith("\n"):
            raise CheckpointFormatError("note: must be text ending in a newline")
        lines = note[:-1].split("\n")
        if len(lines) != 4:
            raise CheckpointFormatError(f"note: expected 4 lines (origin, size, root, time), got {len(lines)}")
        origin, size_text, root_text, time_text = lines
        if not origin.startswith(ORIGIN_PREFIX) or len(origin) == len(ORIGIN_PREFIX):
            raise CheckpointFormatError(f"note line 1: origin must start with {ORIGIN_PREFIX!r}")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise CheckpointFormatError("note line 2: size must be a decimal number without leading zeros")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointFormatError("note line 3: root must be standard base64") from None
        if len(root) != 32 or base64.b64encode(root).decode("ascii") != root_text:
            raise CheckpointFormatError("note line 3: root must be 32 bytes in canonical base64")
        if not _TIME.match(time_text):
            raise CheckpointFormatError("note line 4: time must be RFC 3339 UTC ending in Z")
        return cls(origin, int(size_text), root, time_text)


class SignedCheckpoint(BaseModel):
    """A checkpoint as stored (table entity, WORM blob) and exported: the note is the source of truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str = Field(min_length=1, max_length=4096)
    algorithm: str = Field(pattern=r"^(ES256|RS256)$")
    key_id: str = Field(max_length=2048)
    key_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(min_length=1, max_length=4096)  # standard base64

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.parse(self.note)

    def signature_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointFormatError("signature: must be standard base64") from None

    def signed_note_text(self) -> str:
        """The note followed by a C2SP-style signature line, for humans and the OSCAL back-matter."""
        tag = bytes.fromhex(self.key_fingerprint)[:4]
        return (
            f"{self.note}\n\u2014 {self.algorithm.lower()}:{self.key_id} "
            + base64.b64encode(tag + self.signature_bytes()).decode("ascii")
            + "\n"
        )


def sign_checkpoint(signer: NoteSigner, checkpoint: Checkpoint) -> SignedCheckpoint:
    note = checkpoint.note()
    result: NoteSignature = signer.sign_note(note.encode("utf-8"))
    return SignedCheckpoint(
        note=note,
        algorithm=result.algorithm,
        key_id=result.key_id,
        key_fingerprint=result.key_fingerprint,
        signature=base64.b64encode(result.signature).decode("ascii"),
    )


def key_fingerprint(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_key_pem(key: PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_keys(pem_text: str | bytes) -> dict[str, PublicKey]:
    """Every PUBLIC KEY block in a PEM text (several when the checkpoint key was rotated), by fingerprint."""
    text = pem_text.decode("ascii", "replace") if isinstance(pem_text, bytes) else pem_text
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise CheckpointFormatError("public key: no '-----BEGIN PUBLIC KEY-----' block found")
    keys: dict[str, PublicKey] = {}
    for number, block in enumerate(blocks, start=1):
        try:
            key = serialization.load_pem_public_key(block.encode("ascii"))
        except ValueError:
            raise CheckpointFormatError(f"public key block {number}: not a valid PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CheckpointFormatError(f"public key block {number}: must be an EC or RSA key")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise CheckpointFormatError(f"public key block {number}: RSA keys must have at least {MIN_RSA_BITS} bits")
        keys[key_fingerprint(key)] = key
    return keys


def algorithm_for(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CheckpointFormatError("public key: EC checkpoint keys must use curve P-256 (ES256)")
        return ES256
    return RS256


# Stateless parameter objects, built once: a verifier checks hundreds of checkpoints per bundle.
_ECDSA_SHA256 = ec.ECDSA(Prehashed(hashes.SHA256()))
_PKCS1V15 = padding.PKCS1v15()
_PREHASHED_SHA256 = Prehashed(hashes.SHA256())


def verify_signature(key: PublicKey, algorithm: str, note: bytes, signature: bytes) -> bool:
    """True when `signature` is `algorithm` over SHA-256(note) by `key`."""
    digest = hashlib.sha256(note).digest()
    try:
        if algorithm == ES256 and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, digest, _ECDSA_SHA256)
            return True
        if algorithm == RS256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, _PKCS1V15, _PREHASHED_SHA256)
            return True
    except InvalidSignature:
        return False
    return False
