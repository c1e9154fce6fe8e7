"""Envelope encryption of sensitive entity properties: AES-256-GCM under a per-tenant data key.

A sealed value is one compact, self-describing string:

    gk1.<data-key id>.<nonce, base64url>.<ciphertext and tag, base64url>

The data-key id says which of the tenant's data keys to use, so data sealed before a data-key rotation stays
readable. The GCM associated data binds the ciphertext to (format, data-key id, tenant, table, partition, row):
a value copied to another row, table or tenant does not open. Unwrapped data keys are cached for a bounded
time and count, so the key service is asked once per tenant per cache period, not once per entity. Any key
failure while sealing raises `SealingUnavailable`, so nothing is ever written in plain text.
"""

from __future__ import annotations

import binascii
import functools
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gatekeeper.encoding import b64url, b64url_decode_strict
from gatekeeper.store.key_errors import KeyGone, KeyProviderError, KeyRefused, KeyServiceUnavailable
from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id

FORMAT = "gk1"
_FORMAT_BYTES = FORMAT.encode("ascii")
NONCE_BYTES = 12
_LOCK_STRIPES = 64


class EnvelopeError(Exception):
    """Base of the two envelope failures. Messages name the tenant and field, never key material or data."""


class SealingUnavailable(EnvelopeError):
    """The tenant's key cannot be used right now (key service unreachable, forbidden, disabled, or the key is
    missing when sealing). Fail closed: the caller must not write the value at all. Retrying later may work."""


@dataclass(frozen=True)
class SealedLocation:
    """Where a sealed value lies: what its ciphertext is bound to. Names and keys only, never data."""

    tenant_id: str
    table: str
    partition_key: str
    row_key: str


class SealedDataUnreadable(EnvelopeError):
    """This sealed value will not open: wrong binding (moved or copied), tampered, malformed, or its key was
    destroyed (crypto-shredded). Retrying will not help.

    `reason` is a stable code (`does-not-open`, `malformed`, `key-gone`, `unwrap-refused` (the KEK refuses the
    wrapped data key: damaged, or wrapped under a public key that is not the tenant's), `plaintext`, `not-json`) and
    `location` where the value lies, so the edge can answer `integrity-error` and audit it by name."""

    def __init__(self, message: str, *, reason: str = "does-not-open", location: SealedLocation | None = None):
        super().__init__(message)
        self.reason = reason
        self.location = location


class KeySource(Protocol):
    """Where the cipher gets plain data keys (gatekeeper.store.keyring.DataKeyRing in the product)."""

    def active_key(self, tenant_id: str) -> tuple[str, bytes]: ...

    def data_key(self, tenant_id: str, data_key_id: str) -> bytes: ...


class _TTLCache:
    """A small LRU with a time-to-live; the clock is injectable so tests never sleep."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = (self._clock() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


_b64u = b64url
_unb64u = b64url_decode_strict  # sealed values: only the canonical unpadded text opens


def associated_data(data_key_id: str, tenant_id: str, table: str, partition_key: str, row_key: str) -> bytes:
    """The GCM associated data: every field the ciphertext is bound to, each UTF-8 encoded and prefixed with
    its 4-byte length, so no two different bindings can produce the same bytes."""
    fields = [value.encode("utf-8") for value in (data_key_id, tenant_id, table, partition_key, row_key)]
    return _FORMAT_BYTES + b"".join(len(field).to_bytes(4, "big") + field for field in fields)


@functools.lru_cache(maxsize=4096)
def _valid_tenant(tenant_id: str) -> bool:
    validate_tenant_id(tenant_id)
    return True


def _check_binding(tenant_id: str, table: str, partition_key: str, row_key: str) -> None:
    try:
        _valid_tenant(tenant_id)
    except (InvalidTenantId, TypeError) as exc:  # TypeError: unhashable
        raise ValueError(f"tenant_id: {exc}") from None
    for name, value in (("table", table), ("partition_key", partition_key), ("row_key", row_key)):
        if not isinstance(value, str):
            raise ValueError(f"{name}: must be a string, not {type(value).__name__}")
    if not table:
        raise ValueError("table: must not be empty")


class EnvelopeCipher:
    """Seals and opens values for (tenant, table, partition, row). Thread-safe; share one per process."""

    def __init__(
        self,
        keys: KeySource,
        *,
        cache_seconds: float = 300.0,
        max_cached_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds <= 0:
            raise ValueError("cache_seconds: must be positive")
        if max_cached_keys < 1:
            raise ValueError("max_cached_keys: must be at least 1")
        self._keys = keys
        self.cache_seconds = cache_seconds
        # ("active", tenant) -> (data-key id, AESGCM); ("key", tenant, id) -> AESGCM (the plain key stays inside)
        self._cache = _TTLCache(cache_seconds, max_cached_keys, clock)
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def __repr__(self) -> str:
        return f"EnvelopeCipher(cache_seconds={self.cache_seconds}, cached={len(self._cache)})"

    def _stripe(self, tenant_id: str) -> threading.Lock:
        return self._stripes[hash(tenant_id) % _LOCK_STRIPES]

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop cached data keys (one tenant or all), e.g. right after crypto-shredding a tenant."""
        self._cache.drop(lambda key: tenant_id is None or key[1] == tenant_id)  # type: ignore[index]

    def _active(self, tenant_id: str) -> tuple[str, AESGCM]:
        active: tuple[str, AESGCM] | None = self._cache.get(("active", tenant_id))
        if active:
            return active
        with self._stripe(tenant_id):  # one key-service call per tenant, however many threads miss at once
            active = self._cache.get(("active", tenant_id))
            if active:
                return active
            try:
                data_key_id, key = self._keys.active_key(tenant_id)
            except KeyProviderError as exc:
                raise SealingUnavailable(
                    f"tenant {tenant_id}: cannot seal, the data key is unavailable: {exc}"
                ) from exc
            except Exception as exc:
                raise SealingUnavailable(
                    f"tenant {tenant_id}: cannot seal, unexpected key failure ({type(exc).__name__})"
                ) from exc
            aead = AESGCM(key)
            del key
            self._cache.put(("key", tenant_id, data_key_id), aead)
            self._cache.put(("active", tenant_id), (data_key_id, aead))
            return data_key_id, aead

    def _for_open(self, tenant_id: str, data_key_id: str) -> AESGCM:
        aead = self._cache.get(("key", tenant_id, data_key_id))
        if aead:
            return aead
        with self._stripe(tenant_id):
            aead = self._cache.get(("key", tenant_id, data_key_id))
            if aead:
                return aead
            try:
                key = self._keys.data_key(tenant_id, data_key_id)
            except KeyGone as exc:
                raise SealedDataUnreadable(
                    f"tenant {tenant_id}: sealed value cannot be opened: {exc}",
                    reason="unwrap-refused" if isinstance(exc, KeyRefused) else "key-gone",
                ) from exc
            except KeyServiceUnavailable as exc:
                raise SealingUnavailable(f"tenant {tenant_id}: cannot open now: {exc}") from exc
            except Exception as exc:
                raise SealingUnavailable(
                    f"tenant {tenant_id}: cannot open now, unexpected key failure ({type(exc).__name__})"
                ) from exc
            aead = AESGCM(key)
            del key
            self._cache.put(("key", tenant_id, data_key_id), aead)
            return aead

    def seal(self, tenant_id: str, table: str, partition_key: str, row_key: str, plaintext: bytes) -> str:
        """Encrypt `plaintext` for this exact place. Raises SealingUnavailable when the key can't be used."""
        _check_binding(tenant_id, table, partition_key, row_key)
        if not isinstance(plaintext, bytes | bytearray | memoryview):
            raise TypeError(f"plaintext: must be bytes, not {type(plaintext).__name__}")
        data_key_id, aead = self._active(tenant_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(
            nonce, bytes(plaintext), associated_data(data_key_id, tenant_id, table, partition_key, row_key)
        )
        return f"{FORMAT}.{data_key_id}.{_b64u(nonce)}.{_b64u(sealed)}"

    def open(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> bytes:
        """Decrypt a value sealed for this exact place. Raises SealedDataUnreadable if it does not open here,
        SealingUnavailable if the key service cannot be reached right now."""
        _check_binding(tenant_id, table, partition_key, row_key)
        try:
            return self._open(tenant_id, table, partition_key, row_key, sealed)
        except SealedDataUnreadable as exc:
            if exc.location is None:
                exc.location = SealedLocation(tenant_id, table, partition_key, row_key)
            raise

    def _open(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> bytes:
        parts = sealed.split(".") if isinstance(sealed, str) else []
        if len(parts) != 4 or parts[0] != FORMAT or not parts[1]:
            raise SealedDataUnreadable(f"tenant {tenant_id}: value is not a {FORMAT} sealed value", reason="malformed")
        _, data_key_id, nonce_text, body_text = parts
        try:
            nonce, body = _unb64u(nonce_text), _unb64u(body_text)
        except (ValueError, binascii.Error):
            raise SealedDataUnreadable(
                f"tenant {tenant_id}: sealed value is not valid base64url", reason="malformed"
            ) from None
        if len(nonce) != NONCE_BYTES or len(body) < 16:
            raise SealedDataUnreadable(f"tenant {tenant_id}: sealed value has the wrong shape", reason="malformed")
        aead = self._for_open(tenant_id, data_key_id)
        try:
            return aead.decrypt(nonce, body, associated_data(data_key_id, tenant_id, table, partition_key, row_key))
        except InvalidTag:
            raise SealedDataUnreadable(
                f"tenant {tenant_id}: sealed value does not open for table {table!r}, this partition and row "
                "(moved, copied or tampered)"
            ) from None

    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"value: cannot be sealed as JSON: {exc}") from None
        return self.seal(tenant_id, table, partition_key, row_key, text.encode("utf-8"))

    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any:
        raw = self.open(tenant_id, table, partition_key, row_key, sealed)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise SealedDataUnreadable(
                f"tenant {tenant_id}: sealed value does not hold JSON",
                reason="not-json",
                location=SealedLocation(tenant_id, table, partition_key, row_key),
            ) from None
