"""Transit data keys: how the ingestion edge seals an event without a private-key operation.

The edge only ever *seals* (the dispatcher opens), and wrapping a data key needs only the KEK's public key.
So, per tenant and cache period, an ingesting instance makes a fresh AES-256 data key, wraps it locally with
the tenant KEK's public key (RSA-OAEP-256, what Key Vault's `wrapKey` does; the key and its versioned id are
kept in the tenant record, `TenantRecord.kek_public`), registers the wrapped key as a *transit* row in the
tenant's Keys table (create-only) and seals under it in the ordinary `gk1` format. The dispatcher opens such
a value exactly like any other: it reads the row and unwraps it with the KEK, in Key Vault, once per cache
period (gatekeeper.store.keyring). Nothing on the edge imports the Key Vault SDK or touches a private key.

Why the row, and not just the wrapped key inside the message: a public key gives confidentiality, not
authenticity. Anybody may wrap a key of their own under a public key, so a message carrying its own wrapped
key could be forged by whoever can write to the queue. Requiring the wrapped key to be registered in the
tenant's Keys table keeps queued events as hard to forge as before (the Keys table decides which data keys
exist, as it always has). A public key substituted in the tenant record wraps keys the KEK cannot unwrap:
the dispatcher refuses them (`unwrap-refused`), dead-letters and audits the message; it opens nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError

from gatekeeper.encoding import b64url_decode_strict, int_to_b64url
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id

if TYPE_CHECKING:
    from gatekeeper.store.envelope import EnvelopeCipher

TRANSIT_PARTITION = "transit"
TRANSIT_ID_PREFIX = "t"  # ordinary data-key ids are hex, so a leading "t" can only be a transit key
WRAP_ALGORITHM = "RSA-OAEP-256"  # azure.keyvault.keys.crypto.KeyWrapAlgorithm.rsa_oaep_256 (not imported here)
DATA_KEY_BYTES = 32
MIN_MODULUS_BITS = 2048
MAX_MODULUS_BITS = 8192  # bounded: a hostile record cannot make the edge compute with a huge number
MAX_EXPONENT_BITS = 32
_KID_VERSION = r"[A-Za-z0-9]{1,64}"
_KID_VAULT = r"(?:https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|local:/)"
_TRANSIT_ID = re.compile(r"t[0-9a-f]{16}")
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_]{1,16}")


class InvalidPublicKey(ValueError):
    """A KEK public key that cannot be used; the message names the member."""


def transit_id() -> str:
    """A new transit data-key id: `t` and 16 hex digits (fits the key ring's data-key id pattern)."""
    return TRANSIT_ID_PREFIX + secrets.token_hex(8)


def is_transit_id(data_key_id: str) -> bool:
    return bool(_TRANSIT_ID.fullmatch(data_key_id))


def kid_pattern(tenant_id: str) -> re.Pattern[str]:
    """Versioned ids of the tenant's own KEK: `https://<vault>/keys/tenant-<id>/<version>` in Key Vault,
    `local://keys/tenant-<id>/<version>` locally."""
    return re.compile(rf"{_KID_VAULT}/keys/tenant-{re.escape(validate_tenant_id(tenant_id))}/{_KID_VERSION}")


def _jwk_int(jwk: Mapping[str, Any], name: str) -> int:
    text = jwk.get(name)
    if not isinstance(text, str):
        raise InvalidPublicKey(f"{name}: expected a base64url string")
    try:
        raw = b64url_decode_strict(text)
    except ValueError:
        raise InvalidPublicKey(f"{name}: not canonical unpadded base64url") from None
    if raw[:1] == b"\x00":
        raise InvalidPublicKey(f"{name}: has a leading zero byte (not the shortest encoding)")
    return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class KekPublicKey:
    """The public half of a tenant's KEK version: what the edge wraps transit data keys with."""

    kid: str
    n: int = field(repr=False)
    e: int = field(repr=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], tenant_id: str | None = None) -> KekPublicKey:
        """Strictly read `{kty: RSA, kid, n, e}`. With `tenant_id`, the kid must name that tenant's key."""
        if not isinstance(jwk, Mapping):
            raise InvalidPublicKey("expected a JSON Web Key object")
        unknown = sorted(str(name) for name in set(jwk) - {"kty", "kid", "n", "e"})
        if unknown:  # private members (d, p, q, ...) never belong in a record
            shown = unknown[0] if _MEMBER_NAME.fullmatch(unknown[0]) else "(unknown member)"
            raise InvalidPublicKey(f"{shown}: not a member of a public RSA key")
        if jwk.get("kty") != "RSA":
            raise InvalidPublicKey("kty: must be RSA")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 400:
            raise InvalidPublicKey("kid: expected the versioned key id")
        if tenant_id is not None and not kid_pattern(tenant_id).fullmatch(kid):
            raise InvalidPublicKey(f"kid: does not name a version of the key tenant-{tenant_id}")
        n, e = _jwk_int(jwk, "n"), _jwk_int(jwk, "e")
        if not MIN_MODULUS_BITS <= n.bit_length() <= MAX_MODULUS_BITS or n % 2 == 0:
            raise InvalidPublicKey(f"n: must be an odd modulus of {MIN_MODULUS_BITS}-{MAX_MODULUS_BITS} bits")
        if e < 3 or e % 2 == 0 or e.bit_length() > MAX_EXPONENT_BITS:
            raise InvalidPublicKey(f"e: must be an odd exponent from 3 to {MAX_EXPONENT_BITS} bits")
        return cls(kid, n, e)

    def to_jwk(self) -> dict[str, str]:
        return {"kty": "RSA", "kid": self.kid, "n": int_to_b64url(self.n), "e": int_to_b64url(self.e)}

    def wrap(self, key: bytes) -> bytes:
        """RSA-OAEP with SHA-256 and MGF1-SHA-256 (JWA RSA-OAEP-256), as Key Vault wraps: public key only."""
        return _public_key(self.n, self.e).encrypt(key, _oaep())


@functools.lru_cache(maxsize=256)
def _public_key(n: int, e: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.RSAPublicNumbers(e, n).public_key()


def _oaep() -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@functools.lru_cache(maxsize=1024)
def parse_kek_public(tenant_id: str, kid: str, n: str, e: str) -> KekPublicKey:
    """`KekPublicKey.from_jwk` for a record's members, memoised (records are re-read, keys rarely change)."""
    return KekPublicKey.from_jwk({"kty": "RSA", "kid": kid, "n": n, "e": e}, tenant_id)


def transit_row(data_key_id: str, wrapped: bytes, kid: str, now: dt.datetime) -> dict[str, Any]:
    """The Keys-table row of a transit key: the shape of a data-key row, in its own partition."""
    return {
        "PartitionKey": TRANSIT_PARTITION,
        "RowKey": data_key_id,
        "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
        "kek_id": kid,
        "algorithm": WRAP_ALGORITHM,
        "created": now,
    }


class TransitKeys:
    """A key source for the envelope cipher that only seals: each `active_key` call makes, wraps (public key)
    and registers a new transit data key. The cipher caches it per tenant for its cache period."""

    def __init__(
        self,
        storage: StorageAccount,
        public_key_for: Callable[[str], KekPublicKey | None],
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._storage = storage
        self._public_key_for = public_key_for
        self._clock = clock

    def __repr__(self) -> str:
        return "TransitKeys()"

    def active_key(self, tenant_id: str) -> tuple[str, bytes]:
        public = self._public_key_for(tenant_id)
        if public is None:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: no KEK public key in the tenant record")
        key = secrets.token_bytes(DATA_KEY_BYTES)
        try:
            wrapped = public.wrap(key)
        except Exception as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: the KEK public key cannot wrap") from exc
        data_key_id = transit_id()
        self._register(tenant_id, transit_row(data_key_id, wrapped, public.kid, self._clock()))
        return data_key_id, key

    def data_key(self, tenant_id: str, data_key_id: str) -> bytes:
        raise KeyGone(f"tenant {tenant_id}: the edge seals only; transit keys are opened by the key ring")

    def _register(self, tenant_id: str, row: dict[str, Any]) -> None:
        """Create-only, before anything is sealed under the key: a key that is not registered never seals."""
        table = self._storage.tenant_table(validate_tenant_id(tenant_id), TablePurpose.KEYS)
        try:
            try:
                table.create_entity(row)
            except ResourceNotFoundError:  # the tenant's Keys table does not exist yet
                self._storage.ensure_tenant_table(tenant_id, TablePurpose.KEYS)
                table.create_entity(row)
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: the transit key cannot be registered") from exc


class Sealer(Protocol):
    """What seals and opens JSON for a place (gatekeeper.ingest.queue.Sealer; declared here, store/ never
    imports ingest/)."""

    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str: ...

    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any: ...


class EdgeSealer:
    """What the ingestion edge seals queued events with: a transit key when the tenant record carries its KEK
    public key, else the process's envelope cipher (the tenant's active data key, unwrapped by the KEK).

    Records written before `kek_public` existed keep working on the old path until `gatekeeper tenants
    import` or `gatekeeper keys rotate` fills it in. Opening always goes to the envelope cipher."""

    def __init__(
        self,
        transit: EnvelopeCipher,
        has_public_key: Callable[[str], bool],
        fallback: Callable[[], Sealer],
    ) -> None:
        self._transit = transit
        self._has_public_key = has_public_key
        self._fallback = fallback

    def __repr__(self) -> str:
        return f"EdgeSealer({self._transit!r})"

    def _for(self, tenant_id: str) -> Sealer:
        return self._transit if self._has_public_key(tenant_id) else self._fallback()

    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str:
        return self._for(tenant_id).seal_json(tenant_id, table, partition_key, row_key, value)

    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any:
        return self._fallback().open_json(tenant_id, table, partition_key, row_key, sealed)
