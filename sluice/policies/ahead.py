"""A call's admission sent ahead: the limiter's round trip overlaps the work before the upstream send.

With limits in Redis, a call used to wait for the reservation's reply before it was routed and
its upstream request built. ``Limits.admit_ahead`` writes the reservation at once; the gateway
wraps the reply in an ``AdmissionAhead`` and hands it down with the call's route, and the
provider layer awaits it just before the request leaves (``HttpPool.send``). A refused call
therefore still never reaches the upstream, and the 429 is the one ``admit`` would raise.

It may be awaited more than once (each attempt of a call awaits it; only the first waits), and
by more than one attempt at a time (hedging): the outcome is kept and shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.schema import GatewayError


class AdmissionAhead:
    """``await ahead`` returns when the call is admitted, and raises the refusal when it is not.

    ``admitted(admission)`` and ``refused(error)`` tell the owner (once, when the answer comes).
    ``refused`` is True once a refusal came: an attempt that fails with it was never sent, so
    it says nothing about the deployment."""

    __slots__ = ("_pending", "_admitted", "_refused", "_done", "_error", "_others", "refused")

    def __init__(self, pending: Awaitable[Any], admitted: Callable[[Any], None],
                 refused: Callable[[GatewayError], None]) -> None:
        self._pending: Awaitable[Any] | None = pending
        self._admitted = admitted
        self._refused = refused
        self._done = False
        self._error: BaseException | None = None
        self._others: asyncio.Future | None = None  # made only when a second waiter comes early
        self.refused = False

    @property
    def started(self) -> bool:
        """Whether anyone has awaited it yet (a call that failed before its first attempt has not)."""
        return self._pending is None

    def __await__(self):  # noqa: ANN204
        return self._wait().__await__()

    async def _wait(self) -> None:
        pending = self._pending
        if pending is None:  # awaited before: its outcome, or the first waiter's when it comes
            if self._error is not None:
                raise self._error
            if not self._done:
                if self._others is None:
                    self._others = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._others)
            return
        self._pending = None
        try:
            admission = await pending
        except BaseException as exc:
            self._error = exc if isinstance(exc, Exception) else asyncio.CancelledError()
            if isinstance(exc, GatewayError):
                self.refused = True
                self._refused(exc)
            others = self._others
            if others is not None:
                if isinstance(exc, Exception):
                    others.set_exception(exc)
                else:
                    others.cancel()
            raise
        self._done = True
        self._admitted(admission)
        if self._others is not None:
            self._others.set_result(None)
