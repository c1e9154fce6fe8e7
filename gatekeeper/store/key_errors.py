"""Two kinds of key failure, because callers must treat them differently.

`KeyServiceUnavailable` is transient (network, throttling, 5xx, missing permission, disabled key): retry later,
and never fall back to plain text. `KeyGone` is permanent for the data it concerns (the key was deleted,
the data key row is missing, or the wrapped key does not unwrap): that is what crypto-shredding looks like.
"""

from __future__ import annotations

import json

from azure.core.exceptions import AzureError, DeserializationError, HttpResponseError, ResourceNotFoundError


class KeyProviderError(Exception):
    """Base class. Messages name the tenant and the failure kind, never key material."""


class KeyServiceUnavailable(KeyProviderError):
    """The key service (Key Vault, the local key folder or the Keys table) cannot be used right now."""


class KeyGone(KeyProviderError):
    """The key needed for this data no longer exists or does not fit: the data is unreadable for good."""


class KeyRefused(KeyGone):
    """The KEK exists but refuses this wrapped key: it was not wrapped by this KEK version (damaged, or
    wrapped under a public key that is not the tenant's). Named apart so integrity reports say so."""


def classify(exc: BaseException, what: str) -> KeyProviderError:
    """Turn an SDK or crypto exception into one of the two kinds; `what` says what was attempted."""
    if isinstance(exc, KeyProviderError):
        return exc
    if isinstance(exc, ResourceNotFoundError) or (isinstance(exc, HttpResponseError) and exc.status_code == 404):
        return KeyGone(f"{what}: the key was not found (deleted or never created)")
    if isinstance(exc, HttpResponseError) and exc.status_code == 400:
        return KeyRefused(f"{what}: the key service could not unwrap the value with this key")
    if isinstance(exc, HttpResponseError):
        return KeyServiceUnavailable(f"{what}: the key service answered HTTP {exc.status_code}")
    if isinstance(exc, AzureError):
        return KeyServiceUnavailable(f"{what}: the key service failed ({type(exc).__name__})")
    if isinstance(exc, DeserializationError | json.JSONDecodeError | UnicodeDecodeError):
        # something answered that is not the key service (a proxy's or firewall's page): not a refusal
        return KeyServiceUnavailable(f"{what}: the key service's answer could not be read")
    if isinstance(exc, ValueError):  # local RSA-OAEP decryption failure: wrong key or damaged wrapped key
        return KeyRefused(f"{what}: the wrapped key does not unwrap with this key")
    return KeyServiceUnavailable(f"{what}: unexpected failure ({type(exc).__name__})")
