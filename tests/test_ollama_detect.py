"""Embedded defaults find a local Ollama by asking its /api/tags, and ignore silence."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from sluice.server import detect_ollama


async def _tags_server() -> tuple[web.AppRunner, str]:
    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.2:latest"}, {"name": "qwen3:4b"}]})

    app = web.Application()
    app.router.add_get("/api/tags", tags)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_detects_models_of_a_local_ollama():
    runner, url = await _tags_server()
    try:
        models = await asyncio.to_thread(detect_ollama, url)
    finally:
        await runner.cleanup()
    assert models == ["llama3.2:latest", "qwen3:4b"]


def test_nothing_listening_means_no_ollama():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert detect_ollama(f"http://127.0.0.1:{port}") is None
