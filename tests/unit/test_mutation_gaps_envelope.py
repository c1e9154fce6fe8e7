"""The envelope's associated data (issue 21): length-prefixed, so no two bindings give the same bytes.

The existing test covers the '.' split; replacing the length prefixes by a join on any other delimiter survived
it. Here the bytes are checked against an independent construction, ambiguity is tried for every likely
delimiter and for arbitrary splits, and a value sealed with a fixed key and nonce must keep opening: the format is
stored in tenants' tables, so a refactor may not change it.
"""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable, associated_data

KEY = bytes(range(32))
DATA_KEY_ID = "0123456789abcdef"
NONCE = bytes(range(100, 112))


def _expected(*fields: str) -> bytes:
    """The documented layout: 'gk1', then per field a 4-byte big-endian length and the UTF-8 bytes."""
    out = b"gk1"
    for field in fields:
        data = field.encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    return out


def test_associated_data_is_the_documented_length_prefixed_layout():
    fields = ("0123456789abcdef", "acme", "gkacmeEvents", "github", "run-42")
    assert associated_data(*fields) == _expected(*fields)


def test_associated_data_counts_bytes_not_characters():
    assert associated_data("k", "acme", "t", "é", "") == _expected("k", "acme", "t", "é", "")
    assert associated_data("k", "acme", "t", "é", "")[-8:] == b"\x00\x00\x00\x02\xc3\xa9\x00\x00\x00\x00"[-8:]


@pytest.mark.parametrize("sep", ["|", ".", ":", "/", ",", ";", " ", "\t", "\n", "\x00", "\x1f", "-", "_", "="])
def test_no_delimiter_makes_two_splits_equal(sep: str):
    left = associated_data("k", "acme", "t", f"a{sep}b", "c")
    right = associated_data("k", "acme", "t", "a", f"b{sep}c")
    assert left != right
    # moving a field boundary across the tenant and table, too
    assert associated_data("k", f"acme{sep}x", "t", "p", "r") != associated_data("k", "acme", f"x{sep}t", "p", "r")


def test_empty_fields_move_nothing():
    assert associated_data("k", "acme", "t", "", "pr") != associated_data("k", "acme", "t", "p", "r")
    assert associated_data("k", "acme", "t", "pr", "") != associated_data("k", "acme", "t", "", "pr")


@settings(derandomize=True, max_examples=80, deadline=None)
@given(
    a=st.tuples(*[st.text(max_size=6)] * 3),
    b=st.tuples(*[st.text(max_size=6)] * 3),
)
def test_distinct_bindings_never_share_associated_data(a, b):
    if a != b:
        assert associated_data("k", "acme", *a) != associated_data("k", "acme", *b)


class _OneKey:
    def active_key(self, tenant_id: str) -> tuple[str, bytes]:
        return DATA_KEY_ID, KEY

    def data_key(self, tenant_id: str, data_key_id: str) -> bytes:
        assert data_key_id == DATA_KEY_ID
        return KEY


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sealed_independently(binding: tuple[str, str, str, str], plaintext: bytes) -> str:
    body = AESGCM(KEY).encrypt(NONCE, plaintext, _expected(DATA_KEY_ID, *binding))
    return f"gk1.{DATA_KEY_ID}.{_b64u(NONCE)}.{_b64u(body)}"


def test_a_value_sealed_in_the_stored_format_opens_and_only_at_its_place():
    cipher = EnvelopeCipher(_OneKey(), cache_seconds=60, max_cached_keys=4)
    binding = ("acme", "gkacmeEvents", "a|b", "c")
    sealed = _sealed_independently(binding, b"payload")
    assert cipher.open(*binding, sealed) == b"payload"
    with pytest.raises(SealedDataUnreadable):
        cipher.open("acme", "gkacmeEvents", "a", "b|c", sealed)


def test_what_the_cipher_seals_opens_under_the_independent_layout():
    cipher = EnvelopeCipher(_OneKey(), cache_seconds=60, max_cached_keys=4)
    binding = ("acme", "gkacmeGates", "gate", "row-1")
    _, key_id, nonce, body = cipher.seal(*binding, b"value").split(".")
    raw_nonce = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    raw_body = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert AESGCM(KEY).decrypt(raw_nonce, raw_body, _expected(key_id, *binding)) == b"value"


# --- survivors of `make mutation MODULES=envelope` ----------------------------------------------------------------


def _counting():
    from tests.unit.test_envelope import Clock, CountingKeys

    keys, clock = CountingKeys(), Clock()
    return keys, clock, EnvelopeCipher(keys, cache_seconds=300, max_cached_keys=16, clock=clock)


def test_an_empty_data_key_id_is_refused_before_any_key_lookup():
    keys, _, cipher = _counting()
    _, _, nonce, body = cipher.seal("acme", "t", "p", "r", b"v").split(".")
    with pytest.raises(SealedDataUnreadable, match="is not a gk1 sealed value"):
        cipher.open("acme", "t", "p", "r", f"gk1..{nonce}.{body}")
    assert keys.calls["data_key"] == 0


def test_a_body_shorter_than_the_gcm_tag_is_refused_by_shape():
    keys, _, cipher = _counting()
    key_id, nonce = cipher.seal("acme", "t", "p", "r", b"v").split(".")[1:3]
    cipher.forget()
    short = base64.urlsafe_b64encode(b"\x00" * 15).rstrip(b"=").decode()
    with pytest.raises(SealedDataUnreadable, match="wrong shape"):
        cipher.open("acme", "t", "p", "r", f"gk1.{key_id}.{nonce}.{short}")
    assert keys.calls["data_key"] == 0
    tag_only = base64.urlsafe_b64encode(b"\x00" * 16).rstrip(b"=").decode()
    with pytest.raises(SealedDataUnreadable, match="does not open"):
        cipher.open("acme", "t", "p", "r", f"gk1.{key_id}.{nonce}.{tag_only}")


def test_cache_seconds_must_be_positive_but_may_be_short():
    from tests.unit.test_envelope import CountingKeys

    assert EnvelopeCipher(CountingKeys(), cache_seconds=0.5).cache_seconds == 0.5
    with pytest.raises(ValueError, match="cache_seconds"):
        EnvelopeCipher(CountingKeys(), cache_seconds=0)
    with pytest.raises(ValueError, match="max_cached_keys"):
        EnvelopeCipher(CountingKeys(), max_cached_keys=0)
    assert EnvelopeCipher(CountingKeys(), max_cached_keys=1) is not None


def test_the_default_cache_holds_1024_entries():
    """Two entries per tenant (the active pointer and the key); the bound shows in the cipher's repr."""
    from tests.unit.test_envelope import Clock, CountingKeys

    cipher = EnvelopeCipher(CountingKeys(), cache_seconds=300, clock=Clock())
    for i in range(600):
        cipher.seal(f"t{i:04d}", "t", "p", "r", b"v")
    assert repr(cipher) == "EnvelopeCipher(cache_seconds=300, cached=1024)"


def test_a_lone_surrogate_cannot_be_sealed_as_json():
    _, _, cipher = _counting()
    with pytest.raises(ValueError):
        cipher.seal_json("acme", "t", "p", "r", {"text": "\ud800"})


@pytest.mark.parametrize("size", range(0, 41))
def test_every_plaintext_length_round_trips(size: int):
    """Every base64url length (so every padding case) opens again, the empty value included."""
    _, _, cipher = _counting()
    value = bytes(range(size))
    assert cipher.open("acme", "t", "p", "r", cipher.seal("acme", "t", "p", "r", value)) == value


def test_a_nonce_of_the_wrong_length_is_refused_by_shape():
    keys, _, cipher = _counting()
    key_id, _, body = cipher.seal("acme", "t", "p", "r", b"v").split(".")[1:]
    cipher.forget()
    short_nonce = base64.urlsafe_b64encode(b"\x01" * 11).rstrip(b"=").decode()
    with pytest.raises(SealedDataUnreadable, match="wrong shape"):
        cipher.open("acme", "t", "p", "r", f"gk1.{key_id}.{short_nonce}.{body}")
    assert keys.calls["data_key"] == 0


def test_an_unexpected_key_failure_on_open_is_unavailable_not_unreadable():
    from gatekeeper.store.envelope import SealingUnavailable

    keys, _, cipher = _counting()
    sealed = cipher.seal("acme", "t", "p", "r", b"v")
    cipher.forget()
    keys.fail = RuntimeError("socket closed")
    with pytest.raises(SealingUnavailable, match="unexpected key failure"):
        cipher.open("acme", "t", "p", "r", sealed)


def test_the_default_cache_period_is_five_minutes():
    from tests.unit.test_envelope import CountingKeys

    assert EnvelopeCipher(CountingKeys()).cache_seconds == 300.0


def test_a_cached_key_expires_at_exactly_the_cache_period():
    keys, clock, cipher = _counting()
    cipher.seal("acme", "t", "p", "r", b"v")
    clock.now += 300  # the cipher was built with cache_seconds=300
    cipher.seal("acme", "t", "p", "r", b"v")
    assert keys.calls["active_key"] == 2


def test_json_sealing_refuses_nan_and_infinity():
    _, _, cipher = _counting()
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^value:"):
            cipher.seal_json("acme", "t", "p", "r", {"x": value})


@pytest.mark.parametrize("plaintext", [b"\xff\xfe", b"not json", b""])
def test_open_json_refuses_a_value_that_does_not_hold_json(plaintext: bytes):
    _, _, cipher = _counting()
    sealed = cipher.seal("acme", "t", "p", "r", plaintext)
    with pytest.raises(SealedDataUnreadable, match="does not hold JSON"):
        cipher.open_json("acme", "t", "p", "r", sealed)


def test_another_format_prefix_is_refused_before_any_key_lookup():
    keys, _, cipher = _counting()
    rest = cipher.seal("acme", "t", "p", "r", b"v").split(".", 1)[1]
    cipher.forget()
    with pytest.raises(SealedDataUnreadable, match="is not a gk1 sealed value"):
        cipher.open("acme", "t", "p", "r", "gk2." + rest)
    assert keys.calls["data_key"] == 0
