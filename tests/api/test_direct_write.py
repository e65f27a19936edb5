"""A response's head and first body part in one write on uvicorn's real request cycle, the state
uvicorn is left in, and the cases that go the ASGI way instead."""

from __future__ import annotations

import asyncio

from sluice.api.direct_write import cycle_of, write_head_and_body
from sluice.api.middleware import RequestContext
from tests.api.test_disconnect_watch import _cycle


class _ClosingTransport:
    def __init__(self, transport) -> None:
        self.inner, self.closed = transport, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self) -> None:
        self.closed = True


def _json_start(body: bytes, extra=()) -> dict:
    return {"type": "http.response.start", "status": 200,
            "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json"), *extra]}


async def test_a_json_response_is_one_write_and_completes_the_cycle():
    cycle, body = _cycle(), b'{"ok":true}'
    done = []
    cycle.on_response = lambda: done.append(True)
    assert cycle_of(cycle.receive) is cycle
    assert write_head_and_body(cycle, _json_start(body), {"type": "http.response.body", "body": body})
    (written,) = cycle.transport.written
    assert written == (b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n"
                       b'{"ok":true}')
    assert cycle.response_started and cycle.response_complete and done and cycle.message_event.is_set()


async def test_a_stream_starts_in_one_write_and_goes_on_through_uvicorn():
    cycle = _cycle()
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    assert write_head_and_body(cycle, start, {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    first, rest = cycle.transport.written
    assert first.endswith(b"transfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert rest == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" and cycle.response_complete


async def test_a_closing_connection_says_so_and_is_closed():
    cycle, body = _cycle(), b"{}"
    cycle.keep_alive = False
    cycle.transport = _ClosingTransport(cycle.transport)
    assert write_head_and_body(cycle, _json_start(body), {"type": "http.response.body", "body": body})
    assert b"connection: close\r\n" in cycle.transport.written[0] and cycle.transport.closed


async def test_what_is_not_the_plain_case_goes_the_asgi_way():
    body = b"{}"
    cycle = _cycle()
    bad = _json_start(body, [(b"x-evil", b"a\r\nset-cookie: x")])
    assert not write_head_and_body(cycle, bad, {"type": "http.response.body", "body": body})
    assert not write_head_and_body(cycle, _json_start(body, [(b"connection", b"close")]),
                                   {"type": "http.response.body", "body": body})
    assert not write_head_and_body(cycle, _json_start(b"{}{}"),  # a length announced, sent in parts
                                   {"type": "http.response.body", "body": body, "more_body": True})
    assert not cycle.transport.written and not cycle.response_started
    head = _cycle()
    head.scope["method"] = "HEAD"
    assert cycle_of(head.receive) is None

    async def receive():  # not uvicorn's
        return {"type": "http.disconnect"}

    assert cycle_of(receive) is None


async def test_the_request_context_answers_in_one_write_with_the_request_id():
    cycle, body = _cycle(), b'{"a":1}'

    async def app(scope, receive, send):
        await send(_json_start(body))
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": body})

    await RequestContext(app, access_log_enabled=False)(cycle.scope, cycle.receive, cycle.send)
    (written,) = cycle.transport.written
    assert b"\r\nx-request-id: " in written and written.endswith(body) and cycle.response_complete


async def test_header_checks_are_uvicorns_own():
    body = b"{}"
    for name, value in ((b"x evil", b"1"), (b"x-evil:", b"1"), (b"x-\x7f", b"1"), (b"x-nul", b"a\x00b"),
                        (b"x-lf", b"a\nb")):
        cycle = _cycle()
        assert not write_head_and_body(cycle, _json_start(body, [(name, value)]),
                                       {"type": "http.response.body", "body": body}), (name, value)
    cycle = _cycle()  # a tab may be in a value, as uvicorn allows
    assert write_head_and_body(cycle, _json_start(body, [(b"x-tab", b"a\tb")]), {"type": "http.response.body", "body": body})
    assert b"x-tab: a\tb\r\n" in cycle.transport.written[0]


async def test_names_go_out_lowercased_and_a_doubled_length_goes_the_asgi_way():
    body = b"{}"
    cycle = _cycle()
    assert write_head_and_body(cycle, _json_start(body, [(b"X-Custom", b"Value")]),
                               {"type": "http.response.body", "body": body})
    assert b"\r\nx-custom: Value\r\n" in cycle.transport.written[0]
    doubled = _cycle()
    assert not write_head_and_body(doubled, _json_start(body, [(b"Content-Length", b"2")]),
                                   {"type": "http.response.body", "body": body})
    assert not doubled.transport.written
