"""EnvelopeCipher on its own: format, binding, tampering, caching and failure mapping.

The key source here is a counted stand-in for the Keys table, so these tests need no storage; the same cipher
runs on Azurite and the local Key Vault in tests/integration/test_envelope_keyvault.py.
"""

from __future__ import annotations

import re
import secrets
import threading

import pytest

from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable, SealingUnavailable, associated_data
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable

SEALED = re.compile(r"^gk1\.([a-z0-9]{16})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)$")


class CountingKeys:
    """Per-tenant data keys with call counters and switchable failures."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], bytes] = {}
        self.active: dict[str, str] = {}
        self.calls = {"active_key": 0, "data_key": 0}
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def rotate(self, tenant: str) -> str:
        data_key_id = secrets.token_hex(8)
        self.keys[(tenant, data_key_id)] = secrets.token_bytes(32)
        self.active[tenant] = data_key_id
        return data_key_id

    def active_key(self, tenant: str) -> tuple[str, bytes]:
        with self._lock:
            self.calls["active_key"] += 1
        if self.fail:
            raise self.fail
        if tenant not in self.active:
            self.rotate(tenant)
        return self.active[tenant], self.keys[(tenant, self.active[tenant])]

    def data_key(self, tenant: str, data_key_id: str) -> bytes:
        with self._lock:
            self.calls["data_key"] += 1
        if self.fail:
            raise self.fail
        try:
            return self.keys[(tenant, data_key_id)]
        except KeyError:
            raise KeyGone(f"tenant {tenant}: no data key {data_key_id}") from None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> CountingKeys:
    return CountingKeys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cipher(keys: CountingKeys, clock: Clock) -> EnvelopeCipher:
    return EnvelopeCipher(keys, cache_seconds=300, max_cached_keys=16, clock=clock)


BINDING = ("acme", "gkacmeEvents", "github", "run-42")


def test_round_trip_and_format(cipher: EnvelopeCipher):
    sealed = cipher.seal(*BINDING, b"secret token")
    match = SEALED.match(sealed)
    assert match, sealed
    assert b"secret token" not in sealed.encode()
    assert cipher.open(*BINDING, sealed) == b"secret token"
    # a fresh nonce every time: the same plaintext never gives the same sealed value
    assert cipher.seal(*BINDING, b"secret token") != sealed


def test_json_round_trip(cipher: EnvelopeCipher):
    value = {"callback": {"url": "https://dev.azure.com/x", "token": "ey.J"}, "n": [1, 2.5, None, "ü"]}
    assert cipher.open_json(*BINDING, cipher.seal_json(*BINDING, value)) == value


def test_json_refuses_values_it_cannot_encode(cipher: EnvelopeCipher):
    with pytest.raises(ValueError, match=r"^value:"):
        cipher.seal_json(*BINDING, {"when": object()})


@pytest.mark.parametrize(
    "other",
    [
        ("other", "gkacmeEvents", "github", "run-42"),  # another tenant
        ("acme", "gkacmeGates", "github", "run-42"),  # another table
        ("acme", "gkacmeEvents", "azuredevops", "run-42"),  # another partition
        ("acme", "gkacmeEvents", "github", "run-43"),  # another row
        ("acme", "gkacmeEvents", "githubrun-42", ""),  # same concatenation, different split
    ],
)
def test_value_moved_anywhere_else_does_not_open(cipher: EnvelopeCipher, keys: CountingKeys, other):
    sealed = cipher.seal(*BINDING, b"payload")
    if other[0] != "acme":  # give the other tenant the same data key id, so only the binding differs
        data_key_id = SEALED.match(sealed).group(1)
        keys.keys[(other[0], data_key_id)] = keys.keys[("acme", data_key_id)]
    with pytest.raises(SealedDataUnreadable):
        cipher.open(*other, sealed)


def test_associated_data_is_unambiguous():
    assert associated_data("k", "acme", "t", "a.b", "c") != associated_data("k", "acme", "t", "a", "b.c")


def _flip(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


@pytest.mark.parametrize("part", [2, 3])
def test_tampered_nonce_or_ciphertext_does_not_open(cipher: EnvelopeCipher, part: int):
    pieces = cipher.seal(*BINDING, b"payload").split(".")
    pieces[part] = _flip(pieces[part])
    with pytest.raises(SealedDataUnreadable):
        cipher.open(*BINDING, ".".join(pieces))


def test_a_change_in_the_unused_bits_of_the_last_character_does_not_open(cipher: EnvelopeCipher):
    """b"payload" seals to 23 bytes, 31 base64url characters: the last one carries 2 unused bits. A lenient
    decoder ignores them, so this change (and `_flip` above, one time in 16) would open."""
    pieces = cipher.seal(*BINDING, b"payload").split(".")
    assert len(pieces[3]) % 4 == 3
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    pieces[3] = pieces[3][:-1] + alphabet[alphabet.index(pieces[3][-1]) ^ 1]
    with pytest.raises(SealedDataUnreadable):
        cipher.open(*BINDING, ".".join(pieces))


@pytest.mark.parametrize(
    "sealed",
    [
        "",
        "plain text",
        "gk1.abc",
        "gk2.0123456789abcdef.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "gk1.0123456789abcdef.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "gk1.0123456789abcdef.!!!!.AAAA",
        "gk1..AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_values_are_unreadable(cipher: EnvelopeCipher, sealed: str):
    with pytest.raises(SealedDataUnreadable):
        cipher.open(*BINDING, sealed)


def test_unknown_data_key_is_unreadable(cipher: EnvelopeCipher):
    pieces = cipher.seal(*BINDING, b"payload").split(".")
    pieces[1] = "ffffffffffffffff"
    with pytest.raises(SealedDataUnreadable, match="no data key"):
        cipher.open(*BINDING, ".".join(pieces))


@pytest.mark.parametrize("tenant", ["../x", "A", "ab", "Acme", "a" * 33, "acme-1", "", "acme\n"])
def test_invalid_tenant_ids_are_refused(cipher: EnvelopeCipher, tenant: str):
    with pytest.raises(ValueError, match=r"^tenant_id:"):
        cipher.seal(tenant, "gkacmeEvents", "p", "r", b"x")
    with pytest.raises(ValueError, match=r"^tenant_id:"):
        cipher.open(tenant, "gkacmeEvents", "p", "r", "gk1.a.b.c")


def test_binding_fields_are_checked(cipher: EnvelopeCipher):
    with pytest.raises(ValueError, match=r"^table:"):
        cipher.seal("acme", "", "p", "r", b"x")
    with pytest.raises(ValueError, match=r"^row_key:"):
        cipher.seal("acme", "t", "p", 7, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^plaintext:"):
        cipher.seal("acme", "t", "p", "r", "text")  # type: ignore[arg-type]


def test_one_key_lookup_per_tenant_per_cache_period(cipher: EnvelopeCipher, keys: CountingKeys, clock: Clock):
    for i in range(3000):
        tenant = ("acme", "contoso", "fabrikam")[i % 3]
        assert cipher.open(tenant, "t", "p", str(i), cipher.seal(tenant, "t", "p", str(i), b"v")) == b"v"
    assert keys.calls == {"active_key": 3, "data_key": 0}
    clock.now += 299
    cipher.seal("acme", "t", "p", "r", b"v")
    assert keys.calls["active_key"] == 3
    clock.now += 2  # past the cache period
    cipher.seal("acme", "t", "p", "r", b"v")
    assert keys.calls["active_key"] == 4


def test_cache_is_bounded_in_size(keys: CountingKeys, clock: Clock):
    cipher = EnvelopeCipher(keys, cache_seconds=300, max_cached_keys=2, clock=clock)
    for tenant in ("acme", "contoso", "fabrikam", "acme"):
        cipher.seal(tenant, "t", "p", "r", b"v")
    # two entries per tenant (active pointer + key): only one tenant fits, so every switch reloads
    assert keys.calls["active_key"] == 4


def test_concurrent_cold_cache_calls_the_key_source_once(cipher: EnvelopeCipher, keys: CountingKeys):
    barrier = threading.Barrier(8)
    results: list[str] = []

    def work() -> None:
        barrier.wait()
        results.append(cipher.seal("acme", "t", "p", "r", b"v"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert keys.calls["active_key"] == 1


def test_data_key_rotation_keeps_old_values_readable(cipher: EnvelopeCipher, keys: CountingKeys, clock: Clock):
    old = cipher.seal(*BINDING, b"old")
    new_id = keys.rotate("acme")
    clock.now += 301
    cipher.forget()
    new = cipher.seal(*BINDING, b"new")
    assert SEALED.match(new).group(1) == new_id != SEALED.match(old).group(1)
    assert cipher.open(*BINDING, old) == b"old"
    assert cipher.open(*BINDING, new) == b"new"


def test_key_service_down_fails_closed_on_seal(cipher: EnvelopeCipher, keys: CountingKeys):
    keys.fail = KeyServiceUnavailable("tenant acme: Key Vault answered HTTP 503")
    with pytest.raises(SealingUnavailable, match="acme"):
        cipher.seal(*BINDING, b"must never be stored in plain text")
    keys.fail = KeyGone("tenant acme: the key was not found")
    with pytest.raises(SealingUnavailable):
        cipher.seal(*BINDING, b"x")
    keys.fail = RuntimeError("anything else")
    with pytest.raises(SealingUnavailable):
        cipher.seal(*BINDING, b"x")


def test_open_distinguishes_outage_from_shredding(keys: CountingKeys, clock: Clock):
    writer = EnvelopeCipher(keys, clock=clock)
    sealed = writer.seal(*BINDING, b"x")
    reader = EnvelopeCipher(keys, clock=clock)
    keys.fail = KeyServiceUnavailable("tenant acme: Key Vault unreachable")
    with pytest.raises(SealingUnavailable):
        reader.open(*BINDING, sealed)
    keys.fail = KeyGone("tenant acme: the key was not found")
    with pytest.raises(SealedDataUnreadable):
        reader.open(*BINDING, sealed)


def test_forget_drops_cached_keys(cipher: EnvelopeCipher, keys: CountingKeys):
    sealed = cipher.seal(*BINDING, b"x")
    cipher.seal("contoso", "t", "p", "r", b"x")
    keys.keys.clear()  # the tenant's key is destroyed elsewhere
    assert cipher.open(*BINDING, sealed) == b"x"  # still cached: shredding takes effect per cache period
    cipher.forget("acme")
    with pytest.raises(SealedDataUnreadable):
        cipher.open(*BINDING, sealed)
    cipher.seal("contoso", "t", "p", "r", b"x")  # other tenant's cached key untouched
    assert keys.calls["active_key"] == 2


def test_no_key_material_or_plaintext_in_repr_or_errors(cipher: EnvelopeCipher, keys: CountingKeys):
    sealed = cipher.seal(*BINDING, b"hunter2-plaintext")
    key = keys.keys[("acme", SEALED.match(sealed).group(1))]
    text = repr(cipher) + str(vars(cipher))
    assert key.hex() not in text and repr(key) not in text
    with pytest.raises(SealedDataUnreadable) as caught:
        cipher.open("acme", "gkacmeEvents", "github", "run-43", sealed)
    assert "hunter2" not in str(caught.value) and sealed not in str(caught.value)


def test_settings_are_validated():
    from gatekeeper.services import build_key_provider
    from gatekeeper.settings import Settings

    def never() -> object:
        raise AssertionError("no credential is needed to refuse the settings")

    with pytest.raises(ValueError, match="GATEKEEPER_KEY_MODE"):
        Settings.from_environ({"GATEKEEPER_KEY_MODE": "plaintext"})
    with pytest.raises(ValueError, match="GATEKEEPER_DATA_KEY_CACHE_SECONDS"):
        Settings.from_environ({"GATEKEEPER_DATA_KEY_CACHE_SECONDS": "soon"})
    with pytest.raises(ValueError, match="GATEKEEPER_DATA_KEY_CACHE_SECONDS"):
        Settings.from_environ({"GATEKEEPER_DATA_KEY_CACHE_SECONDS": "0"})
    assert Settings.from_environ({}).data_key_cache_seconds == 300
    with pytest.raises(RuntimeError, match="GATEKEEPER_KEY_VAULT_URL"):
        build_key_provider(Settings.from_environ({"GATEKEEPER_KEY_MODE": "keyvault"}), never)  # type: ignore[arg-type]
