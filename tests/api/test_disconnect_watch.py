"""The disconnect watch on uvicorn's own request cycle (no task per call) and on any ASGI receive."""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from sluice.api.http import Watched, _ConnectionWatch
from starlette.responses import Response


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _cycle() -> RequestResponseCycle:
    transport = _Transport()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    log = logging.getLogger("test")
    return RequestResponseCycle(scope, transport, FlowControl(transport), log, log, False, [], asyncio.Event(),
                                False, True, lambda: None)


async def _slow_answer(started: asyncio.Event, finished: list[str]):
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        finished.append("cancelled")
        raise
    return Response(b"late")


async def test_uvicorn_cycle_gets_the_taskless_watch():
    cycle = _cycle()
    task = asyncio.current_task()
    watch = _ConnectionWatch.start(cycle.receive, task)
    assert watch is not None
    watch.stop()
    assert not cycle.message_event._waiters  # nothing left behind on uvicorn's event


async def test_connection_lost_cancels_the_answer_and_nothing_else():
    cycle = _cycle()
    started, finished = asyncio.Event(), []
    call = asyncio.ensure_future(Watched(lambda: _slow_answer(started, finished))(cycle.scope, cycle.receive,
                                                                                   cycle.send))
    await started.wait()
    cycle.message_event.set()  # set for another reason (e.g. more body): the watch goes on
    await asyncio.sleep(0.01)
    assert not finished and not call.done()
    cycle.disconnected = True  # what uvicorn's connection_lost does
    cycle.message_event.set()
    await asyncio.wait_for(call, 1)
    assert finished == ["cancelled"] and not call.cancelled()  # the request task itself ends normally


async def test_completed_response_leaves_no_waiter_and_no_cancel():
    cycle = _cycle()
    await Watched(lambda: asyncio.sleep(0, Response(b"ok")))(cycle.scope, cycle.receive, cycle.send)
    assert cycle.response_complete and not cycle.message_event._waiters
    assert b"ok" in b"".join(cycle.transport.written)


async def test_any_other_server_gets_the_receive_watch():
    disconnect = asyncio.Event()

    async def receive():
        await disconnect.wait()
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    assert _ConnectionWatch.start(receive, asyncio.current_task()) is None
    started, finished = asyncio.Event(), []
    call = asyncio.ensure_future(Watched(lambda: _slow_answer(started, finished))({}, receive, send))
    await started.wait()
    disconnect.set()
    await asyncio.wait_for(call, 1)
    assert finished == ["cancelled"] and not sent
