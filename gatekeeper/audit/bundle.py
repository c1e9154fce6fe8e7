"""The export bundle: everything an auditor needs to verify a tenant's log offline, in one JSON file.

    {
      "format": "gatekeeper-audit-bundle/1",
      "tenant": "contoso", "origin": "gatekeeper.audit/contoso", "exported_at": "...Z",
      "range": {"from": null | "...Z", "to": null | "...Z", "start_seq": a, "end_seq": b},
      "frontier": ["<hex>", ...],        # compact range of the leaves [0, a) the bundle leaves out
      "entries": [{seq, tenant, kind, at, actor, instance_id, subject, data (sealed), prev_hash, entry_hash}],
      "checkpoints": [{note, algorithm, key_id, key_fingerprint, signature}],
      "consistency": [{"from_size": s1, "to_size": s2, "proof": ["<hex>", ...]}],
      "public_keys": ["-----BEGIN PUBLIC KEY-----..."]
    }

Entries are exported sealed, exactly as stored, so the bundle proves integrity without revealing data.
`end_seq` is always the size of a signed checkpoint (the export signs one first if needed); the last
checkpoint before `start_seq` is included too, linked by a consistency proof.

The file is read strictly (`strict_json`): a repeated key makes the bundle ambiguous and fails
verification, NaN/Infinity or nesting past the bound make it unreadable. `range.from/to` are not signed,
so they are checked against the entries the way the exporter chose them (`range_problem`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper.audit import strict_json
from gatekeeper.audit.checkpoints import (
    CheckpointFormatError,
    PublicKey,
    SignedCheckpoint,
    load_public_keys,
    origin_for,
)
from gatekeeper.audit.merkle import EMPTY_ROOT, CompactRange, MerkleTree
from gatekeeper.audit.records import entry_canonical, entry_hash
from gatekeeper.audit.verify import Progress, VerificationError, VerificationResult, check_log
from gatekeeper.errors import MalformedInput
from gatekeeper.store.tables import TENANT_ID_PATTERN

BUNDLE_FORMAT = "gatekeeper-audit-bundle/1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# format_time's form: fixed width, so text order is time order
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class BundleFormatError(MalformedInput, ValueError):
    """The file is not a readable bundle (or key file); the message names the field. CLI exit code 2."""

    default_code = "malformed-bundle"
    default_title = "The audit bundle is malformed"

    def __str__(self) -> str:
        return self.detail


class BundleRange(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from", pattern=_TIME.pattern)
    to: str | None = Field(default=None, pattern=_TIME.pattern)
    start_seq: int = Field(ge=0)
    end_seq: int = Field(ge=0)


class ConsistencyProof(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_size: int = Field(ge=0)
    to_size: int = Field(ge=0)
    proof: list[str] = Field(max_length=128)

    @field_validator("proof")
    @classmethod
    def _hex(cls, value: list[str]) -> list[str]:
        if not all(map(_HEX64.match, value)):
            raise ValueError("every proof hash must be 64 lower-case hex digits")
        return value


class BundleHeader(BaseModel):
    """Everything but the entries, validated strictly; entries are checked one by one by the verifier."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["gatekeeper-audit-bundle/1"]
    tenant: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    origin: str
    exported_at: str
    range: BundleRange
    frontier: list[str] = Field(max_length=64)
    entries: list[Any]
    checkpoints: list[Any]
    consistency: list[ConsistencyProof]
    public_keys: list[str] = Field(default_factory=list)

    @field_validator("frontier")
    @classmethod
    def _hex(cls, value: list[str]) -> list[str]:
        if not all(map(_HEX64.match, value)):
            raise ValueError("every frontier hash must be 64 lower-case hex digits")
        return value


def _leaf(entry: Mapping[str, Any]) -> bytes:
    """The leaf hash of an entry as stored; a damaged entry gets a hash no honest entry has."""
    try:
        return entry_hash(entry_canonical(entry))
    except (KeyError, TypeError, ValueError):
        return b"\xff" * 32


def build_bundle(
    tenant_id: str,
    entries: Sequence[Mapping[str, Any]],
    checkpoints: Sequence[SignedCheckpoint],
    *,
    start_seq: int,
    end_seq: int,
    exported_at: str,
    time_from: str | None = None,
    time_to: str | None = None,
    public_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Assemble a bundle from all entries [0, end_seq) (needed for the frontier and proofs), keeping
    entries [start_seq, end_seq) and the checkpoints that anchor them."""
    if not 0 <= start_seq <= end_seq:
        raise ValueError(f"range: start_seq {start_seq} must not exceed end_seq {end_seq}")
    # Fewer entries than end_seq only happens when entries were removed from storage: export what is
    # there, declare what should be, and let the verifier name the first missing entry.
    tree = MerkleTree(_leaf(e) for e in entries[:end_seq])
    start_seq = min(start_seq, tree.size)
    frontier = CompactRange()
    for i in range(start_seq):
        frontier.append(tree.leaf(i))
    by_size: dict[int, SignedCheckpoint] = {}
    for signed in checkpoints:
        size = signed.checkpoint().size
        if size <= end_seq:
            by_size.setdefault(size, signed)
    before = [s for s in by_size if s < start_seq]
    keep = sorted([s for s in by_size if s >= start_seq] + ([max(before)] if before else []))
    proofs = [
        {"from_size": a, "to_size": b, "proof": [h.hex() for h in tree.consistency_proof(a, b)]}
        for a, b in itertools.pairwise(keep)
        if b <= tree.size
    ]
    return {
        "format": BUNDLE_FORMAT,
        "tenant": tenant_id,
        "origin": origin_for(tenant_id),
        "exported_at": exported_at,
        "range": {"from": time_from, "to": time_to, "start_seq": start_seq, "end_seq": end_seq},
        "frontier": [h.hex() for h in frontier.hashes],
        "entries": [dict(e) for e in entries[start_seq:end_seq]],
        "checkpoints": [by_size[s].model_dump() for s in keep],
        "consistency": proofs,
        "public_keys": list(public_keys),
    }


def dumps(bundle: Mapping[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _duplicate_result(exc: strict_json.DuplicateKeyError) -> VerificationResult:
    """A repeated key as a verification failure naming the first entry it leaves unproven: the entry
    that repeats it, else the first entry of the bundle (a header key can change what every entry means)."""
    document, path = exc.document, exc.path
    start = 0
    if isinstance(document, dict) and isinstance(document.get("range"), dict):
        found = document["range"].get("start_seq")
        start = found if type(found) is int and found >= 0 else 0
    seq, where = start, strict_json.format_path(path)
    if len(path) >= 2 and path[0] == "entries" and isinstance(path[1], int):
        seq, where = start + path[1], "entry" + (f" field {path[2]!r}" if len(path) > 2 else "")
    problem = f"{where} repeats the key {exc.key!r}: the JSON is ambiguous (readers disagree on its value)"
    return VerificationResult(False, 0, EMPTY_ROOT.hex(), 0, 0, seq, problem)


def read_bundle(raw: bytes | str, source: str = "bundle") -> dict[str, Any]:
    """Parse a bundle strictly. BundleFormatError names `source` and the problem; a repeated key is readable
    but ambiguous, so it fails verification: VerificationError naming the entry it leaves unproven, with the
    parser's message as its `__cause__`."""
    try:
        data = strict_json.loads(raw, source=source)
    except strict_json.DuplicateKeyError as exc:
        raise VerificationError.of(_duplicate_result(exc)) from exc
    except strict_json.StrictJSONError as exc:
        raise BundleFormatError(str(exc)) from None
    if not isinstance(data, dict):
        raise BundleFormatError(f"{source}: top level must be a JSON object")
    return data


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Read a bundle file; BundleFormatError names the file when it is unreadable or not strict JSON."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BundleFormatError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    return read_bundle(raw, str(path))


def range_problem(header: BundleHeader) -> tuple[int, str] | None:
    """(first unproven seq, why) when `range.from/to` disagree with the entries, else None.

    The exporter starts an open range (`from` null) at seq 0 and any other at the first entry recorded in
    [from, to]; it ends at the first checkpoint after the last entry in the range. So the first entry lies
    in the range, and no checkpoint of the bundle falls between the last in-range entry and the end."""
    rng, entries = header.range, header.entries
    time_from, time_to = rng.from_, rng.to
    if rng.end_seq != rng.start_seq + len(entries):
        return min(rng.end_seq, rng.start_seq + len(entries)), (
            f"range.end_seq {rng.end_seq} disagrees with the entries (seq {rng.start_seq} "
            f"onwards, {len(entries)} of them)"
        )
    if time_from is not None and time_to is not None and time_from > time_to:
        return rng.start_seq, f"range.from {time_from} is after range.to {time_to}"
    if not entries:
        return None
    if time_from is None and rng.start_seq != 0:
        return 0, f"range.from is open (the whole log) but the bundle leaves out seq 0..{rng.start_seq - 1}"
    if time_from is None and time_to is None:
        return None
    times: list[str] = []
    for index, entry in enumerate(entries):
        at = entry.get("at") if type(entry) is dict else None
        if type(at) is not str or not _TIME.match(at):
            return rng.start_seq + index, "field 'at' is not an RFC 3339 UTC time to compare with range.from/to"
        times.append(at)
    low, high = time_from or "", time_to or "~"  # "~" sorts after every digit
    in_range = [i for i, t in enumerate(times) if low <= t <= high]
    if time_from is not None and (not in_range or in_range[0] != 0):
        return rng.start_seq, f"recorded at {times[0]}, outside the bundle's range {time_from} .. {time_to or 'now'}"
    if not in_range:
        return rng.start_seq, f"no entry of the bundle was recorded in its range .. {time_to}"
    last = rng.start_seq + in_range[-1]
    for raw in header.checkpoints:
        try:
            size = SignedCheckpoint.model_validate(raw).checkpoint().size
        except (ValidationError, CheckpointFormatError):
            continue  # the verifier names it
        if last < size < rng.end_seq:
            return size, (
                f"the checkpoint at size {size} already covers the range up to {time_to}, "
                f"but the bundle goes on to seq {rng.end_seq - 1}"
            )
    return None


def parse_header(bundle: Mapping[str, Any]) -> BundleHeader:
    try:
        return BundleHeader.model_validate(bundle)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "bundle"
        raise BundleFormatError(f"field {where}: {first['msg']}") from None


def bundle_keys(header: BundleHeader, public_key_pem: str | bytes | None) -> tuple[dict[str, PublicKey], bool]:
    """(checkpoint keys by fingerprint, trusted): the auditor's PEM when given, else the bundle's own."""
    trusted = public_key_pem is not None
    try:
        if public_key_pem is not None:
            return load_public_keys(public_key_pem), True
        if header.public_keys:
            return load_public_keys("\n".join(header.public_keys)), False
        raise BundleFormatError("field public_keys: the bundle carries no key; pass the checkpoint public key")
    except CheckpointFormatError as exc:
        raise BundleFormatError(str(exc) if trusted else f"field public_keys: {exc}") from None


def check_bundle(
    bundle: Mapping[str, Any] | bytes | str,
    public_key_pem: str | bytes | None = None,
    progress: Progress | None = None,
) -> VerificationResult:
    """Verify a bundle offline: the chain, the Merkle root at every checkpoint, the checkpoint signatures,
    the consistency proofs between checkpoints, and that every entry is covered by a signed checkpoint.

    With `public_key_pem` (the auditor's trusted copy of the checkpoint key, several PEM blocks allowed)
    signatures are checked against it; without, against the keys embedded in the bundle, which proves
    integrity only relative to whoever made the bundle (`result.trusted_key` is then False).
    Reports a failed verification in the result (for the CLI's lines and OSCAL); raises BundleFormatError
    when the bundle's header or the key is unreadable."""
    if isinstance(bundle, bytes | str):
        try:
            bundle = read_bundle(bundle)
        except VerificationError as exc:
            assert exc.result is not None
            return exc.result
    header = parse_header(bundle)
    if header.origin != origin_for(header.tenant):
        raise BundleFormatError(f"field origin: must be {origin_for(header.tenant)!r} for tenant {header.tenant!r}")
    keys, trusted = bundle_keys(header, public_key_pem)
    consistency = {(p.from_size, p.to_size): list(map(bytes.fromhex, p.proof)) for p in header.consistency}
    result = check_log(
        header.tenant,
        header.entries,
        header.checkpoints,
        keys,
        start=header.range.start_seq,
        frontier=[bytes.fromhex(h) for h in header.frontier],
        consistency=consistency,
        expected_size=header.range.end_seq,
        allow_unsigned_tail=False,
        trusted_key=trusted,
        progress=progress,
    )
    if result.ok:
        problem = range_problem(header)
        if problem is not None:
            return replace(result, ok=False, first_bad_seq=problem[0], problem=problem[1])
    return result


def verify_bundle(
    bundle: Mapping[str, Any] | bytes | str,
    public_key_pem: str | bytes | None = None,
    progress: Progress | None = None,
) -> VerificationResult:
    """`check_bundle` that raises: the verified result, or VerificationError naming the first bad entry
    (BundleFormatError when the bundle or key cannot be read at all)."""
    result = check_bundle(bundle, public_key_pem=public_key_pem, progress=progress)
    if not result.ok:
        raise VerificationError.of(result)
    return result
