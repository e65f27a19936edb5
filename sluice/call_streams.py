"""The wrappers a streamed call's chunks pass through on their way back to the client: the
ledger's meter (usage, and the one record of the call) and the response cache's assembler."""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Callable

from sluice.policies.cache import StreamAssembler
from sluice.routing.router import PrimedStream
from sluice.schema import ChatChunk, GatewayError

if TYPE_CHECKING:
    from sluice.gateway import Call


class MeteredStream:
    """Passes batches through, keeps the latest usage, and records the call exactly once."""

    __slots__ = ("_inner", "_head", "_call", "_done", "_finished")

    def __init__(self, inner: AsyncIterator[list[ChatChunk]], call: Call, done: Callable[[], None]) -> None:
        self._head: list[ChatChunk] | None = None
        if type(inner) is PrimedStream:  # read its head here and its rest directly: one layer fewer
            self._head, inner = inner.split()
        self._inner = inner
        self._call = call
        self._done = done
        self._finished = False

    def __aiter__(self) -> "MeteredStream":
        return self

    async def __anext__(self) -> list[ChatChunk]:
        try:
            batch = self._head
            if batch is not None:
                self._head = None
            else:
                batch = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finish()
            raise
        except GatewayError as err:
            self._call.fail(err)
            self._finish()
            raise
        call = self._call
        for chunk in batch:
            if chunk.usage is not None:
                call.usage = chunk.usage
            elif chunk.text:
                call.output_chars += len(chunk.text)
            elif chunk.raw_tokens:
                call.output_chars += 3 * chunk.raw_tokens  # relayed events: about a token each
        return batch

    async def aclose(self) -> None:
        if not self._finished:  # closed before the end: the client went away
            self._call.abandon()
            self._finish()
        await self._inner.aclose()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._done()


class CachingStream:
    """Assembles a cacheable stream as it passes and stores it once it completes."""

    __slots__ = ("_inner", "_call", "_assembler", "_store")

    def __init__(self, inner: AsyncIterator[list[ChatChunk]], call: Call,
                 store: Callable[[StreamAssembler], None]) -> None:
        self._inner, self._call, self._store = inner, call, store
        self._assembler = StreamAssembler()

    def __aiter__(self) -> "CachingStream":
        return self

    async def __anext__(self) -> list[ChatChunk]:
        try:
            batch = await self._inner.__anext__()
        except StopAsyncIteration:
            if self._call.error_kind is None:
                self._store(self._assembler)
            raise
        add = self._assembler.add
        for chunk in batch:
            add(chunk)
        return batch

    async def aclose(self) -> None:
        await self._inner.aclose()
