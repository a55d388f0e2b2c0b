"""Secrets are hashed with Argon2id at argon2-cffi's tuned cost (RFC 9106, low memory).

The rest of the suite hashes at the cheapest cost (tests/conftest.py, ``quick_argon2``); this
test keeps the production hasher and says what it is.
"""

from __future__ import annotations

import argon2
import pytest

from qol_app.passwords import check_secret, hash_secret


@pytest.mark.real_argon2
def test_secrets_are_argon2id_at_the_production_cost():
    stored = hash_secret("123456")
    assert stored.startswith("$argon2id$")
    assert argon2.extract_parameters(stored) == argon2.profiles.RFC_9106_LOW_MEMORY
    assert check_secret(stored, "123456") and not check_secret(stored, "654321")
    assert not check_secret(None, "123456") and not check_secret("not a hash", "123456")
