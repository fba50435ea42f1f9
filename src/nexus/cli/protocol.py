"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools itself buffers a header of any size: one request with a 100 MB header held 100 MB
of the worker's memory. h11 stops at 16 KiB (uvicorn's `h11_max_incomplete_event_size`); this
protocol answers 431 once a request head passes `MAX_HEAD_BYTES`, and closes the connection.
"""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The largest request head accepted, like nginx's default large_client_header_buffers (4x8k)
#: with room to spare for big cookies and bearer tokens.
MAX_HEAD_BYTES: Final = 64 * 1024

_BODY: Final = (
    b'{"type":"about:blank","title":"Request Header Fields Too Large","status":431,'
    b'"detail":"The request line and headers exceed %d bytes."}' % MAX_HEAD_BYTES
)
_RESPONSE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head over MAX_HEAD_BYTES with a 431."""

    _head_bytes = 0
    _is_in_head = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._is_in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._is_in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing: if the head is still incomplete, all of `data` belonged to it
        # (a request begun mid-chunk is under-counted by at most one read).
        if self._is_in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.logger.warning("Request head over %d bytes refused (431).", MAX_HEAD_BYTES)
                self.transport.write(_RESPONSE)
                self.transport.close()
