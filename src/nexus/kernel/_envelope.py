"""The event envelope, and the ids the bus gives each event it publishes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import operator
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from nexus.kernel.correlation import correlation_id as _correlation_id

__all__ = ["Event", "EventDraft", "new_event", "next_id", "next_id_block", "restore_event"]


@dataclass(frozen=True, slots=True)
class Event:
    """One published event: a CloudEvents-shaped envelope around `data`."""

    id: str
    type: str  # the topic
    source: str  # the publishing plugin, "nexus" for the platform
    time: float  # time.time() at publish
    data: Any
    correlation_id: str | None
    priority: int = 0
    # Deliveries of this event to the subscription handling it, this one included: 1 unless a
    # cluster transport hands it in again (its consumer died before acknowledging it). Local
    # retries do not count. The envelope's `id` stays the same: use it to handle idempotently.
    attempt: int = 1

    @property
    def redelivered(self) -> bool:
        """Whether an earlier delivery of this event may have been handled, in part or whole."""
        return self.attempt > 1

    @property
    def datetime(self) -> dt.datetime:
        """When the event was published, as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a CloudEvents 1.0 dict; `correlationid`, `priority` are extensions."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.datetime.isoformat().replace("+00:00", "Z"),
            "correlationid": self.correlation_id,
            "priority": self.priority,
            "data": self.data,
        }


class EventDraft:
    # A frozen dataclass's __init__ sets each field through object.__setattr__: ~1 us per
    # event on CPython 3.11, most of the publish budget. This twin has the same slots, so an
    # event is built with plain stores, then becomes an Event in place (a layout-compatible
    # __class__ assignment).
    __slots__ = tuple(field.name for field in dataclasses.fields(Event))


_new_object: Final = object.__new__
_wall_clock: Final = time.time

# Event ids: a random per-process prefix, a block number and a number within the block, like
# "3f9c0a1b7e42-1a-0ff". A uuid4 per event costs microseconds and even an f-string of a counter
# is 5% of publish, so each block of ids is made by C code (`map`) from a table of suffixes.
_ID_SUFFIXES: Final = [f"{n:03x}" for n in range(4096)]
_id_prefix = secrets.token_hex(6)
_id_blocks = itertools.count(1)
ids: Iterator[str] = iter(())  # read as `_envelope.ids`: next_id_block rebinds it


def next_id_block() -> str:
    """Start a new block of event ids and return its first id."""
    global ids
    block = f"{_id_prefix}-{next(_id_blocks):x}-"
    ids = map(operator.add, itertools.repeat(block, len(_ID_SUFFIXES)), _ID_SUFFIXES)
    return next(ids)


def _renew_ids() -> None:
    global _id_prefix, _id_blocks, ids
    _id_prefix, _id_blocks, ids = secrets.token_hex(6), itertools.count(1), iter(())


os.register_at_fork(after_in_child=_renew_ids)  # a forked worker must not repeat the parent's ids


def next_id() -> str:
    """A new event id (EventBus.publish inlines this)."""
    return next(ids, None) or next_id_block()


def new_event(
    topic: str, data: Any, source: str, priority: int, correlation_id: str | None
) -> Event:
    draft: Any = _new_object(EventDraft)  # the same steps are inlined in EventBus.publish
    draft.id = next(ids, None) or next_id_block()
    draft.type, draft.source, draft.time, draft.data = topic, source, _wall_clock(), data
    draft.correlation_id = correlation_id if correlation_id is not None else _correlation_id.get()
    draft.priority = priority
    draft.attempt = 1
    draft.__class__ = Event
    event: Event = draft
    return event


def restore_event(
    id: str,
    type: str,
    source: str,
    time: float,
    data: Any,
    correlation_id: str | None,
    priority: int,
    attempt: int,
) -> Event:
    """`Event(...)` for transports that rebuild received events: the same, four times faster."""
    draft: Any = _new_object(EventDraft)
    draft.id, draft.type, draft.source, draft.time = id, type, source, time
    draft.data, draft.correlation_id, draft.priority, draft.attempt = (
        data,
        correlation_id,
        priority,
        attempt,
    )
    draft.__class__ = Event
    event: Event = draft
    return event
