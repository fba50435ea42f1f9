"""Dead letters: events a handler gave up on, kept for inspection and redelivery."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nexus.errors import EventError
from nexus.kernel._envelope import Event, next_id
from nexus.kernel._mailbox import Counters, Subscription, Tracked, Tracker, counters_for, describe

__all__ = ["DeadLetter", "DeadLetterStore", "DeadLettering", "DeliveryReport", "outcome"]

logger = logging.getLogger("nexus.events")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a subscriber gave up on after every retry (text only, no exception objects)."""

    id: str
    event: Event
    subscriber: str  # "owner:handler qualname", e.g. "audit:AuditPlugin.on_login"
    pattern: str
    error: str  # "ValueError: bad input"
    traceback: str
    attempts: int
    time: float


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one event at each matching subscriber in this process."""

    event: Event
    delivered: int  # handlers that finished (after retries, if any)
    failed: int  # handlers that gave up: each one is in `dead_lettered`
    dropped: int = 0  # deliveries cancelled by an unsubscribe, a full queue or the bus closing
    dead_lettered: tuple[DeadLetter, ...] = ()


class DeadLetterStore:
    """Events that handlers gave up on, newest first; keeps the newest `limit` of them."""

    __slots__ = ("_letters", "_limit", "_redeliver", "dropped")

    def __init__(
        self, limit: int, redeliver: Callable[[DeadLetter], Awaitable[DeliveryReport]]
    ) -> None:
        self._letters: dict[str, DeadLetter] = {}
        self._limit, self._redeliver = limit, redeliver
        self.dropped = 0  # letters pushed out by newer ones past the limit

    def __len__(self) -> int:
        return len(self._letters)

    def get(self, letter_id: str) -> DeadLetter | None:
        """The dead letter with this id, or None."""
        return self._letters.get(letter_id)

    async def redeliver(self, letter_id: str) -> DeliveryReport:
        """Hand the letter's event again to its subscriber alone, and wait for the outcome.

        The letter leaves the store once the event is queued; should the handler fail again, a
        new dead letter records it. Raises EventError if the subscriber is no longer subscribed.
        """
        letter = self._letters.get(letter_id)
        if letter is None:
            raise EventError(
                f"No dead letter with id {letter_id!r}: it was redelivered, discarded, or pushed "
                f"out by newer ones (the store keeps the newest {self._limit})."
            )
        return await self._redeliver(letter)

    def discard(self, letter_id: str) -> bool:
        """Forget a dead letter; returns whether it was there."""
        return self._letters.pop(letter_id, None) is not None

    def clear(self) -> int:
        """Forget every dead letter; returns how many there were."""
        count = len(self._letters)
        self._letters.clear()
        return count

    def _add(self, letter: DeadLetter) -> None:
        letters = self._letters
        letters[letter.id] = letter
        while len(letters) > self._limit:
            del letters[next(iter(letters))]
            self.dropped += 1

    def list(self) -> builtins.list[DeadLetter]:
        """Every dead letter, newest first."""
        return builtins.list(reversed(self._letters.values()))


async def outcome(tracker: Tracker, limit: float | None) -> DeliveryReport:
    """Wait until every handler `tracker` expects is done with its event; report how it went."""
    try:
        await asyncio.wait_for(tracker.future, limit)
    except TimeoutError:
        event, pending = tracker.event, tracker.pending
        raise TimeoutError(
            f"Event {event.type!r} ({event.id}) is published, but {len(pending)} handler(s) "
            f"did not finish within {limit} s: {', '.join(pending)}."
        ) from None
    return DeliveryReport(
        tracker.event,
        tracker.delivered,
        len(tracker.dead_letters),
        tracker.dropped,
        tuple(tracker.dead_letters),
    )


class DeadLettering:
    """EventBus's dead-letter handling: recording letters, and redelivering one on request."""

    if TYPE_CHECKING:  # what this part uses of the EventBus it is part of
        _is_running: bool
        _subs: list[Subscription]
        _topics: dict[str, Counters]

        @property
        def dead_letters(self) -> DeadLetterStore: ...

        def _not_running(self, action: str, topic: str) -> EventError: ...

        async def _wait_for_room(
            self, event: Event, item: Event | Tracked, blocked: list[Subscription]
        ) -> None: ...

    def _dead_letter(
        self, sub: Subscription, event: Event, error: BaseException, attempts: int
    ) -> DeadLetter:
        letter = DeadLetter(
            id="dl-" + next_id(),
            event=event,
            subscriber=sub.name,
            pattern=sub.pattern,
            error=describe(error),
            traceback="".join(traceback.format_exception(error)),
            attempts=attempts,
            time=time.time(),
        )
        self.dead_letters._add(letter)
        counters_for(self._topics, event.type).dead_lettered += 1
        logger.error(
            "Handler %r of plugin %r failed on event %r (%s) after %d attempt(s), "
            "dead-lettered as %s: %s",
            sub.handler_name,
            sub.owner,
            event.type,
            event.id,
            attempts,
            letter.id,
            letter.error,
            exc_info=error,
            extra={"plugin": sub.owner, "topic": event.type, "event_id": event.id},
        )
        return letter

    async def _redeliver(self, letter: DeadLetter) -> DeliveryReport:
        event = letter.event
        if not self._is_running:
            raise self._not_running("redeliver", event.type)
        sub = next(
            (s for s in self._subs if s.name == letter.subscriber and s.pattern == letter.pattern),
            None,
        )
        if sub is None:
            raise EventError(
                f"Cannot redeliver dead letter {letter.id!r}: subscriber {letter.subscriber!r} "
                f"(pattern {letter.pattern!r}) is no longer subscribed. Subscribe the handler "
                f"again first, or drop the letter with `dead_letters.discard({letter.id!r})`."
            )
        tracker = Tracker(event, asyncio.get_running_loop().create_future())
        tracker.expect((sub,))
        item = Tracked(event, tracker)
        if not sub.put_nowait(item, event.priority):
            await self._wait_for_room(event, item, [sub])
        self.dead_letters.discard(letter.id)
        return await outcome(tracker, None)
