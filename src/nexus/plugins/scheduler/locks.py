"""Run locks: which instance runs a job's run that is due at a given time.

With Redis, the first instance to `SET <prefix>:job:<owner>:<name>:<due-ms> <instance> NX PX
<ttl>` runs it; the others skip it. The lock names one run, not the job, so an instance that
dies while holding it never blocks later runs: the next due time is a new key. Without
Redis every instance runs every job (one instance, or jobs that are safe to repeat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from nexus.errors import NexusError
from nexus.redis import describe_error, open_redis, raise_if_cancelled, redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: The start of every run-lock key unless configured.
DEFAULT_PREFIX: Final = "nexus:scheduler"


class LockUnavailableError(NexusError, ConnectionError):
    """The run lock could not be asked (Redis unreachable): nobody knows who runs."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"The scheduler's run locks at {url} cannot be taken: {reason}.")


class RunLock(Protocol):
    """Decides which instance runs a run."""

    @property
    def is_shared(self) -> bool:
        """Whether other instances see the same locks (so each run happens once)."""
        ...

    async def claim(self, owner: str, job: str, due_ms: int, *, ttl_ms: int) -> bool:
        """True if this instance runs `job`'s run due at `due_ms`; LockUnavailableError."""
        ...

    async def ping(self) -> None:
        """Return if the locks can be taken; LockUnavailableError otherwise."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalRunLock:
    """Every run is this instance's: for a single instance, or without Redis."""

    is_shared: Final = False

    async def claim(self, owner: str, job: str, due_ms: int, *, ttl_ms: int) -> bool:
        """Always True."""
        return True

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisRunLock:
    """Run locks in Redis, shared by every instance with the same `prefix`."""

    is_shared: Final = True

    def __init__(
        self,
        url: str,
        *,
        instance_id: str,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
    ) -> None:
        self.url: Final = redact_url(url)
        self.prefix: Final = prefix
        self.instance_id: Final = instance_id
        self._client: Redis = open_redis(url, timeout=timeout, who="The scheduler plugin")
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)

    def key(self, owner: str, job: str, due_ms: int) -> str:
        """The Redis key of one run."""
        return f"{self.prefix}:job:{owner}:{job}:{due_ms}"

    async def claim(self, owner: str, job: str, due_ms: int, *, ttl_ms: int) -> bool:
        """SET NX the run's key: True if this instance set it."""
        try:
            won = await self._client.set(
                self.key(owner, job, due_ms), self.instance_id, nx=True, px=ttl_ms
            )
        except self._errors as exc:
            raise_if_cancelled()
            raise LockUnavailableError(self.url, describe_error(exc)) from exc
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here
        return bool(won)

    async def holder(self, owner: str, job: str, due_ms: int) -> str | None:
        """The instance that claimed a run, while its key lives."""
        try:
            value = await self._client.get(self.key(owner, job, due_ms))
        except self._errors as exc:
            raise_if_cancelled()
            raise LockUnavailableError(self.url, describe_error(exc)) from exc
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here
        return value.decode() if isinstance(value, bytes) else value

    async def ping(self) -> None:
        """Return if Redis answers."""
        try:
            await self._client.ping()
        except self._errors as exc:
            raise_if_cancelled()
            raise LockUnavailableError(self.url, describe_error(exc)) from exc
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()
