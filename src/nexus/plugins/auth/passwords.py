"""Password hashing with argon2id, off the event loop and with bounded memory."""

from __future__ import annotations

import asyncio

from nexus.plugins.auth.errors import PasswordPolicyError
from nexus.plugins.auth.settings import PasswordHashing

try:
    import argon2
    from argon2.exceptions import InvalidHashError, VerificationError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The auth plugin hashes passwords with argon2-cffi, which is not installed. "
        "Install it with: pip install 'nexus-platform[auth]'"
    ) from exc


class Passwords:
    """Hash and verify passwords; also enforces the length policy.

    Each hash runs in a worker thread and holds `memory_cost` KiB, so at most
    `max_concurrent` run at once: a burst of logins queues instead of exhausting memory.
    """

    def __init__(self, settings: PasswordHashing, *, min_length: int, max_length: int) -> None:
        self.min_length, self.max_length = min_length, max_length
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost,
            parallelism=settings.parallelism,
            hash_len=settings.hash_len,
            salt_len=settings.salt_len,
            type=argon2.Type.ID,
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._decoy: str | None = None

    def check_policy(self, password: str) -> None:
        """Raise PasswordPolicyError when `password` is too short or too long."""
        if len(password) < self.min_length:
            raise PasswordPolicyError(
                f"The password is {len(password)} characters long; it needs at least "
                f"{self.min_length} (plugins.auth.password_min_length)."
            )
        if len(password) > self.max_length:
            raise PasswordPolicyError(
                f"The password is longer than {self.max_length} characters "
                f"(plugins.auth.password_max_length)."
            )

    async def hash(self, password: str) -> str:
        """An argon2id hash (`$argon2id$...`) of `password`."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        """Whether `password` matches `hashed`; False for a malformed hash too."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, hashed, password)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify_decoy(self, password: str) -> None:
        """Spend the time a verification takes, for a user that does not exist.

        Answering "no such user" faster than "wrong password" would tell an attacker which
        usernames exist.
        """
        if self._decoy is None:
            self._decoy = await self.hash("decoy password for unknown users")
        await self.verify(self._decoy, password)

    def needs_rehash(self, hashed: str) -> bool:
        """Whether `hashed` was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True
