"""Assembles and runs a gateway process: config → emulator (if needed) → gateway → uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import urllib.request
from collections import Counter
from dataclasses import dataclass

import orjson

from sluice.config import LOOPBACK_HOSTS, Config, ConfigError, embedded_defaults, load_config

log = logging.getLogger("sluice.server")

# Keys copied from docs and samples; refused even when long enough.
_KNOWN_WEAK = {"sk-1234", "changeme", "password", "master", "secret", "sk-master-key", "admin"}


def check_master_key(key: str | None, host: str) -> None:
    """Refuse to listen beyond loopback without a strong master key."""
    if host in LOOPBACK_HOSTS:
        return
    if not key:
        raise ConfigError(f"server.host: listening on {host} needs a master key (SLUICE_MASTER_KEY); "
                          "without one the gateway only listens on 127.0.0.1")
    if key.lower() in _KNOWN_WEAK or len(key) < 32 or _entropy_bits(key) < 128:
        raise ConfigError("server.master_key: too weak for a gateway reachable from the network; "
                          "use at least 32 random characters (e.g. `openssl rand -hex 32`)")


def _entropy_bits(key: str) -> float:
    counts = Counter(key)
    per_char = -sum(c / len(key) * math.log2(c / len(key)) for c in counts.values())
    return per_char * len(key)


def detect_ollama(url: str = "http://localhost:11434", timeout: float = 0.3) -> list[str] | None:
    """Model names of a local Ollama, or None when none answers."""
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=timeout) as resp:  # noqa: S310 - fixed local URL
            data = orjson.loads(resp.read())
    except (OSError, ValueError):
        return None
    return [m["name"] for m in data.get("models", []) if isinstance(m, dict) and m.get("name")]


def resolve_config(path: str | None) -> Config:
    if path:
        return load_config(path)
    import os

    env_path = os.environ.get("SLUICE_CONFIG")
    if env_path:
        return load_config(env_path)
    config = embedded_defaults(ollama_models=None)
    if config.server.detect_ollama:
        models = detect_ollama()
        if models is not None:
            config = embedded_defaults(ollama_models=models)
    return config


@dataclass
class Running:
    url: str
    server: object
    task: asyncio.Task
    emulator: object | None
    runtime: object | None = None

    async def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.emulator is not None:
            await self.emulator.close()  # type: ignore[attr-defined]


async def start(config: Config, host: str | None = None, port: int | None = None) -> Running:
    """Start a gateway in the running loop (used by ``serve`` and by tests that need real servers)."""
    import uvicorn

    from sluice.api.app import create_app
    from sluice.gateway import Gateway
    from sluice.runtime import Runtime

    host = host or config.server.host
    port = config.server.port if port is None else port
    check_master_key(config.server.master_key, host)
    emulator = None
    urls: dict[str, str] = {}
    emulated = [name for name, p in config.providers.items() if p.kind == "emulator"]
    if emulated:
        from sluice.mock import start_mock

        emulator = await start_mock("127.0.0.1", 0)
        urls = {name: emulator.url + "/v1" for name in emulated}
    runtime = await Runtime.open(config)
    gateway = Gateway.from_config(config, urls, auth=runtime.auth,
                                  record=runtime.ledger.record if runtime.ledger else None,
                                  circuit_store=runtime.circuit_store, limits=runtime.limits,
                                  price=runtime.price)
    gateway.cache = runtime.cache
    if runtime.semantic_index is not None:
        from sluice.gateway import shared_local_embedder
        from sluice.policies.cache import SemanticCache

        embedder = config.cache.semantic.embedder
        embed = shared_local_embedder().embed if embedder == "local" else gateway.embedding_function(embedder)
        gateway.semantic_cache = SemanticCache(runtime.semantic_index, embed)
    await gateway.start(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await gateway.close()
        await runtime.close()  # flushes the ledger: uvicorn runs this on SIGTERM too

    app = create_app(gateway, max_body_bytes=config.server.max_body_bytes, access_log=config.server.access_log,
                     lifespan=lifespan, runtime=runtime)
    uv_config = uvicorn.Config(app, host=host, port=port, loop="none", http="httptools", lifespan="on",
                               log_config=None, access_log=False, server_header=False, date_header=False,
                               proxy_headers=False,  # client addresses are logged as seen; no header rewriting
                               timeout_graceful_shutdown=10)
    server = uvicorn.Server(uv_config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            await gateway.close()
            await runtime.close()
            task.result()  # raises the start-up error (e.g. port in use)
            raise RuntimeError("gateway stopped during start-up")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    tune_gc()
    return Running(url=f"http://{_url_host(host)}:{bound}", server=server, task=task, emulator=emulator,
                   runtime=runtime)


def tune_gc() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less often.

    A gateway allocates many short-lived objects per request; with CPython's default thresholds
    the cyclic collector runs every few requests and its older-generation passes walk every
    long-lived object (config, pools, caches), which showed as tens of milliseconds of p99.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
