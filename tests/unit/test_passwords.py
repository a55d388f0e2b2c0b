"""Staff passwords are hashed with Argon2id at argon2-cffi's tuned cost (RFC 9106, low memory),
patient PINs at OWASP's minimum (19 MiB, 2 passes, 1 lane).

The rest of the suite hashes at the cheapest cost (tests/conftest.py, ``quick_argon2``); this
test keeps the production hasher and says what it is.
"""

from __future__ import annotations

import argon2
import pytest

from qol_app.passwords import check_secret, hash_pin, hash_secret, pin_needs_rehash


@pytest.mark.real_argon2
def test_secrets_are_argon2id_at_the_production_cost():
    stored = hash_secret("123456")
    assert stored.startswith("$argon2id$")
    assert argon2.extract_parameters(stored) == argon2.profiles.RFC_9106_LOW_MEMORY
    assert check_secret(stored, "123456") and not check_secret(stored, "654321")
    assert not check_secret(None, "123456") and not check_secret("not a hash", "123456")


@pytest.mark.real_argon2
def test_pins_are_argon2id_at_owasps_minimum_and_older_pin_hashes_are_flagged_for_rehash():
    stored = hash_pin("123456")
    params = argon2.extract_parameters(stored)
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (argon2.Type.ID, 19456, 2, 1)
    assert check_secret(stored, "123456") and not check_secret(stored, "654321")
    assert not pin_needs_rehash(stored)
    assert pin_needs_rehash(hash_secret("123456"))  # made with the staff settings
    assert not pin_needs_rehash("not a hash")
