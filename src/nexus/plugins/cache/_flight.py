"""Single flight: concurrent callers asking for the same key share one run of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, TypeVar, cast

T = TypeVar("T")


class SingleFlight:
    """Runs at most one `work()` per key at a time; callers meanwhile await the same result."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the running `work` for `key`, starting it if none runs."""
        task = self._tasks.get(key)
        if task is None:
            # The work runs in its own task so that a caller giving up (a client that
            # disconnected) neither cancels it for the other waiters nor wastes it: the value
            # still lands in the cache.
            task = asyncio.get_running_loop().create_task(work())
            self._tasks[key] = task
            task.add_done_callback(partial(self._finished, key))
        return cast(T, await asyncio.shield(task))

    def _finished(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have given up already
