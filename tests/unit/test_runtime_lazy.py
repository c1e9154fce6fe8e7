"""Building the process services from settings builds only what every route needs: the audit checkpoint
signer and the Entra token validator are built on first use, once, so a cold instance answering a webhook
pays for neither (and an unreadable checkpoint key cannot fail ingestion)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper import services as services_module
from gatekeeper.security import entra
from gatekeeper.settings import Settings

# Azurite's documented development account; nothing here connects to it.
CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GATEKEEPER_STORAGE_CONNECTION", CONNECTION)
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("GATEKEEPER_CHECKPOINT_KEY_NAME", "audit-checkpoint")
    monkeypatch.setenv("GATEKEEPER_ENTRA_AUDIENCE", "api://gatekeeper")
    monkeypatch.setenv("GATEKEEPER_ENTRA_AUTHORITY_HOST", "http://127.0.0.1:9")
    services_module.set_services(None)
    yield tmp_path / "keys"
    services_module.set_services(None)


def test_the_checkpoint_key_is_read_on_first_audit_use_not_when_the_runtime_is_built(key_dir):
    built = services_module.get_services()
    assert not (key_dir / "audit-checkpoint.jwk.json").exists()  # before: created and loaded by every instance
    signer = built.checkpoint_signer
    assert signer is not None and (key_dir / "audit-checkpoint.jwk.json").exists()
    assert built.checkpoint_signer is signer  # built once


def test_a_checkpoint_key_that_cannot_be_read_fails_its_caller_and_is_retried(key_dir):
    calls = []

    def failing() -> object:
        calls.append(1)
        raise RuntimeError("key service down")

    rt = services_module.Services(Settings.from_environ(), checkpoint_signer_factory=failing)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="key service down"):
            rt.checkpoint_signer  # noqa: B018
    assert len(calls) == 2
    rt.checkpoint_signer = None  # an explicit value wins (tests and the demo assign one)
    assert rt.checkpoint_signer is None


def test_the_token_validator_is_built_on_the_first_bearer_token_only(key_dir, monkeypatch):
    built_validators: list[object] = []
    principal = object()  # whatever the real validator returns is passed through unchanged

    class Recording:
        def validate(self, token: str, expected_tenant_id: str | None = None) -> object:
            assert (token, expected_tenant_id) == ("tok", "tid")
            return principal

    def built(*args, allowed_tenants=None, **kwargs):  # type: ignore[no-untyped-def]
        built_validators.append(allowed_tenants)
        return Recording()

    monkeypatch.setattr(entra, "EntraTokenValidator", built)
    validator = services_module.get_services().token_validator
    assert validator is not None and built_validators == []
    assert validator.validate("tok", "tid") is principal
    assert validator.validate("tok", "tid") is principal
    assert len(built_validators) == 1 and callable(built_validators[0])  # the registry's tenant check


def test_without_an_audience_there_is_no_token_validator(key_dir, monkeypatch):
    monkeypatch.delenv("GATEKEEPER_ENTRA_AUDIENCE")
    assert services_module.get_services().token_validator is None
