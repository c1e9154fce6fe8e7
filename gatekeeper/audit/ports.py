"""The two things the audit log needs from outside, as small interfaces.

`gatekeeper.store.envelope.EnvelopeCipher` satisfies `RecordSealer`; `gatekeeper.audit.signing.CheckpointSigner`
satisfies `NoteSigner`. Tests and the verifier depend on these shapes, not on Key Vault or storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class RecordSealer(Protocol):
    """Seals a record's JSON data for one exact (tenant, table, partition, row); opening elsewhere fails.
    The same shape as `gatekeeper.ingest.queue.Sealer`, so the runtime's sealer serves both."""

    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str: ...

    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any: ...


@dataclass(frozen=True)
class NoteSignature:
    """A signature over SHA-256(note): raw r||s for ES256 (JWS form, as Key Vault returns it), PKCS#1 v1.5
    for RS256. `key_fingerprint` is the hex SHA-256 of the public key's SubjectPublicKeyInfo (DER)."""

    algorithm: str
    key_id: str
    key_fingerprint: str
    signature: bytes

    def __repr__(self) -> str:
        return f"NoteSignature(algorithm={self.algorithm!r}, key_fingerprint={self.key_fingerprint[:16]!r}...)"


class NoteSigner(Protocol):
    def sign_note(self, note: bytes) -> NoteSignature: ...

    def public_key_pem(self) -> str: ...
