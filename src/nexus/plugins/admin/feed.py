"""EventFeed: the latest events for the dashboard, and the live streams that follow them.

The admin plugin subscribes to every topic (`**`, in broadcast mode so each instance's
dashboard sees all events) and hands each event to `EventFeed.add`, which costs one
serialisation and a deque append; streams get the ready-made JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from nexus.kernel.events import Event
from nexus.kernel.topics import matches

#: What a stream's queue yields when the feed is closing.
_CLOSED: Final = object()


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One event as the dashboard shows it: `id` orders items within this feed."""

    id: str  # "<feed epoch>-<sequence>", the SSE event id
    seq: int
    type: str
    json: bytes


def _fallback(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class FeedStream:
    """One live stream's queue of items matching its pattern; the oldest are skipped if full."""

    def __init__(self, pattern: str, size: int) -> None:
        self.pattern = pattern
        self.skipped = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self._closed = False

    def offer(self, item: FeedItem) -> None:
        """Queue `item` if it matches; a full queue drops its oldest item to make room."""
        if self._closed or not matches(self.pattern, item.type):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.skipped += 1
        self._queue.put_nowait(item)

    def close(self) -> None:
        """Make `next` return None from now on, once queued items are taken."""
        if not self._closed:
            self._closed = True
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)

    @property
    def is_closed(self) -> bool:
        """Whether the stream was closed."""
        return self._closed

    async def next(self, timeout: float) -> FeedItem | None:
        """The next item, or None when the stream is closed; TimeoutError if none comes."""
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        return None if item is _CLOSED else item


class EventFeed:
    """A ring of the latest events, rendered for the dashboard, and the streams following it."""

    def __init__(self, *, size: int = 500, data_limit: int = 4096) -> None:
        self._items: deque[FeedItem] = deque(maxlen=size)
        self._data_limit = data_limit
        self._epoch = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._streams: set[FeedStream] = set()

    @property
    def stream_count(self) -> int:
        """Streams open right now."""
        return len(self._streams)

    async def add(self, event: Event) -> None:
        """Event handler: keep the event and pass it to every stream whose pattern matches."""
        seq = next(self._seq)
        item_id = f"{self._epoch}-{seq}"
        item = FeedItem(item_id, seq, event.type, self._render(item_id, event))
        self._items.append(item)
        for stream in self._streams:
            stream.offer(item)

    def _render(self, item_id: str, event: Event) -> bytes:
        try:
            data = orjson.dumps(event.data, default=_fallback, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # e.g. integers too large for JSON
            data = orjson.dumps(repr(event.data))
        if len(data) > self._data_limit:
            preview = data[: self._data_limit].decode("utf-8", "ignore")
            data = orjson.dumps({"truncated": True, "bytes": len(data), "preview": preview})
        envelope = orjson.dumps(
            {
                "id": item_id,
                "event_id": event.id,
                "type": event.type,
                "source": event.source,
                "time": event.datetime.isoformat().replace("+00:00", "Z"),
                "correlation_id": event.correlation_id,
                "priority": event.priority,
                "data": None,
            }
        )
        # Splice the pre-serialised data in place of the null (the last member).
        return envelope[: -len(b"null}")] + data + b"}"

    def recent(
        self, pattern: str = "**", *, limit: int = 100, after: str | None = None
    ) -> list[FeedItem]:
        """Kept items matching `pattern`, oldest first: the last `limit`, or those after an id.

        An `after` id from before this feed started (the plugin restarted) is ignored.
        """
        items: Iterator[FeedItem] = iter(self._items)
        if after is not None:
            epoch, _, seq = after.partition("-")
            if epoch == self._epoch and seq.isdigit():
                items = (item for item in self._items if item.seq > int(seq))
        found = [item for item in items if matches(pattern, item.type)]
        return found[-limit:] if limit else []

    def open(self, pattern: str, *, size: int) -> FeedStream:
        """Start a stream of the events matching `pattern` from now on."""
        stream = FeedStream(pattern, size)
        self._streams.add(stream)
        return stream

    def release(self, stream: FeedStream) -> None:
        """Stop feeding a stream (its client went away)."""
        stream.close()
        self._streams.discard(stream)

    def close_streams(self) -> None:
        """End every open stream (the plugin stops or is about to restart)."""
        for stream in list(self._streams):
            self.release(stream)
