"""Password and PIN hashing with Argon2id (argon2-cffi's tuned defaults)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def check_secret(stored: str | None, candidate: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, candidate)
    except (VerificationError, InvalidHashError):
        return False
