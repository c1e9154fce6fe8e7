"""A verified bundle compared with the write-once checkpoint archive (`audit verify --against-worm`).

A bundle proves its entries up to its last checkpoint, but not that the log ended there: cut back to an
older checkpoint, it still verifies. The WORM container keeps every checkpoint ever signed, beyond the
reach of whoever wrote the bundle, so it tells the verifier how far the log had really grown. Pure code
over the raw blobs; the CLI does the reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from gatekeeper.audit import strict_json
from gatekeeper.audit.archive import blob_name
from gatekeeper.audit.bundle import BundleHeader
from gatekeeper.audit.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    PublicKey,
    SignedCheckpoint,
    origin_for,
    verify_signature,
)
from gatekeeper.audit.records import parse_time
from gatekeeper.audit.verify import VerificationResult


class _Mismatch(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.problem = seq, problem


def _archived(
    tenant: str, blobs: Sequence[tuple[str, bytes]], keys: Mapping[str, PublicKey], seq: int
) -> list[Checkpoint]:
    """Every archived checkpoint, each read strictly, filed under its own size and validly signed."""
    found = []
    for name, body in blobs:
        where = f"WORM archive blob {name}"
        try:
            signed = SignedCheckpoint.model_validate(strict_json.loads(body, source=where))
            checkpoint = signed.checkpoint()
            signature = signed.signature_bytes()
        except (strict_json.StrictJSONError, ValidationError, CheckpointFormatError) as exc:
            detail = str(exc).removeprefix(f"{where}: ")
            if isinstance(exc, ValidationError):
                detail = "not a signed checkpoint"
            raise _Mismatch(seq, f"{where} is unreadable ({detail})") from None
        if checkpoint.origin != origin_for(tenant) or name != blob_name(tenant, checkpoint.size):
            raise _Mismatch(seq, f"{where} holds checkpoint {checkpoint.origin} size {checkpoint.size}")
        key = keys.get(signed.key_fingerprint)
        if key is None or not verify_signature(key, signed.algorithm, signed.note.encode("utf-8"), signature):
            raise _Mismatch(seq, f"{where}: the signature does not verify with the trusted checkpoint key")
        found.append(checkpoint)
    return sorted(found, key=lambda c: c.size)


def against_archive(
    header: BundleHeader,
    result: VerificationResult,
    blobs: Sequence[tuple[str, bytes]],
    keys: Mapping[str, PublicKey],
) -> VerificationResult:
    """`result` (of verifying the bundle of `header`) failed when the archive shows the bundle was cut
    back: a newer checkpoint than the bundle's last (for an open range; for a range ending at `to`, one
    signed by then), a checkpoint of the same size with another root, or the bundle's last checkpoint
    missing from the archive. A damaged or foreign blob fails too: the comparison could not be made."""
    if not result.ok:
        return result
    try:
        archived = _archived(header.tenant, blobs, keys, result.size)
        ours: dict[int, bytes] = {}
        for raw in header.checkpoints:
            checkpoint = SignedCheckpoint.model_validate(raw).checkpoint()  # already verified
            ours.setdefault(checkpoint.size, checkpoint.root)
        agreed = 0
        for checkpoint in archived:
            root = ours.get(checkpoint.size)
            if root is not None and root != checkpoint.root:
                raise _Mismatch(
                    agreed,
                    f"two signed checkpoints for size {checkpoint.size} disagree (the bundle's and the WORM "
                    "archive's): the log forked",
                )
            if root is not None:
                agreed = checkpoint.size
        to = header.range.to
        later = [c for c in archived if c.size > result.size and (to is None or parse_time(c.time) <= parse_time(to))]
        if later:
            newest = later[-1]
            raise _Mismatch(
                result.size,
                f"missing: the WORM archive holds a checkpoint signed at size {newest.size} ({newest.time}) "
                f"but the bundle ends at seq {result.size - 1}",
            )
        if result.size and result.size not in {c.size for c in archived}:
            raise _Mismatch(
                result.size - 1, f"the bundle's checkpoint at size {result.size} is not in the WORM archive"
            )
    except _Mismatch as bad:
        return replace(result, ok=False, first_bad_seq=bad.seq, problem=bad.problem)
    return result


def summary(blobs: Sequence[Any], result: VerificationResult) -> str:
    return f"WORM archive: {len(blobs)} checkpoints, none beyond size {result.size}, all agree with the bundle"
