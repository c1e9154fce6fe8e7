"""The start-up window (gatekeeper.warmup): the process's first request runs with the cyclic collector paused,
what it built is frozen when it ends, and nothing else ever holds the collector off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from gatekeeper.warmup import StartupWindow


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """Whatever a test does, the test process's collector is left running (and thawed, so later tests'
    garbage cycles are collected as usual)."""
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


def test_the_first_hold_pauses_the_collector_and_freezes_what_it_built():
    window = StartupWindow()
    gc.enable()
    gc.unfreeze()
    before = gc.get_freeze_count()
    with window.hold():
        assert gc.isenabled() is False
        built = [[object()] for _ in range(1_000)]  # tracked containers, as imports make
    assert gc.isenabled() is True
    assert gc.get_freeze_count() >= before + len(built)
    assert window.open is False


def test_every_later_hold_leaves_the_collector_alone():
    window = StartupWindow()
    with window.hold():
        pass
    gc.unfreeze()
    with window.hold():
        assert gc.isenabled() is True
        with window.hold():
            assert gc.isenabled() is True
    assert gc.get_freeze_count() == 0  # nothing frozen again


def test_a_hold_inside_the_first_one_does_not_end_the_window():
    window = StartupWindow()
    with window.hold():
        with window.hold():  # the services built inside the first request (get_services holds too)
            pass
        assert gc.isenabled() is False
    assert gc.isenabled() is True


def test_a_first_request_that_fails_still_resumes_the_collector():
    window = StartupWindow()
    with pytest.raises(RuntimeError, match="boom"), window.hold():
        raise RuntimeError("boom")
    assert gc.isenabled() is True
    assert window.open is False


def test_a_collector_paused_by_someone_else_stays_paused():
    window = StartupWindow()
    gc.disable()
    with window.hold():
        assert gc.isenabled() is False
    assert gc.isenabled() is False


def test_a_concurrent_request_cannot_keep_the_collector_off():
    """Requests overlapping the first one run inside its pause but never extend it: once the first one
    ends the collector runs again, although the other is still in flight."""
    window = StartupWindow()
    first_inside, second_inside, first_done, release_second = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def first() -> None:
        with window.hold():
            first_inside.set()
            second_inside.wait(5)
        first_done.set()

    def second() -> None:
        first_inside.wait(5)
        with window.hold():
            second_inside.set()
            first_done.wait(5)
            seen["enabled while the second is in flight"] = gc.isenabled()
            release_second.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_done.wait(5)
    release_second.set()
    for thread in threads:
        thread.join(5)
    assert seen == {"enabled while the second is in flight": True}
    assert gc.isenabled() is True


def test_only_one_of_many_simultaneous_first_requests_holds_the_window():
    window = StartupWindow()
    start = threading.Barrier(8)
    inside: list[bool] = []
    lock = threading.Lock()

    def request() -> None:
        start.wait(5)
        with window.hold(), lock:
            inside.append(True)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(inside) == 8
    assert gc.isenabled() is True
    assert window.open is False


def test_an_http_route_runs_its_first_request_in_the_window(monkeypatch):
    """`functions.http.handle` holds the process's window around the whole action: the lazy imports of the
    route (its parser, the services module and the storage SDKs) come before `get_services` is called."""
    import azure.functions as func

    from functions import http

    monkeypatch.setattr(http, "FIRST_REQUEST", StartupWindow())
    request = func.HttpRequest("POST", "http://localhost/api/events", body=b"{}")
    seen: list[bool] = []

    def action() -> tuple[int, dict[str, object]]:
        seen.append(gc.isenabled())
        return 202, {"status": "accepted"}

    assert http.handle(request, action).status_code == 202
    assert http.handle(request, action).status_code == 202
    assert seen == [False, True]
    assert gc.isenabled() is True
