"""Assembling the emulator: the aiohttp application, an in-process server, the blocking runner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from sluice.mock import anthropic_routes, control, gemini_routes, openai_routes, tgi_routes
from sluice.mock.common import STATE
from sluice.mock.state import MockOptions, MockState


def create_app(options: MockOptions | None = None) -> web.Application:
    # Bodies up to 32 MB, like Anthropic's limit, so large-context benchmarks are not refused.
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE] = MockState(options or MockOptions())
    openai_routes.add_routes(app)
    anthropic_routes.add_routes(app)
    gemini_routes.add_routes(app)
    tgi_routes.add_routes(app)
    control.add_routes(app)
    return app


@dataclass
class MockServer:
    """A running emulator; ``url`` is the base without a trailing slash."""

    host: str
    port: int
    runner: web.AppRunner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def state(self) -> MockState:
        return self.runner.app[STATE]

    async def close(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> "MockServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_mock(host: str = "127.0.0.1", port: int = 0, options: MockOptions | None = None) -> MockServer:
    """Start the emulator in the running event loop; ``port=0`` picks a free port."""
    runner = web.AppRunner(create_app(options), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return MockServer(host=host, port=bound, runner=runner)


def run_mock(host: str = "127.0.0.1", port: int = 8090, options: MockOptions | None = None) -> None:
    """Serve until interrupted (the ``sluice mock`` command)."""
    try:
        import uvloop  # type: ignore[import-not-found]

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        loop = asyncio.new_event_loop()
    print(f"sluice mock listening on http://{host}:{port}", flush=True)
    web.run_app(create_app(options), host=host, port=port, access_log=None, print=None, loop=loop)
