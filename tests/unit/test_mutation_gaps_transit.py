"""Transit keys' surviving mutants (issue 21): what `make mutation MODULES=envelope` showed no test noticed.

Each test pins one contract of gatekeeper/store/transit.py (and envelope.py's SealedLocation) that a one-line
change broke silently: even public exponents above 2 are refused; the two memo caches are bounded at exactly their
sizes (a stream of distinct hostile records cannot grow memory without limit, and the cache really is used); the
public key value and a sealed location are immutable; TransitKeys' clock is keyword-only; and importing the
edge's transit module does not pull in the envelope cipher (it only names it for type checkers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.encoding import int_to_b64url
from gatekeeper.store import transit
from gatekeeper.store.envelope import SealedLocation
from gatekeeper.store.transit import InvalidPublicKey, KekPublicKey, TransitKeys, parse_kek_public
from tests.unit.test_transit import TENANT, jwk, private_key

LOCAL_KID = "local://keys/tenant-contoso/v{}"
ROOT = Path(__file__).resolve().parents[2]


# -- the public exponent ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", [4, 6, 65536, 65538, (1 << 32) - 2])
def test_an_even_public_exponent_above_two_is_refused(e):
    with pytest.raises(InvalidPublicKey, match=r"^e: must be an odd exponent"):
        KekPublicKey.from_jwk(jwk(e=int_to_b64url(e)), TENANT)


@pytest.mark.parametrize("e", [3, 5, 65537])
def test_an_odd_public_exponent_from_three_is_accepted(e):
    assert KekPublicKey.from_jwk(jwk(e=int_to_b64url(e)), TENANT).e == e


# -- immutability ----------------------------------------------------------------------------------------------


def test_a_kek_public_key_is_immutable_and_hashable():
    key = KekPublicKey.from_jwk(jwk(), TENANT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.n = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.kid = LOCAL_KID.format("x")  # type: ignore[misc]
    assert hash(key) == hash(KekPublicKey(key.kid, key.n, key.e))


def test_a_sealed_location_is_immutable_and_hashable():
    where = SealedLocation("contoso", "gkcontosoEvents", "github", "run-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        where.row_key = "run-2"  # type: ignore[misc]
    assert hash(where) == hash(SealedLocation("contoso", "gkcontosoEvents", "github", "run-1"))
    assert where.row_key == "run-1"


# -- TransitKeys' signature ------------------------------------------------------------------------------------


def test_transit_keys_takes_storage_and_the_key_lookup_by_name_or_position_and_the_clock_by_name_only():
    def clock() -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    kinds = {name: p.kind for name, p in inspect.signature(TransitKeys).parameters.items()}
    assert kinds == {
        "storage": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "public_key_for": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "clock": inspect.Parameter.KEYWORD_ONLY,
    }
    storage: Any = object()
    TransitKeys(storage=storage, public_key_for=lambda tenant: None, clock=clock)
    TransitKeys(storage, lambda tenant: None, clock=clock)
    with pytest.raises(TypeError):
        TransitKeys(storage, lambda tenant: None, clock)  # type: ignore[misc]


# -- the memo caches: used, and bounded exactly ----------------------------------------------------------------


def _wrap_with_exponents(exponents: range) -> None:
    n = private_key().public_key().public_numbers().n
    for e in exponents:
        KekPublicKey(LOCAL_KID.format(e), n, e).wrap(b"\x00" * 32)


@pytest.mark.parametrize(("distinct", "first_still_cached"), [(256, True), (257, False)])
def test_the_public_key_cache_holds_exactly_256_keys(distinct, first_still_cached):
    cache: Any = transit._public_key
    cache.cache_clear()
    try:
        exponents = range(3, 3 + 2 * distinct, 2)  # distinct odd exponents, same modulus
        _wrap_with_exponents(exponents)
        assert cache.cache_info().misses == distinct
        assert cache.cache_info().currsize == min(distinct, 256)
        _wrap_with_exponents(range(3, 4))  # the first key again
        assert cache.cache_info().hits == (1 if first_still_cached else 0)
    finally:
        cache.cache_clear()


def _parse(versions: range) -> list[KekPublicKey]:
    key = jwk()
    return [parse_kek_public(TENANT, LOCAL_KID.format(v), key["n"], key["e"]) for v in versions]


@pytest.mark.parametrize(("distinct", "first_still_cached"), [(1024, True), (1025, False)])
def test_the_parsed_record_key_cache_holds_exactly_1024_keys(distinct, first_still_cached):
    parse_kek_public.cache_clear()
    try:
        (first, *_rest) = _parse(range(distinct))
        assert parse_kek_public.cache_info().misses == distinct
        assert parse_kek_public.cache_info().currsize == min(distinct, 1024)
        (again,) = _parse(range(1))
        assert (again is first) is first_still_cached
        assert again == first
        assert parse_kek_public.cache_info().hits == (1 if first_still_cached else 0)
    finally:
        parse_kek_public.cache_clear()


def test_a_record_key_is_parsed_once_and_its_public_key_built_once():
    parse_kek_public.cache_clear()
    cache: Any = transit._public_key
    cache.cache_clear()
    try:
        first, second = _parse(range(1)) + _parse(range(1))
        assert first is second
        first.wrap(b"\x01" * 32)
        second.wrap(b"\x02" * 32)
        assert cache.cache_info().hits == 1
        assert cache.cache_info().misses == 1
    finally:
        parse_kek_public.cache_clear()
        cache.cache_clear()


# -- the import graph ------------------------------------------------------------------------------------------


def test_importing_the_transit_module_does_not_import_the_envelope_cipher():
    """transit names EnvelopeCipher for type checkers only: the edge loads it where it builds the cipher."""
    assert "EnvelopeCipher" not in vars(transit)
    probe = "import sys, gatekeeper.store.transit; print('gatekeeper.store.envelope' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "False"
