"""Active health checks: a tiny request to every deployment on a timer, fed to its circuit.

Passive checks (real traffic) only learn about a deployment that gets traffic; probes notice a
dead standby or a recovered deployment before a client pays for it. A probe is a one-token chat
completion ("ping"), the cheapest call every provider kind accepts.
"""

from __future__ import annotations

import asyncio
import logging

from sluice.routing.health import CircuitBreaker
from sluice.schema import ChatRequest, GatewayError, Message, TextPart

log = logging.getLogger("sluice.routing.probes")

_PING = [Message(role="user", content=[TextPart(text="ping")])]


class HealthProber:
    def __init__(self, deployments: dict, breaker: CircuitBreaker, interval: float, timeout: float) -> None:
        """``deployments``: name → Deployment (each has a ``client`` with ``chat``)."""
        self.deployments = deployments
        self.breaker = breaker
        self.interval = interval
        self.timeout = timeout
        self.results: dict[str, str] = {}  # name → "ok" | error kind, for /health/deployments
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None and self.deployments:
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.gather(*(self.probe(name, dep) for name, dep in self.deployments.items()))
            await asyncio.sleep(self.interval)

    async def probe(self, name: str, dep) -> None:
        req = ChatRequest(model=name, messages=_PING, max_tokens=1)
        try:
            async with asyncio.timeout(self.timeout):
                await dep.client.chat(req)
        except GatewayError as err:
            self.results[name] = err.kind
            await self.breaker.record_failure(name, err)
        except TimeoutError:
            err = GatewayError("timeout", f"health probe of '{name}' timed out", status=504)
            self.results[name] = "timeout"
            await self.breaker.record_failure(name, err)
        except Exception:  # noqa: BLE001 - a probe must never stop the loop
            log.exception("health probe of %s failed unexpectedly", name)
        else:
            self.results[name] = "ok"
            await self.breaker.record_success(name)
