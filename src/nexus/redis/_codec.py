"""Events as stream entries: the topic in a field of its own (to filter without parsing), the
rest of the envelope as JSON.

    XADD <prefix>:stream:user * type user.created event {"id":..,"source":..,"time":..,
                                                         "cid":..,"priority":..,"data":..}
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from nexus.errors import EventError
from nexus.kernel.events import Event, restore_event

TYPE: Final = b"type"
BODY: Final = b"event"
_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def encode(event: Event) -> bytes:
    """The `event` field of the entry; EventError if the data is not JSON-serialisable."""
    try:
        return orjson.dumps(
            {
                "id": event.id,
                "source": event.source,
                "time": event.time,
                "cid": event.correlation_id,
                "priority": event.priority,
                "data": event.data,
            },
            option=_OPTIONS,
        )
    except TypeError as exc:
        raise EventError(
            f"Event {event.type!r} cannot travel through the redis transport: its data must be "
            f"JSON-serialisable ({exc}). Publish plain data, e.g. model.model_dump(mode='json')."
        ) from None


def fields(event: Event) -> dict[bytes, bytes]:
    """The entry's fields for `event`."""
    return {TYPE: event.type.encode(), BODY: encode(event)}


def decode(topic: str, entry: dict[bytes, bytes], attempt: int) -> Event:
    """The event stored in an entry; KeyError, TypeError or ValueError if it is not one."""
    body: dict[str, Any] = orjson.loads(entry[BODY])
    return restore_event(
        body["id"],
        topic,
        body["source"],
        body["time"],
        body["data"],
        body["cid"],
        body["priority"],
        attempt,
    )


def dead_letter_fields(event: Event, **details: str | int | float) -> dict[bytes, bytes]:
    """A dead-letter stream entry: the event's fields plus `details`."""
    entry = fields(event)
    for key, value in details.items():
        entry[key.encode()] = str(value).encode()
    return entry
