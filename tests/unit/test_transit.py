"""The transit-key pieces that need no storage: the KEK public key a tenant record carries (strict parsing,
bounds, tenant binding), RSA-OAEP-256 wrapping with it, transit ids, and the edge sealer's routing."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.encoding import b64url, int_to_b64url
from gatekeeper.store import transit
from gatekeeper.store.keyring import DATA_KEY_ID_PATTERN, new_data_key_id
from gatekeeper.store.transit import (
    EdgeSealer,
    InvalidPublicKey,
    KekPublicKey,
    is_transit_id,
    kid_pattern,
    parse_kek_public,
    transit_id,
    transit_row,
)
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import load_tenant_file

TENANT = "contoso"
KID = "https://contoso-kv.vault.azure.net/keys/tenant-contoso/0123456789abcdef0123456789abcdef"
LOCAL_KID = "local://keys/tenant-contoso/00112233445566778899aabbccddeeff"


@functools.lru_cache(maxsize=2)
def private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def jwk(kid: str = KID, **override: Any) -> dict[str, Any]:
    numbers = private_key().public_key().public_numbers()
    value: dict[str, Any] = {"kty": "RSA", "kid": kid, "n": int_to_b64url(numbers.n), "e": int_to_b64url(numbers.e)}
    value.update(override)
    return {k: v for k, v in value.items() if v is not None}


def oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# -- the public key ------------------------------------------------------------------------------------------


def test_a_key_vault_and_a_local_kid_are_read_and_round_trip():
    for kid in (KID, LOCAL_KID, "https://127.0.0.1:8443/keys/tenant-contoso/v1"):
        key = KekPublicKey.from_jwk(jwk(kid), TENANT)
        assert key.kid == kid and key.e == 65537 and key.n.bit_length() == 2048
        assert KekPublicKey.from_jwk(key.to_jwk(), TENANT) == key
        assert key.to_jwk() == jwk(kid)


def test_the_repr_shows_the_kid_only():
    assert repr(KekPublicKey.from_jwk(jwk(), TENANT)) == f"KekPublicKey(kid={KID!r})"


def test_wrapping_is_rsa_oaep_256_and_opens_with_the_private_key_only():
    key = KekPublicKey.from_jwk(jwk(), TENANT)
    data_key = bytes(range(32))
    wrapped = key.wrap(data_key)
    assert len(wrapped) == 256 and key.wrap(data_key) != wrapped  # OAEP is randomised
    assert private_key().decrypt(wrapped, oaep()) == data_key
    with pytest.raises(ValueError):  # the wrong private key refuses it (what a substituted public key causes)
        private_key(3072).decrypt(wrapped, oaep())
    assert KeyWrapAlgorithm.rsa_oaep_256.value == transit.WRAP_ALGORITHM


@pytest.mark.parametrize(
    ("override", "member"),
    [
        ({"kty": "EC"}, "kty"),
        ({"kty": None}, "kty"),
        ({"kid": None}, "kid"),
        ({"kid": ""}, "kid"),
        ({"kid": 5}, "kid"),
        ({"kid": "https://v.vault.azure.net/keys/tenant-fabrikam/0123"}, "kid"),  # another tenant's key
        ({"kid": "https://v.vault.azure.net/keys/tenant-contoso"}, "kid"),  # no version
        ({"kid": "https://v.vault.azure.net/keys/tenant-contoso/0123/x"}, "kid"),
        ({"kid": "http://v.vault.azure.net/keys/tenant-contoso/0123"}, "kid"),  # not https
        ({"kid": "https://v.vault.azure.net/keys/tenant-contoso2/0123"}, "kid"),  # a longer tenant id
        ({"kid": "https://v.vault.azure.net/keys/tenant-contoso/0123\n"}, "kid"),
        ({"kid": "x" * 401}, "kid"),
        ({"n": None}, "n"),
        ({"n": 12345}, "n"),
        ({"n": "AQAB="}, "n"),  # padded
        ({"n": "AQAC"}, "n"),  # even
        ({"n": "AAEAAQ"}, "n"),  # leading zero byte
        ({"n": "A+8"}, "n"),  # not base64url
        ({"n": "AQAB"}, "n"),  # far too short a modulus
        ({"n": b64url(b"\xff" * 1024 + b"\x01")}, "n"),  # over 8192 bits
        ({"n": b64url(b"\xff" * 127 + b"\x01")}, "n"),  # 1024 bits
        ({"e": None}, "e"),
        ({"e": "Ag"}, "e"),  # 2: even
        ({"e": "AQ"}, "e"),  # 1
        ({"e": b64url(b"\x01" * 5)}, "e"),  # 33 bits
        ({"d": "AQAB"}, "d"),  # private members never belong in a record
        ({"qi": "AQAB"}, "qi"),
        ({"bad name\n": "x"}, r"\(unknown member\)"),
    ],
)
def test_a_bad_public_key_is_refused_naming_the_member(override, member):
    with pytest.raises(InvalidPublicKey, match=rf"^{member}: "):
        KekPublicKey.from_jwk(jwk(**override), TENANT)


def test_the_smallest_and_largest_accepted_sizes():
    n_2048 = (1 << 2047) | 1
    n_8192 = (1 << 8192) - 1
    for n in (n_2048, n_8192):
        assert KekPublicKey.from_jwk(jwk(n=int_to_b64url(n)), TENANT).n == n
    assert KekPublicKey.from_jwk(jwk(e="Aw"), TENANT).e == 3
    assert KekPublicKey.from_jwk(jwk(e=int_to_b64url((1 << 32) - 1)), TENANT).e == (1 << 32) - 1
    with pytest.raises(InvalidPublicKey, match=r"^n: "):
        KekPublicKey.from_jwk(jwk(n=int_to_b64url((1 << 2046) | 1)), TENANT)
    with pytest.raises(InvalidPublicKey, match=r"^e: "):
        KekPublicKey.from_jwk(jwk(e=int_to_b64url(1 << 32 | 1)), TENANT)


def test_not_a_mapping_is_refused():
    with pytest.raises(InvalidPublicKey, match="JSON Web Key object"):
        KekPublicKey.from_jwk(["kty", "RSA"], TENANT)  # type: ignore[arg-type]


def test_without_a_tenant_any_kid_is_read_and_with_one_only_its_own():
    other = "https://v.vault.azure.net/keys/tenant-fabrikam/0123"
    assert KekPublicKey.from_jwk(jwk(other)).kid == other
    assert kid_pattern("fabrikam").fullmatch(other)
    assert not kid_pattern(TENANT).fullmatch(other)


def test_parse_kek_public_checks_the_tenant_binding():
    good = jwk()
    assert parse_kek_public(TENANT, good["kid"], good["n"], good["e"]).kid == KID
    with pytest.raises(InvalidPublicKey, match=r"^kid: "):
        parse_kek_public("fabrikam", good["kid"], good["n"], good["e"])


JWK_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=700),
    st.lists(st.integers(), max_size=3),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["kty", "kid", "n", "e", "d", "x", "use"]) | st.text(max_size=8), JWK_VALUES, max_size=6
    )
)
def test_any_document_is_a_key_or_an_invalid_public_key_naming_a_member(document):
    try:
        key = KekPublicKey.from_jwk(document, TENANT)
    except InvalidPublicKey as exc:
        assert re.match(r"^(expected a JSON Web Key|\(unknown member\): |[A-Za-z0-9_]{1,16}: )", str(exc)), str(exc)
    else:  # whatever was accepted is a well-formed public key of this tenant
        assert kid_pattern(TENANT).fullmatch(key.kid)
        assert 2048 <= key.n.bit_length() <= 8192 and key.n % 2 == 1 and key.e % 2 == 1


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.sampled_from(["n", "e"]), st.binary(min_size=1, max_size=8))
def test_a_changed_spelling_of_n_or_e_is_refused(member, junk):
    """Only the canonical base64url text is read: appended or altered characters never parse as the same key."""
    good = jwk()
    text = good[member] + b64url(junk)
    try:
        key = KekPublicKey.from_jwk({**good, member: text}, TENANT)
    except InvalidPublicKey:
        return
    assert getattr(key, member) != getattr(KekPublicKey.from_jwk(good, TENANT), member)


# -- transit ids ---------------------------------------------------------------------------------------------


def test_transit_ids_are_unique_fit_the_key_ring_and_never_look_like_a_data_key():
    ids = {transit_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert is_transit_id(value) and DATA_KEY_ID_PATTERN.match(value) and len(value) == 17
    for _ in range(200):
        assert not is_transit_id(new_data_key_id())


@pytest.mark.parametrize(
    "value", ["", "t", "t0123456789abcde", "t0123456789abcdef0", "T0123456789abcdef", "t0123456789abcdeg", "x" * 17]
)
def test_other_ids_are_not_transit_ids(value):
    assert not is_transit_id(value)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(max_size=24))
def test_is_transit_id_is_exactly_t_and_16_lower_hex_digits(value):
    assert is_transit_id(value) == bool(re.fullmatch(r"t[0-9a-f]{16}", value))


def test_a_transit_row_has_the_shape_of_a_data_key_row_in_its_own_partition():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, tzinfo=UTC)
    row = transit_row("t0123456789abcdef", b"\x01\x02", KID, now)
    assert row == {
        "PartitionKey": "transit",
        "RowKey": "t0123456789abcdef",
        "wrapped_key": "AQI=",
        "kek_id": KID,
        "algorithm": "RSA-OAEP-256",
        "created": now,
    }


# -- the edge sealer routes by the record --------------------------------------------------------------------


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, ...]] = []

    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str:
        self.calls.append(("seal", tenant_id, table, partition_key, row_key))
        return f"{self.name}:{value}"

    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any:
        self.calls.append(("open", tenant_id, table, partition_key, row_key))
        return sealed


def test_the_edge_seals_with_transit_keys_for_a_recorded_key_else_the_cipher_and_always_opens_with_the_cipher():
    edge, cipher = Recorder("transit"), Recorder("cipher")
    built: list[int] = []

    def fallback() -> Recorder:
        built.append(1)
        return cipher

    sealer = EdgeSealer(edge, lambda tenant: tenant == "withkey", fallback)  # type: ignore[arg-type]
    assert sealer.seal_json("withkey", "t", "p", "r", 1) == "transit:1"
    assert built == [], "the fallback cipher (Key Vault SDK) is not even built for a recorded key"
    assert sealer.seal_json("nokey", "t", "p", "r", 2) == "cipher:2"
    assert sealer.open_json("withkey", "t", "p", "r", "x") == "x"
    assert edge.calls == [("seal", "withkey", "t", "p", "r")]
    assert cipher.calls == [("seal", "nokey", "t", "p", "r"), ("open", "withkey", "t", "p", "r")]
    assert repr(sealer).startswith("EdgeSealer(")


# -- the tenant record carries it ----------------------------------------------------------------------------


def record(**fields: Any) -> TenantRecord:
    return TenantRecord(tenant_id=TENANT, display_name="Contoso", **fields)


def test_a_record_keeps_a_valid_public_key_of_its_own_tenant():
    assert record(kek_public=jwk()).kek_public == jwk()
    assert record().kek_public is None
    round_trip = TenantRecord.model_validate_json(record(kek_public=jwk(LOCAL_KID)).model_dump_json())
    assert round_trip.kek_public == jwk(LOCAL_KID)


@pytest.mark.parametrize(
    ("kek_public", "message"),
    [
        (jwk("https://v.vault.azure.net/keys/tenant-fabrikam/0123"), "kek_public.kid: does not name"),
        (jwk(d="AQAB"), "kek_public: expected exactly the members"),
        (jwk(kty="EC"), "kek_public: expected exactly the members"),
        ({k: v for k, v in jwk().items() if k != "e"}, "kek_public: expected exactly the members"),
        (jwk(n="AQAC"), "kek_public.n: must be an odd modulus"),
    ],
)
def test_a_record_with_a_foreign_or_malformed_public_key_is_refused(kek_public, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        record(kek_public=kek_public)


def test_a_tenants_file_with_a_bad_public_key_names_the_file_and_field():
    text = (
        "tenants:\n  - tenant_id: contoso\n    display_name: Contoso\n    kek_public:\n      kty: RSA\n"
        "      kid: https://v.vault.azure.net/keys/tenant-fabrikam/0123\n      n: AQAB\n      e: AQAB\n"
    )
    with pytest.raises(ValueError, match=r"^tenants\.yaml: tenants\[0\]\..*kek_public\.kid: does not name"):
        load_tenant_file(text, filename="tenants.yaml")


# -- boundaries (mutation gaps) ------------------------------------------------------------------------------


def test_the_modulus_bounds_are_exact_and_an_even_modulus_of_a_good_size_is_refused():
    with pytest.raises(InvalidPublicKey, match=r"^n: "):
        KekPublicKey.from_jwk(jwk(n=int_to_b64url((1 << 8192) | 1)), TENANT)  # 8193 bits
    with pytest.raises(InvalidPublicKey, match=r"^n: "):
        KekPublicKey.from_jwk(jwk(n=int_to_b64url((1 << 2047) + 2)), TENANT)  # 2048 bits, even


def test_a_leading_zero_byte_is_refused_in_e_as_well():
    with pytest.raises(InvalidPublicKey, match=r"^e: has a leading zero byte"):
        KekPublicKey.from_jwk(jwk(e="AAEAAQ"), TENANT)


def test_the_kid_length_bound_holds_without_a_tenant_too():
    assert KekPublicKey.from_jwk(jwk("x" * 400)).kid == "x" * 400
    with pytest.raises(InvalidPublicKey, match=r"^kid: expected the versioned key id"):
        KekPublicKey.from_jwk(jwk("x" * 401))


def test_a_key_that_cannot_wrap_makes_sealing_unavailable_before_anything_is_registered():
    from gatekeeper.store.envelope import EnvelopeCipher, SealingUnavailable
    from gatekeeper.store.transit import TransitKeys

    class NoStorage:
        def tenant_table(self, *args: Any) -> Any:
            raise AssertionError("nothing may be registered for a key that cannot wrap")

    broken = KekPublicKey(KID, (1 << 2047) + 2, 65537)  # even modulus: the RSA backend refuses it
    cipher = EnvelopeCipher(TransitKeys(NoStorage(), lambda tenant_id: broken))  # type: ignore[arg-type]
    with pytest.raises(SealingUnavailable, match="the KEK public key cannot wrap"):
        cipher.seal(TENANT, "t", "p", "r", b"x")
    with pytest.raises(SealingUnavailable, match="no KEK public key in the tenant record"):
        EnvelopeCipher(TransitKeys(NoStorage(), lambda tenant_id: None)).seal(  # type: ignore[arg-type]
            TENANT, "t", "p", "r", b"x"
        )


def test_transit_keys_never_open_anything_themselves():
    from gatekeeper.store.key_errors import KeyGone
    from gatekeeper.store.transit import TransitKeys

    with pytest.raises(KeyGone, match="the edge seals only"):
        TransitKeys(None, lambda tenant_id: None).data_key(TENANT, "t0123456789abcdef")  # type: ignore[arg-type]
    assert repr(TransitKeys(None, lambda tenant_id: None)) == "TransitKeys()"  # type: ignore[arg-type]
