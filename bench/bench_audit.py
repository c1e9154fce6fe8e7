"""Audit log benchmarks, each a ratio to a baseline measured in the same run.

- append: `AuditLog.append` (seal, hash, ETag-guarded transaction of head + entry) and `append_many`, as
  entries/s against raw `submit_transaction` batch inserts of the very same entities into Azurite
  (informative: the log pays one transaction per append for safe sequence numbers);
- verify: offline `verify_bundle` (chain, hashes, Merkle roots, signatures, consistency proofs) as entries/s
  against raw SHA-256 plus AES-256-GCM over the same canonical entry bytes. Target >= 0.5 (fastest of each
  side) and >= 0.55 (median of the interleaved rounds' ratios). Also, informative, the whole
  `gatekeeper audit verify` path: the same bundle read from its JSON bytes by the strict bounded parser, then
  verified (the parse costs more than the verification).
"""

from __future__ import annotations

import base64
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import Ratio
from gatekeeper.audit.bundle import build_bundle, dumps, verify_bundle
from gatekeeper.audit.checkpoints import Checkpoint, origin_for, sign_checkpoint
from gatekeeper.audit.merkle import CompactRange
from gatekeeper.audit.records import GENESIS_HASH, entry_canonical, format_time, sealed_entry
from gatekeeper.audit.signing import LocalCheckpointKey

APPENDS = 60
MANY = 300
VERIFY_ENTRIES = 20_000
CHECKPOINT_EVERY = 100  # the product default, GATEKEEPER_CHECKPOINT_EVERY; signed by the default local key (RSA-3072)
SEALED_BYTES = 600  # a typical sealed decision record: reasons, levels, ids
ROUNDS = 15  # interleaved; the fastest of each side. One round is ~0.13 s, so 15 cost ~2 s
FILE_ROUNDS = 3  # the bundle from its bytes: ~0.15 s a round


def _bundle(signer, tenant: str, n: int) -> dict:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    entries, checkpoints = [], []
    compact, prev = CompactRange(), GENESIS_HASH
    for seq in range(n):
        sealed = "gk1.bench." + base64.urlsafe_b64encode(os.urandom(SEALED_BYTES)).decode().rstrip("=")
        entry = sealed_entry(
            tenant,
            seq,
            "decision",
            format_time(t0 + timedelta(seconds=seq)),
            "system:gatekeeper",
            f"gate-{seq // 4}",
            f"github:contoso/web:{seq // 4}:production",
            sealed,
            prev,
        )
        entries.append(entry)
        prev = entry["entry_hash"]
        compact.append(bytes.fromhex(prev))
        if (seq + 1) % CHECKPOINT_EVERY == 0 or seq + 1 == n:
            cp = Checkpoint(origin_for(tenant), seq + 1, compact.root(), format_time(t0 + timedelta(seconds=seq)))
            checkpoints.append(sign_checkpoint(signer, cp))
    return build_bundle(
        tenant,
        entries,
        checkpoints,
        start_seq=0,
        end_seq=n,
        exported_at=format_time(t0),
        public_keys=[signer.public_key_pem()],
    )


def _verify_ratios(key_dir: str) -> list[Ratio]:
    signer = LocalCheckpointKey(key_dir).signer()
    bundle = _bundle(signer, "benchtenant", VERIFY_ENTRIES)
    pem = signer.public_key_pem()
    canonical = [entry_canonical(e) for e in bundle["entries"]]
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)

    def verify_rate() -> float:
        start = time.perf_counter()
        result = verify_bundle(bundle, public_key_pem=pem)
        elapsed = time.perf_counter() - start
        assert result.ok, result.summary()
        return VERIFY_ENTRIES / elapsed

    def raw_rate() -> float:
        sha256, encrypt = hashlib.sha256, aead.encrypt
        start = time.perf_counter()
        for data in canonical:
            sha256(data).digest()
            encrypt(nonce, data, None)
        return VERIFY_ENTRIES / (time.perf_counter() - start)

    # Interleaved rounds, fastest of each: on a shared machine a neighbour's burst should not land on one
    # side of the ratio only. The fastest of 15 rather than 5: on this 2-core VM the ratio moved between
    # 0.40 and 0.56 from run to run with 5, because a burst can cover all five verify rounds.
    # Also the median of the per-round ratios (each verify round against the raw round right after it): the
    # figure issue 11 holds to >= 0.55, less flattering than fastest-of-each but steadier than one pair.
    verify_rates, raw_rates = [], []
    for _ in range(ROUNDS):
        verify_rates.append(verify_rate())
        raw_rates.append(raw_rate())
    per_round = [v / r for v, r in zip(verify_rates, raw_rates, strict=True)]

    document = dumps(bundle)  # what `gatekeeper audit export` writes and `gatekeeper audit verify` reads

    def file_rate() -> float:
        start = time.perf_counter()
        result = verify_bundle(document, public_key_pem=pem)
        elapsed = time.perf_counter() - start
        assert result.ok, result.summary()
        return VERIFY_ENTRIES / elapsed

    file_rates, file_raw_rates = [], []
    for _ in range(FILE_ROUNDS):
        file_rates.append(file_rate())
        file_raw_rates.append(raw_rate())
    return [
        Ratio(
            "offline verify vs raw SHA-256 + AES-GCM over the same bytes",
            max(verify_rates),
            max(raw_rates),
            "entries/s",
            ">= 0.5",
        ),
        Ratio(
            "offline verify vs raw, median of the interleaved rounds' ratios",
            statistics.median(per_round),
            1.0,
            "x",
            ">= 0.55",
        ),
        Ratio(
            f"verify from the bundle's JSON bytes ({len(document) // 1_000_000} MB, strict parse + verify) vs raw",
            max(file_rates),
            max(file_raw_rates),
            "entries/s",
            "",
        ),
    ]


def _append_ratios(key_dir: str) -> list[Ratio]:
    from devstack.azurite import start_azurite
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.store.keys import LocalKeyProvider, build_cipher
    from gatekeeper.store.tables import StorageAccount

    azurite = start_azurite()
    try:
        storage = StorageAccount(connection_string=azurite.connection_string)
        cipher = build_cipher(storage, LocalKeyProvider(key_dir, key_size=2048))
        signer = LocalCheckpointKey(key_dir).signer()

        def new_log() -> AuditLog:
            tenant = "b" + uuid.uuid4().hex[:12]
            log = AuditLog(storage, cipher, signer, tenant, checkpoint_every=CHECKPOINT_EVERY)
            log.append("decision", "system:gatekeeper", data={"warm": True})  # table, data key, head
            return log

        def raw_batch_rate(log: AuditLog, count: int) -> float:
            entities = [dict(e) for e in log.table.query_entities("PartitionKey eq 'log' and RowKey lt 'head'")]
            entities = entities[1 : count + 1]
            table = storage.ensure_table("raw" + uuid.uuid4().hex[:12])
            start = time.perf_counter()
            for i in range(0, len(entities), 100):
                table.submit_transaction([("create", e) for e in entities[i : i + 100]])
            return len(entities) / (time.perf_counter() - start)

        data = {"level": "L2", "outcome": "approval_required", "reasons": ["production", "business hours"]}
        log = new_log()
        start = time.perf_counter()
        for i in range(APPENDS):
            log.append("decision", "system:gatekeeper", f"gate-{i}", f"deploy-{i}", data)
        single = APPENDS / (time.perf_counter() - start)
        single_raw = raw_batch_rate(log, APPENDS)

        log = new_log()
        items = [
            {
                "kind": "decision",
                "actor": "system:gatekeeper",
                "instance_id": f"gate-{i}",
                "subject": f"deploy-{i}",
                "data": data,
            }
            for i in range(MANY)
        ]
        start = time.perf_counter()
        log.append_many(items)
        many = MANY / (time.perf_counter() - start)
        many_raw = raw_batch_rate(log, MANY)
        return [
            Ratio("append (one transaction per entry) vs raw batch inserts", single, single_raw, "entries/s", ""),
            Ratio("append_many (99 per transaction) vs raw batch inserts", many, many_raw, "entries/s", ""),
        ]
    finally:
        azurite.stop()


def run() -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="gk-bench-audit-") as key_dir:
        return [*_append_ratios(key_dir), *_verify_ratios(key_dir)]
