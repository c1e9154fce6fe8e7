"""Signed webhooks against the local receiver, which verifies every delivery with
`verify_webhook_signature` (the function receivers are told to use)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from devstack.webhook import LocalWebhookReceiver
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    sign_webhook,
    verify_webhook_signature,
)
from tests.support.adapter_logs import adapter_lines

SECRET = b"tenant-webhook-signing-secret-0123456789"


@pytest.fixture
def receiver():
    with LocalWebhookReceiver(SECRET) as server:
        yield server


@pytest.fixture
def sender() -> WebhookSender:
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda s: None)
    return WebhookSender(policy=policy, allow_loopback_http=True)


def test_a_delivery_is_signed_and_verifies_at_the_receiver(sender, receiver):
    result = sender.send(
        f"{receiver.url}/ci/callback",
        SECRET,
        "gate.completed",
        {"tenant_id": "contoso", "state": "approved", "approved": True},
    )
    assert result.ok and result.status_code == 200 and result.attempts == 1 and result.target == "webhook"
    [delivery] = receiver.deliveries
    assert delivery["event"] == "gate.completed" and delivery["path"] == "/ci/callback"
    assert delivery["body"]["state"] == "approved" and delivery["body"]["event"] == "gate.completed"
    assert delivery["body"]["delivery_id"] == delivery["delivery_id"]
    [request] = receiver.requests
    assert request.headers[SIGNATURE_HEADER.lower()].startswith("sha256=")
    assert request.headers["content-type"] == "application/json"


def test_signature_covers_timestamp_and_body():
    body = json.dumps({"state": "approved"}).encode()
    now = int(time.time())
    header = sign_webhook(SECRET, str(now), body)
    assert verify_webhook_signature(SECRET, str(now), body, header)
    assert not verify_webhook_signature(SECRET, str(now), body.replace(b"approved", b"rejected"), header)
    assert not verify_webhook_signature(SECRET, str(now + 1), body, header)  # timestamp is signed
    assert not verify_webhook_signature(b"another-secret", str(now), body, header)
    old = str(now - 3600)
    assert not verify_webhook_signature(SECRET, old, body, sign_webhook(SECRET, old, body))  # replay
    assert verify_webhook_signature(SECRET, old, body, sign_webhook(SECRET, old, body), tolerance=7200)
    assert not verify_webhook_signature(SECRET, "not-a-number", body, header)


def test_a_tampered_delivery_is_refused_by_the_receiver(sender, receiver):
    import requests

    assert sender.send(receiver.url, SECRET, "gate.completed", {"state": "rejected"}).ok
    original = receiver.requests[0]
    tampered = original.body.replace(b"rejected", b"approved")
    headers = {
        SIGNATURE_HEADER: original.headers[SIGNATURE_HEADER.lower()],
        TIMESTAMP_HEADER: original.headers[TIMESTAMP_HEADER.lower()],
        DELIVERY_HEADER: "forged",
        "Content-Type": "application/json",
    }
    answer = requests.post(receiver.url, data=tampered, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert [d["body"]["state"] for d in receiver.deliveries] == ["rejected"]


def test_retries_keep_the_delivery_id_and_sign_each_attempt(sender, receiver):
    receiver.fail_next(2, 500)
    result = sender.send(receiver.url, SECRET, "gate.progress", {"comment": "waiting"}, action="progress")
    assert result.ok and result.attempts == 3 and result.action == "progress"
    ids = {r.headers[DELIVERY_HEADER.lower()] for r in receiver.requests}
    assert len(ids) == 1 and len(receiver.requests) == 3
    for request in receiver.requests:
        assert verify_webhook_signature(
            SECRET, request.headers[TIMESTAMP_HEADER.lower()], request.body, request.headers[SIGNATURE_HEADER.lower()]
        )


def test_a_receiver_with_another_secret_refuses_and_it_is_not_retried(sender):
    with LocalWebhookReceiver(b"the-receiver-knows-another-secret") as other:
        result = sender.send(other.url, SECRET, "gate.completed", {"state": "approved"})
    assert not result.ok and result.status_code == 401 and result.attempts == 1


def test_final_failure_is_returned(sender, receiver):
    receiver.fail_next(10, 503)
    result = sender.send(receiver.url, SECRET, "gate.completed", {"state": "approved"})
    assert not result.ok and result.attempts == 4 and "retries exhausted" in result.detail


def test_unreachable_receiver_is_retried_then_reported(sender):
    with LocalWebhookReceiver(SECRET) as server:
        url = server.url
    result = sender.send(url, SECRET, "gate.completed", {"state": "approved"})  # nothing listens any more
    assert not result.ok and result.status_code is None and result.attempts == 4
    assert "ConnectionError" in result.detail


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://ci.example.com/hook", "https"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/metadata", "private"),
        ("https://user:pw@ci.example.com/hook", "credentials"),
        ("ftp://ci.example.com/hook", "https"),
        ("", "required"),
    ],
)
def test_callback_urls_are_checked_before_anything_is_sent(url, reason):
    result = WebhookSender().send(url, SECRET, "gate.completed", {})
    assert not result.ok and result.attempts == 0
    assert result.detail.startswith("callback.url:") and reason in result.detail


def test_loopback_needs_the_local_switch(receiver):
    result = WebhookSender().send(receiver.url, SECRET, "gate.completed", {})
    assert not result.ok and receiver.requests == []


def test_the_secret_and_url_query_never_reach_logs_or_results(sender, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(10, 500, body={"message": "echo " + SECRET.decode()})
    result = sender.send(f"{receiver.url}/hook?code=function-key-secret", SECRET, "gate.completed", {})
    assert not result.ok
    for text in (caplog.text, result.detail, repr(result)):
        assert SECRET.decode() not in text
        assert "function-key-secret" not in text


def test_each_delivery_logs_its_result_detail_once_on_the_webhook_logger(sender, receiver, caplog):
    """The log line is the result's detail: info when the receiver acknowledged, error when it did not; on
    the adapter's own logger, with the URL's query left out."""
    caplog.set_level(logging.DEBUG, logger="gatekeeper.integrations.webhook")
    url = f"{receiver.url}/hook?code=function-key-secret"
    ok = sender.send(url, SECRET, "gate.completed", {}, action="progress")
    receiver.fail_next(10, 500)
    failed = sender.send(url, SECRET, "gate.completed", {})
    lines = adapter_lines(caplog, "gatekeeper.integrations.webhook", "webhook.py")
    assert lines == [(logging.INFO, ok.detail), (logging.ERROR, failed.detail)]
    assert ok.detail.startswith(f"webhook gate.completed to {receiver.url}/hook delivery ")
    assert "?" not in ok.detail and "function-key-secret" not in caplog.text
    assert (ok.ok, ok.status_code, ok.attempts, ok.target, ok.action) == (True, 200, 1, "webhook", "progress")
    assert (failed.ok, failed.status_code, failed.attempts, failed.action) == (False, 500, 4, "complete")
