"""SIGTERM under load: every call that got an answer has its ledger row once the process has exited."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import yaml
from sqlalchemy import func, select

from sluice.store.db import Database
from sluice.store.models import UsageRecord


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_sigterm_under_load_loses_no_row(tmp_path, mock, pg_url):
    port = _free_port()
    config = {
        "server": {"port": port, "master_key": "sk-shutdown-test-master-key", "access_log": False},
        "database": {"url": pg_url},
        # A long flush interval: rows are still queued in memory when SIGTERM arrives.
        "ledger": {"flush_interval": 30, "batch_size": 100000, "spill_path": str(tmp_path / "spill.jsonl")},
        "providers": {"up": {"kind": "openai-compatible", "base_url": f"{mock.url}/v1", "api_key": "x"}},
        "models": {"shutdown-model": {"deployments": [{"provider": "up", "model": "m+latency=20"}]}},
    }
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "serve", "--config", str(path), cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    try:
        async with aiohttp.ClientSession(headers={"authorization": "Bearer sk-shutdown-test-master-key"}) as s:
            for _ in range(100):
                try:
                    async with s.get(f"{base}/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def call(i: int) -> None:
                rid = f"term-{i}"
                try:
                    async with s.post(f"{base}/v1/chat/completions", headers={"x-request-id": rid},
                                      json={"model": "shutdown-model",
                                            "messages": [{"role": "user", "content": f"m{i}"}]}) as r:
                        if r.status == 200:
                            await r.json()
                            answered.append(rid)
                except aiohttp.ClientError:
                    pass  # refused after shutdown began: no answer, so no promise of a row

            async def load() -> None:
                for wave in range(20):
                    await asyncio.gather(*(call(wave * 20 + j) for j in range(20)))

            loader = asyncio.ensure_future(load())
            await asyncio.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            await loader
        err = (await asyncio.wait_for(proc.communicate(), 30))[1].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert len(answered) >= 20, "the load did not get going before SIGTERM"
    db = Database(pg_url)
    try:
        async with db.session() as session:
            stored = set((await session.execute(
                select(UsageRecord.request_id).where(UsageRecord.request_id.like("term-%")))).scalars())
            total = (await session.execute(
                select(func.count()).select_from(UsageRecord).where(UsageRecord.request_id.like("term-%")))).scalar()
    finally:
        await db.close()
    assert set(answered) <= stored
    assert total == len(stored)
    assert not os.path.exists(tmp_path / "spill.jsonl") or os.path.getsize(tmp_path / "spill.jsonl") == 0
