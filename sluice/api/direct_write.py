"""A response's head and its first body part in one socket write, under uvicorn (httptools).

uvicorn writes the status line and headers when it gets ``http.response.start`` and the body
when it gets ``http.response.body``: two ``write`` system calls per response, each several
microseconds on a virtual machine — for a model call through Sluice, as much as a ledger row.
``RequestContext`` holds the start message until the first body part arrives; this module then
writes both at once on uvicorn's transport and leaves uvicorn's request cycle in the state its
own ``send`` would have (started; chunked or with a length left; complete when it was the last
part), so any later parts and the connection's keep-alive go through uvicorn as usual.

Only the plain case is taken: uvicorn's httptools protocol, no access log or default headers of
its own, not a HEAD request, not paused for flow control, no ``connection`` header from the app,
headers that pass uvicorn's own validity checks. Anything else — another server, another uvicorn
— returns False and the caller sends both messages the ASGI way.
"""

from __future__ import annotations

from typing import Any

try:  # the same tables uvicorn's httptools protocol uses
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, RequestResponseCycle
except ImportError:  # pragma: no cover - uvicorn without httptools: always the ASGI way
    RequestResponseCycle = None  # type: ignore[assignment,misc]


def _bytes_matching(pattern: Any) -> bytes:
    """Every byte ``pattern`` (a one-character class) matches."""
    return bytes(b for b in range(256) if pattern.match(bytes((b,))))


if RequestResponseCycle is not None:
    # uvicorn's two classes as byte sets: deleting them with ``bytes.translate`` checks a whole
    # head in one C loop, where the regular expressions test every byte against a class.
    _BAD_NAME_BYTES, _BAD_VALUE_BYTES = _bytes_matching(HEADER_RE), _bytes_matching(HEADER_VALUE_RE)


_HEADER_LINE = b"%s: %s\r\n"


def _has_any(data: bytes, bad: bytes) -> bool:
    return len(data.translate(None, bad)) != len(data)


def uvicorn_cycle(receive: Any) -> Any:
    """uvicorn's (httptools) request cycle behind an ASGI ``receive``, else None."""
    cycle = getattr(receive, "__self__", None)
    if RequestResponseCycle is None or type(cycle) is not RequestResponseCycle:
        return None
    return cycle


def cycle_of(receive: Any) -> Any:
    """uvicorn's request cycle behind an ASGI ``receive``, when it is one this module can drive."""
    cycle = uvicorn_cycle(receive)
    if cycle is None or cycle.access_log or cycle.default_headers or cycle.scope["method"] == "HEAD":
        return None
    return cycle


def write_head_and_body(cycle: Any, start: dict, body: dict) -> bool:
    """Write ``start`` and the first ``body`` message in one transport write; False (nothing
    written) when this response is not the plain case."""
    if cycle.response_started or cycle.disconnected or cycle.flow.write_paused:
        return False
    status = start["status"]
    data = body.get("body", b"")
    more = body.get("more_body", False)
    content = [STATUS_LINE[status]]
    length = None
    headers = start.get("headers")
    if headers:
        # All names and all values at once, in C loops: a response carries a dozen headers.
        names, values = zip(*headers)
        # uvicorn's validity checks (a tab may be in a value, no name holds a newline)
        if _has_any(b"".join(names), _BAD_NAME_BYTES) or _has_any(b"\t".join(values), _BAD_VALUE_BYTES):
            return False
        lowered = b"\n".join(names).lower().split(b"\n")
        if b"transfer-encoding" in lowered or b"connection" in lowered:
            return False
        if b"content-length" in lowered:
            if lowered.count(b"content-length") > 1:
                return False
            length = int(values[lowered.index(b"content-length")])
        content += map(_HEADER_LINE.__mod__, zip(lowered, values))
    if length is not None and (more or length != len(data)):
        return False  # a body in several parts under a length: uvicorn's own bookkeeping
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    chunked = length is None and status not in (204, 304)
    if chunked:
        content.append(b"transfer-encoding: chunked\r\n\r\n")
        if data:
            content += (b"%x\r\n" % len(data), data, b"\r\n")
        if not more:
            content.append(b"0\r\n\r\n")
    else:
        content += (b"\r\n", data)
    cycle.transport.write(b"".join(content))
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = chunked
    cycle.expected_content_length = 0
    if not more:
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()
    return True


__all__ = ["cycle_of", "uvicorn_cycle", "write_head_and_body"]
