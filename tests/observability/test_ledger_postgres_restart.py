"""A PostgreSQL server of the test's own is stopped under load and started again: every row arrives once.

The forwarder test beside this one cuts the network; this one stops the real server (immediate
shutdown: clients see their connections die, then connection refused) and restarts it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from sluice.observability.ledger import Ledger
from sluice.store import migrate
from sluice.store.db import Database

from .test_ledger import Settings, assert_rollups_match, event, ledger_rows, rollup_totals

_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory, run as the postgres OS user when we are root."""

    def __init__(self, root: Path) -> None:
        self.bin = Path(_BIN[-1])
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = _free_port()
        self.log = root / "postgres.log"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout, done.stderr)

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_postgres():
    if not _BIN:
        pytest.skip("PostgreSQL server binaries are not installed")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    server = PrivatePostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # not running (stopped by the test, or never started)
        shutil.rmtree(root, ignore_errors=True)


async def test_postgres_restart_mid_load_loses_nothing(private_postgres, tmp_path):
    await migrate.upgrade(private_postgres.url)
    db = Database(private_postgres.url)
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(db, Settings(spill_path=str(spill), batch_size=40, flush_interval=0.02),
                    replay_interval=0.1, write_timeout=3)
    await ledger.start()
    sent = []
    stop = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop.is_set():
            e = event(i, "restart")
            sent.append(e)
            ledger.record(e)
            i += 1
            await asyncio.sleep(0.002)

    producer = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    await asyncio.to_thread(private_postgres.stop)  # the server dies under load
    await asyncio.sleep(1.0)
    assert ledger.spilled > 0
    await asyncio.to_thread(private_postgres.start)  # and comes back
    await asyncio.sleep(0.6)
    stop.set()
    await producer
    for _ in range(200):
        if spill.stat().st_size == 0 and ledger.pending == 0:
            break
        await asyncio.sleep(0.05)
    await ledger.close()
    await db.close()

    check = Database(private_postgres.url)
    try:
        rows = await ledger_rows(check, "restart")
        assert len(rows) == len(sent) and set(rows) == {e.request_id for e in sent}
        assert ledger.replayed > 0 and spill.stat().st_size == 0
        assert_rollups_match(await rollup_totals(check), sent)
    finally:
        await check.close()
