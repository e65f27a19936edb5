"""End-to-end fixtures: the provider emulator and a gateway in front of it, on ephemeral ports.

Clients are the official SDKs. Every provider kind is configured against the one emulator.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
import pytest_asyncio

from sluice.config import parse_config
from sluice.mock import start_mock
from sluice.server import start

MASTER_KEY = "sk-sluice-e2e-master-key"

# alias → (provider, upstream model)
CHAT_MODELS = {
    "gpt-mock": ("oai", "gpt-4o-mini"),
    "claude-mock": ("claude", "claude-sonnet-4-5"),
    "gemini-mock": ("gem", "gemini-2.5-flash"),
    "tgi-mock": ("tgi", "tgi"),
    "azure-mock": ("az", "my-gpt-deployment"),
}
TOOL_MODELS = ["gpt-mock", "claude-mock", "gemini-mock", "azure-mock"]  # TGI's native API has no tools


def gateway_config(mock_url: str, database_url: str, spill_path: str) -> dict:
    models = {alias: {"deployments": [{"provider": p, "model": m}]} for alias, (p, m) in CHAT_MODELS.items()}
    models.update({
        "emb-openai": {"deployments": [{"provider": "oai", "model": "text-embedding-3-small"}]},
        "emb-gemini": {"deployments": [{"provider": "gem", "model": "gemini-embedding-001"}]},
        # The weighted deployment always fails; the standby (weight 0) must answer in the same call.
        "flaky": {"deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+fail=500", "name": "broken-one"},
            {"provider": "claude", "model": "claude-sonnet-4-5", "weight": 0, "name": "standby"},
        ]},
        "rate-limited": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+fail=429+retry_after=7"}]},
        "anthropic-overloaded": {"deployments": [{"provider": "claude", "model": "claude-x+fail=529"}]},
        "gemini-bad-request": {"deployments": [{"provider": "gem", "model": "gemini-x+fail=400"}]},
        "cut-stream": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+cut=4+chunk_delay=30"}]},
        "cut-stream-claude": {"deployments": [{"provider": "claude", "model": "claude-x+cut=5+chunk_delay=30"}]},
        # Routing policies (issue 4).
        "retry-once": {"retries": 1, "backoff": {"base": 0.05},
                       "deployments": [{"provider": "oai", "model": "gpt-4o-mini+fail_first=1", "name": "flaky-once"}]},
        "retry-after-1s": {"retries": 1, "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+fail_first=1+retry_after=1", "name": "asks-to-wait"}]},
        "primary-down": {"fallbacks": ["gpt-mock"],
                         "deployments": [{"provider": "oai", "model": "gpt-4o-mini+fail=503", "name": "down"}]},
        "tiny-window": {"context_window_fallback": "claude-mock", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini", "name": "small", "context_window": 60}]},
        "by-priority": {"strategy": "priority", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini", "name": "second", "priority": 2},
            {"provider": "claude", "model": "claude-sonnet-4-5", "name": "first", "priority": 1}]},
        "rotating": {"strategy": "round_robin", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini", "name": "rr-a"},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "rr-b"}]},
        # Circuit breaking (issue 4): one deployment in a 429 storm, one healthy.
        "storm": {"deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+fail=429", "name": "storming",
             "circuit_breaker": {"failures": 3, "cooldown": 60, "retry_after": False}},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "calm"}]},
        "always-500": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+fail=500", "name": "dead",
                                        "circuit_breaker": {"failures": 3, "cooldown": 60}}]},
        # Hedging (issue 4): the primary is slow; a second attempt starts after 100 ms.
        "hedged": {"strategy": "priority", "hedge_after_ms": 100, "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+latency=800+chunk_delay=5", "name": "slowpoke", "priority": 1},
            {"provider": "oai", "model": "gpt-4o-mini", "name": "sprinter", "priority": 2}]},
        "tail": {"strategy": "priority", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+slow=400+slow_rate=0.1", "name": "tail-a", "priority": 1},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "tail-b", "priority": 2}]},
        "tail-hedged": {"strategy": "priority", "hedge_after_ms": 50, "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+slow=400+slow_rate=0.1", "name": "tail-a", "priority": 1},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "tail-b", "priority": 2}]},
        "fastest": {"strategy": "lowest_latency", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+latency=60", "name": "lagging"},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "quick"}]},
        "least-busy": {"strategy": "least_busy", "deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+latency=300", "name": "busy-a"},
            {"provider": "gem", "model": "gemini-2.5-flash+latency=300", "name": "busy-b"}]},
        # No token within 0.3 s (the stream stalls after its role chunk): the standby answers.
        "ttft-limited": {"deployments": [
            {"provider": "oai", "model": "gpt-4o-mini+stall=3000", "name": "stalls",
             "timeouts": {"first_token": 0.3}, "circuit_breaker": {"enabled": False}},
            {"provider": "gem", "model": "gemini-2.5-flash", "name": "backup", "weight": 0}]},
        "slow-start": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+latency=1000+chunk_delay=10"}]},
        "slow-stream": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+chunk_delay=300"}]},
        "stalled": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+stall=5000",
                                      "timeouts": {"idle": 0.5}}]},
    })
    # Fault-injection deployments answer every request with their fault: circuits off for them, so
    # each test sees the upstream's own error (test_circuits.py covers the breaker).
    for alias in ("rate-limited", "anthropic-overloaded", "gemini-bad-request", "flaky", "primary-down",
                  "retry-once", "retry-after-1s", "cut-stream", "cut-stream-claude", "stalled"):
        for dep in models[alias]["deployments"]:
            dep.setdefault("circuit_breaker", {"enabled": False})
    return {
        "routing": {
            "semantic": [{"alias": "auto", "default": "gemini-mock", "routes": [
                {"name": "code", "target": "gpt-mock", "examples": [
                    "fix this python function", "why does my javascript code throw an error",
                    "write a sql query that joins two tables", "how do I reverse a linked list in java",
                    "refactor this class to use dependency injection", "my regex does not match"]},
                {"name": "math", "target": "claude-mock", "examples": [
                    "what is the derivative of x squared", "solve 3x + 5 = 20", "integrate sin(x) from 0 to pi",
                    "what is 15 percent of 240", "prove that the square root of 2 is irrational",
                    "compute the determinant of this matrix"]},
            ]}],
            "rules": [
            {"name": "free-tier", "when": {"model": "gpt-mock", "tags": ["free"]}, "route_to": "gemini-mock"},
            {"name": "gold-header", "when": {"model": "gpt-mock", "headers": {"x-tier": "gold"}},
             "route_to": "claude-mock"},
            {"name": "long-prompts", "when": {"model": "gpt-mock", "prompt_tokens_gt": 2000},
             "route_to": "claude-mock"},
        ]},
        "server": {"master_key": MASTER_KEY, "access_log": False},
        "database": {"url": database_url},
        "ledger": {"flush_interval": 0.05, "spill_path": spill_path},
        "providers": {
            "oai": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "sk-upstream-openai"},
            "claude": {"kind": "anthropic", "base_url": mock_url, "api_key": "sk-ant-upstream"},
            "gem": {"kind": "gemini", "base_url": mock_url, "api_key": "gemini-upstream-key"},
            "tgi": {"kind": "tgi", "base_url": f"{mock_url}/tgi/tgi-model"},
            "az": {"kind": "azure", "base_url": mock_url, "api_key": "azure-upstream-key",
                   "api_version": "2024-10-21"},
        },
        "models": models,
    }


@pytest_asyncio.fixture(scope="session")
async def mock():
    server = await start_mock("127.0.0.1", 0)
    yield server
    await server.close()


@pytest_asyncio.fixture(scope="session")
async def gateway(mock, pg_url, tmp_path_factory):
    spill = str(tmp_path_factory.mktemp("ledger") / "spill.jsonl")
    running = await start(parse_config(gateway_config(mock.url, pg_url, spill)), "127.0.0.1", 0)
    yield running
    await running.stop()


@pytest.fixture
def oai(gateway, sdk) -> openai.AsyncOpenAI:
    return sdk.openai(f"{gateway.url}/v1", MASTER_KEY)


@pytest.fixture
def claude(gateway, sdk) -> anthropic.AsyncAnthropic:
    return sdk.anthropic(gateway.url, MASTER_KEY)


@pytest_asyncio.fixture
async def upstream_log(mock):
    """Clears the emulator's request log; returns a function reading what the upstream received."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        await s.delete(f"{mock.url}/_mock/requests")

    async def read(model: str | None = None) -> list[dict]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{mock.url}/_mock/requests", params={"model": model} if model else {}) as r:
                return (await r.json())["requests"]

    return read
