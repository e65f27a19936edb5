"""Virtual key secrets: random, shown once, stored only as a SHA-256 hash.

A key is ``sk-slc-`` followed by 43 url-safe characters (256 random bits). SHA-256 without a
salt is the right hash here: the input is high-entropy random, so there is nothing to brute
force, and the lookup must be one indexed equality per request.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-slc-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key: (secret to show once, display prefix, hash to store)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[: len(KEY_PREFIX) + 4], hash_key(secret)


def looks_like_virtual_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)
