"""The RMM clients (gatekeeper.integrations.ninjaone, .dattormm) with the real `requests` against local servers
speaking the vendors' wire formats (devstack/ninjaone.py, devstack/dattormm.py): tokens fetched once and
reused, renewed after a 401, never shown; maintenance, alert resolution and device status as the APIs take
them; outages (503, 429 with Retry-After) retried with backoff and reported, never raised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.dattormm import DattoRmmServer
from devstack.ninjaone import NinjaOneServer
from devstack.server import Response
from gatekeeper.integrations.dattormm import DattoRmm
from gatekeeper.integrations.ninjaone import NinjaOne
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.rmm import DeviceManagers
from gatekeeper.ports import MaintenanceWindow
from gatekeeper.tenancy.rmm_settings import RmmSettings

NINJA_ID, NINJA_SECRET = "ninja-client-id-1", "ninja-client-secret-s3cr3t-0123"
DATTO_KEY, DATTO_SECRET = "DATTOAPIKEY123", "datto-secret-key-s3cr3t-0123"
START = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


class Waits:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def policy(self, attempts: int = 4) -> RetryPolicy:
        return RetryPolicy(max_attempts=attempts, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=self.slept.append)


@pytest.fixture
def ninja():
    with NinjaOneServer(NINJA_ID, NINJA_SECRET) as server:
        server.add_device("311", "CONTOSO-WEB01")
        server.add_device("312", "CONTOSO-WEB02", offline=True)
        server.add_alert("0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e")
        yield server


@pytest.fixture
def datto():
    with DattoRmmServer(DATTO_KEY, DATTO_SECRET) as server:
        server.add_device("a7d2e9c4-1f3b-4a8e-b6c5-2e9d0f7a3b18", "CONTOSO-WEB01")
        server.add_alert("9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35")
        yield server


def ninja_settings(server: NinjaOneServer, **extra: object) -> RmmSettings:
    return RmmSettings.model_validate(
        {"vendor": "ninjaone", "api_url": server.url, "client_id": NINJA_ID, "client_secret": "env:NINJA", **extra}
    )


def datto_settings(server: DattoRmmServer) -> RmmSettings:
    return RmmSettings.model_validate(
        {"vendor": "dattormm", "api_url": server.url, "client_id": DATTO_KEY, "client_secret": "env:DATTO"}
    )


def ninja_client(server: NinjaOneServer, waits: Waits | None = None, secret: str = NINJA_SECRET) -> NinjaOne:
    return NinjaOne(ninja_settings(server), secret, policy=(waits or Waits()).policy(), allow_loopback_http=True)


def window(*devices: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        devices=devices,
        start=START,
        end=START + timedelta(minutes=45),
        features=("PATCHING", "AVSCANS", "TASKS"),
        reason="Gatekeeper post-deploy watch",
    )


def test_ninjaone_maintenance_on_and_off_for_every_device_with_one_token(ninja):
    client = ninja_client(ninja)
    on = client.start_maintenance(window("311", "312"))
    assert on.ok and on.targets == ("311", "312") and on.failed == ()
    assert ninja.maintenance["311"] == {
        "disabledFeatures": ["PATCHING", "AVSCANS", "TASKS"],
        "start": int(START.timestamp()),
        "end": int((START + timedelta(minutes=45)).timestamp()),
        "reasonMessage": "Gatekeeper post-deploy watch",
    }
    [token_call] = ninja.requests_to("/ws/oauth/token")
    assert token_call.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert b"grant_type=client_credentials" in token_call.body and b"scope=monitoring+management" in token_call.body
    status = client.device_status("311")
    assert status.ok and status.online is True and status.in_maintenance is True and status.name == "CONTOSO-WEB01"
    off = client.end_maintenance(("311", "312"))
    assert off.ok and ninja.maintenance == {}
    assert client.end_maintenance(("311",)).ok  # none scheduled any more: already the state we want
    assert client.token_requests == 1 and len(ninja.requests_to("/ws/oauth/token")) == 1
    assert client.device_status("312").online is False


def test_ninjaone_resets_the_alert(ninja):
    client = ninja_client(ninja)
    result = client.resolve_alert("0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e")
    assert result.ok and ninja.alerts["0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e"] == "RESET"
    unknown = client.resolve_alert("no-such-alert")
    assert not unknown.ok and unknown.failed == ("no-such-alert",) and unknown.status_code == 404
    assert unknown.attempts == 1  # a 404 is not retried


def test_an_expired_token_is_renewed_once_after_a_401(ninja):
    client = ninja_client(ninja)
    assert client.device_status("311").ok
    ninja.expire_tokens()
    assert client.device_status("311").ok
    assert client.token_requests == 2


def test_an_outage_is_retried_with_backoff_then_succeeds(ninja):
    waits = Waits()
    client = ninja_client(ninja, waits)
    ninja.fail_next(2, 503, path_contains="/maintenance")
    result = client.start_maintenance(window("311"))
    assert result.ok and result.attempts == 3 and len(waits.slept) == 2
    ninja.fail_next(1, 429, path_contains="/reset", retry_after=1)
    assert client.resolve_alert("0b5d9c3e-7f21-4a8b-9e6d-3c1f2a4b5d6e").ok
    assert waits.slept[-1] == 1.0  # the server's Retry-After


def test_a_lasting_outage_is_a_result_naming_the_devices_never_an_exception(ninja):
    client = ninja_client(ninja)
    ninja.fail_next(100, 503, path_contains="/v2/device/312")
    result = client.start_maintenance(window("311", "312"))
    assert not result.ok and result.failed == ("312",) and result.status_code == 503
    assert "retries exhausted" in result.detail and "312" in result.detail
    assert "311" in ninja.maintenance  # the other device was put in maintenance


def test_secrets_and_tokens_never_show(ninja):
    client = ninja_client(ninja, secret="wrong-secret-value-0123")
    result = client.start_maintenance(window("311"))
    assert not result.ok and "401" in result.detail
    good = ninja_client(ninja)
    assert good.device_status("311").ok
    token = next(iter(ninja.tokens))
    for text in (result.model_dump_json(), repr(client), repr(good), good.device_status("311").model_dump_json()):
        assert "wrong-secret-value" not in text and NINJA_SECRET not in text and token not in text


def test_plain_http_to_a_real_host_is_refused_without_a_call():
    settings = RmmSettings.model_validate(
        {"vendor": "ninjaone", "api_url": "http://127.0.0.1:9", "client_id": "x", "client_secret": "env:N"}
    )
    client = NinjaOne(settings, "s", policy=Waits().policy())  # loopback http not allowed here
    result = client.end_maintenance(("311",))
    assert not result.ok and "http" in result.detail and client.token_requests == 0


def test_a_private_or_link_local_api_host_is_refused_without_a_call():
    """A record stored before the import-time rule (or built without it) never makes the client send the
    tenant's RMM secret to an internal address: the rule every other credentialed client applies."""
    valid = RmmSettings.model_validate(
        {"vendor": "ninjaone", "api_url": "https://eu.ninjarmm.com", "client_id": "x", "client_secret": "env:N"}
    )
    for url in ("https://169.254.169.254", "https://10.0.0.4", "https://[fd00::1]"):
        client = NinjaOne(valid.model_copy(update={"api_url": url}), "s", policy=Waits().policy())
        result = client.end_maintenance(("311",))
        assert not result.ok and "private" in result.detail and client.token_requests == 0


def test_a_token_lifetime_no_float_can_hold_is_a_result_not_a_crash():
    """A vendor number too large for a float (JSON allows it) is refused by the bounded parser: the token
    answer is unusable, and that is the result the watch audits, never an exception out of the client."""
    with NinjaOneServer(NINJA_ID, NINJA_SECRET, expires_in=10**400) as server:
        server.add_device("311", "web-1")
        client = ninja_client(server)
        status = client.device_status("311")
        assert not status.ok and NINJA_SECRET not in (status.detail or "")


DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON no recursive parser survives


class DeepNinja(NinjaOneServer):
    """Answers the device status (or the token) with JSON nested deeper than any parser should follow."""

    deep_token = False

    def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        if path == "/ws/oauth/token" and self.deep_token:
            return 200, {"Content-Type": "application/json"}, DEEP
        if path.startswith("/v2/device/") and method == "GET":
            return 200, {"Content-Type": "application/json"}, DEEP
        return super().route(method, path, query, headers, body)


def test_vendor_answers_nested_without_bound_are_results_not_crashes():
    """A vendor's answer is input like any other: deep nesting is refused by the bounded parser and becomes
    the result the watch audits, never a RecursionError out of the client."""
    with DeepNinja(NINJA_ID, NINJA_SECRET) as server:
        status = ninja_client(server).device_status("311")
        assert not status.ok and "not JSON" in (status.detail or "")


class TokenlessNinja(NinjaOneServer):
    """The token endpoint answers 200 but with nothing usable (no access_token, or nesting no parser follows)."""

    answer = b'{"token_type": "Bearer", "expires_in": 3600}'

    def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        if path == "/ws/oauth/token":
            return 200, {"Content-Type": "application/json"}, self.answer
        return super().route(method, path, query, headers, body)


@pytest.mark.parametrize("answer", [TokenlessNinja.answer, DEEP], ids=["no-access-token", "too-deep"])
def test_a_200_without_a_usable_token_is_a_failure_never_done(answer: bytes):
    """Maintenance, alert resolution and device status are audited as what happened: a token answer that
    carried no token means nothing was done, whatever its status code."""
    with TokenlessNinja(NINJA_ID, NINJA_SECRET) as server:
        server.answer = answer
        server.add_device("311", "web-1")
        client = ninja_client(server)
        ended = client.end_maintenance(("311",))
        assert not ended.ok and ended.failed == ("311",) and "no usable access_token" in ended.detail
        reset = client.resolve_alert("a1")
        assert not reset.ok and reset.failed == ("a1",)
        status = client.device_status("311")
        assert not status.ok and "no usable access_token" in (status.detail or "")
        assert not [r for r in server.requests if r.path.startswith("/v2/")]  # no API call without a token


def test_datto_rmm_password_grant_resolve_and_status(datto):
    client = DattoRmm(datto_settings(datto), DATTO_SECRET, policy=Waits().policy(), allow_loopback_http=True)
    result = client.resolve_alert("9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35")
    assert result.ok and datto.alerts["9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35"] is True
    [token_call] = datto.requests_to("/auth/oauth/token")
    assert token_call.headers["authorization"] == "Basic cHVibGljLWNsaWVudDpwdWJsaWM="  # public-client:public
    assert b"grant_type=password" in token_call.body and DATTO_KEY.encode() in token_call.body
    status = client.device_status("a7d2e9c4-1f3b-4a8e-b6c5-2e9d0f7a3b18")
    assert status.ok and status.online is True and status.name == "CONTOSO-WEB01"
    assert client.token_requests == 1
    skipped = client.start_maintenance(window("a7d2e9c4-1f3b-4a8e-b6c5-2e9d0f7a3b18"))
    assert skipped.skipped and not skipped.ok and len(datto.requests) == 3  # nothing sent for maintenance


def test_datto_rmm_outage_is_retried_and_reported(datto):
    waits = Waits()
    client = DattoRmm(datto_settings(datto), DATTO_SECRET, policy=waits.policy(3), allow_loopback_http=True)
    datto.fail_next(5, 503, path_contains="/resolve")
    result = client.resolve_alert("9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35")
    assert not result.ok and result.attempts == 3 and result.status_code == 503 and len(waits.slept) == 2
    bad = DattoRmm(datto_settings(datto), "wrong", policy=waits.policy(), allow_loopback_http=True)
    refused = bad.device_status("a7d2e9c4-1f3b-4a8e-b6c5-2e9d0f7a3b18")
    assert not refused.ok and "400" in refused.detail and "wrong" not in refused.detail


def test_device_managers_build_one_client_per_tenant_from_its_settings(ninja):
    settings = {"t1": ninja_settings(ninja, client_secret="env:GK_T1_NINJA"), "t2": None}
    managers = DeviceManagers(settings.get, {"GK_T1_NINJA": NINJA_SECRET}, allow_loopback_http=True)
    first = managers.for_tenant("t1")
    assert first is not None and first is managers.for_tenant("t1")
    assert managers.for_tenant("t2") is None
    assert DeviceManagers(settings.get, {}, allow_loopback_http=True).for_tenant("t1") is None  # no secret


@pytest.mark.parametrize("ref", ["env:NINJA", "env:APPLICATIONINSIGHTS_CONNECTION_STRING", "env:GK_T2_NINJA"])
def test_a_stored_rmm_secret_naming_an_app_setting_not_its_own_builds_no_client(ninja, ref: str):
    """A record stored before the rule: its reference names a platform setting or another tenant's, so the
    value is never sent to the RMM host (no client; the watch audits the RMM as unavailable)."""
    settings = {"t1": ninja_settings(ninja, client_secret=ref)}
    environ = {ref.removeprefix("env:"): NINJA_SECRET}
    assert DeviceManagers(settings.get, environ, allow_loopback_http=True).for_tenant("t1") is None
    assert ninja.requests == []


@pytest.mark.parametrize("path", ["/v2/device/", "/ws/oauth/token"], ids=["api-answer", "token-answer"])
def test_an_rmm_answer_over_the_bound_is_read_no_further_and_fails_naming_the_bound(path: str):
    """The RMM client streams every answer (the token's too) and stops at its bound: a failed result naming
    the bound, the connection closed, nothing retried, never the whole body held in memory first."""
    import time

    from gatekeeper.integrations.rmm_oauth import MAX_BODY

    with NinjaOneServer(NINJA_ID, NINJA_SECRET) as server:
        server.add_device("311", "web-1")
        server.answer_huge(1, 64 * 1024 * 1024, path_contains=path)
        client = ninja_client(server)
        status = client.device_status("311")
        assert not status.ok and f"over the {MAX_BODY}-byte bound" in (status.detail or "")
        deadline = time.monotonic() + 10
        while not server.huge_written and time.monotonic() < deadline:
            time.sleep(0.02)
        [written] = server.huge_written
        assert written < 16 * 1024 * 1024  # the client hung up near its bound (socket buffers aside)
        assert len(server.requests_to(path)) == 1  # not retried: the same request gets the same answer
        assert client.device_status("311").ok  # the next call is served as usual
