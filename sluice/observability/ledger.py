"""The usage ledger: one event per call, written in batches off the request path.

``Ledger.record()`` is synchronous and cheap: it appends to an in-memory queue (or, when the
queue is full, straight to the spill file) and never raises. A writer task takes up to
``batch_size`` events or whatever arrived within ``flush_interval``, prices them and writes them
with ``store.usage.write_usage`` in one transaction.

Nothing is lost when the database goes away: a batch that cannot be written is appended to the
spill file (JSON lines, append-only, fsync'd) and the writer keeps going — spilling directly,
without waiting on a dead database, until the replay loop has drained the file. The replay loop
(at start, then every ``replay_interval`` seconds) writes the file back in order, a batch at a
time, and truncates it only once every line in it is committed. Rows are idempotent by
request_id, so replaying a batch that was in fact committed (a lost acknowledgement, a crash
between commit and truncation) never counts it twice.

A spilled batch the database refuses for a reason other than being unreachable (a value it
cannot store) is written row by row; rows it still refuses go to ``<spill>.rejected`` with an
error log, so one bad row cannot stall the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

import msgspec
from sqlalchemy import text

from sluice.observability.pricing import make_pricer
from sluice.store.db import Database
from sluice.store.usage import write_usage
from sluice.store.usage_sqlite import SqliteUsageWriter, sqlite_file

log = logging.getLogger("sluice.ledger")


class UsageEvent(msgspec.Struct, kw_only=True):
    """What the gateway knows about one finished call (success, failure, block or cache hit)."""

    request_id: str
    ts: datetime  # UTC, when the call started
    dialect: str  # "openai" | "anthropic"
    endpoint: str  # "chat" | "embeddings"
    model: str  # alias the client asked for
    status: int  # HTTP status the client got; 499 when the client went away mid-stream
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    end_user: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    provider: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error_type: str | None = None  # GatewayError.kind
    attempts: int = 1
    fallback: bool = False
    route: str | None = None  # rule / semantic route / hedged / fallback alias, when any applied
    cache_hit: bool = False  # answered from the response cache
    cost_saved_usd: float = 0.0  # for a cache hit: what the answer cost when it was produced
    guardrails: str | None = None  # guardrail verdicts, when a policy applied
    # Filled by the ledger from the price table (or the deployment's override) before writing.
    cost_usd: float = 0.0
    cost_unknown: bool = False


Pricer = Callable[[UsageEvent], tuple[float, bool]]


class LedgerSettings(Protocol):
    """The shape of ``sluice.config.LedgerConfig`` (observability may not import config)."""

    batch_size: int
    flush_interval: float
    queue_size: int
    spill_path: str


def _brief(exc: BaseException) -> str:
    # The first line only: SQLAlchemy appends the SQL and its parameters (ledger data) below it.
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageEvent)


class SpillFile:
    """An append-only JSON-lines file of events the database could not take yet.

    All access happens on the event loop thread, so appends, reads and the final truncation
    never interleave mid-operation.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self._fh: Any = None
        self._dirty = False

    def _handle(self) -> Any:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open on purpose
            self._repair_tail()
        return self._fh

    def _repair_tail(self) -> None:
        # A crash mid-write leaves a partial last line; end it so the next append starts clean.
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._fh.write(b"\n")

    def append(self, events: list[UsageEvent], *, sync: bool) -> None:
        self._handle().write(b"".join(_encoder.encode(e) + b"\n" for e in events))
        self._dirty = True
        if sync:
            self.sync()

    def sync(self) -> None:
        if self._fh is not None and self._dirty:
            os.fsync(self._fh.fileno())
            self._dirty = False

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int, limit: int) -> tuple[list[UsageEvent], int]:
        """Up to ``limit`` complete lines from ``offset``: (events, offset after them)."""
        if offset >= self.size():
            return [], offset
        self._handle()  # repairs a partial tail before we read
        events: list[UsageEvent] = []
        with open(self.path, "rb") as f:
            f.seek(offset)
            while len(events) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                if line.strip():
                    self._decode(line, events)
        return events, offset

    def _decode(self, line: bytes, into: list[UsageEvent]) -> None:
        try:
            into.append(_decoder.decode(line))
        except msgspec.DecodeError:
            log.error("ledger spill file has an unreadable line; moved to %s", self.rejected_path)
            self.reject_lines([line])

    def reject_lines(self, lines: list[bytes]) -> None:
        with open(self.rejected_path, "ab") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())

    def truncate(self) -> None:
        self._handle()
        os.truncate(self.path, 0)
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None


class Ledger:
    """Batches usage events into the database; spills to a file when it cannot."""

    def __init__(self, db: Database, config: LedgerSettings, price: Pricer | None = None, *,
                 replay_interval: float = 5.0, write_timeout: float = 15.0, close_timeout: float = 10.0) -> None:
        self.db = db
        self.batch_size = config.batch_size
        self.flush_interval = config.flush_interval
        self.queue_size = config.queue_size
        self.replay_interval = replay_interval
        self.write_timeout = write_timeout
        self.close_timeout = close_timeout
        self.spill = SpillFile(config.spill_path)
        self._price = price or make_pricer()
        # An SQLite file gets a writer thread of its own; PostgreSQL goes through the engine.
        path = sqlite_file(db.url) if db.is_sqlite else None
        self._sqlite = SqliteUsageWriter(path) if path else None
        self._queue: deque[UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._replay_lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._inflight: list[UsageEvent] = []
        self._replay_offset = 0
        self._db_down = False
        self._closing = False
        self._closed = False
        self._last_spill_log = 0.0
        # Plain counters until the metrics module exists.
        self.written = 0  # events committed by the writer
        self.spilled = 0  # events appended to the spill file
        self.replayed = 0  # events committed from the spill file
        self.rejected = 0  # events the database refused even one by one

    # -- request path ---------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Queue one event. Never blocks on the database and never raises."""
        try:
            if self._closed or len(self._queue) >= self.queue_size:
                # fsync is left to the writer's next turn: the request path only pays a write().
                self._spill([event], "ledger queue full" if not self._closed else "ledger closed", sync=False)
                return
            self._queue.append(event)
            if len(self._queue) >= self.batch_size:
                self._wake.set()
        except Exception:  # pragma: no cover - the request must go on whatever happens here
            log.exception("ledger could not record event %s", getattr(event, "request_id", "?"))

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="sluice-ledger-writer")
        if self._replayer is None:
            self._replayer = asyncio.create_task(self._replay_loop(), name="sluice-ledger-replay")

    async def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then what is left in the spill file, within ``timeout``.

        What cannot be written in time stays in (or goes to) the spill file for the next start.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.close_timeout if timeout is None else timeout)
        self._closing = True
        self._wake.set()
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="sluice-ledger-writer")
        done, _ = await asyncio.wait({self._writer}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            leftover = self._inflight + list(self._queue)
            self._queue.clear()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            # The in-flight batch may have committed too; replay is idempotent, so spill it anyway.
            self._spill(leftover, "ledger shutdown timeout", sync=True)
        self._closed = True
        if self._queue:
            self._spill(list(self._queue), "ledger closed", sync=True)
            self._queue.clear()
        if self.spill.size() and deadline > loop.time():
            # A last replay, so a clean shutdown after an outage leaves no file behind.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.replay(), deadline - loop.time())
        self.spill.close()
        if self._sqlite is not None:
            await self._sqlite.close()

    # -- writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            if len(self._queue) < self.batch_size and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self.spill.sync()  # durability for events the request path spilled without fsync
            if not self._queue:
                if self._closing:
                    return
                continue
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            await self._flush(batch)

    async def _flush(self, batch: list[UsageEvent]) -> None:
        self._price_batch(batch)
        if self._db_down:
            self._spill(batch, "database unavailable", sync=True)
            return
        self._inflight = batch
        try:
            await asyncio.wait_for(self._write(batch), self.write_timeout)
            self.written += len(batch)
        except Exception as exc:  # noqa: BLE001 - any failure: keep the rows, keep going
            self._db_down = True
            self._spill(batch, f"database write failed: {_brief(exc)}", sync=True)
        finally:
            self._inflight = []

    async def _write(self, batch: list[UsageEvent]) -> int:
        self._price_batch(batch)
        if self._sqlite is not None:
            return await self._sqlite.write(batch)
        async with self.db.transaction() as session:
            return await write_usage(session, batch)

    def _price_batch(self, batch: list[UsageEvent]) -> None:
        for event in batch:
            if event.cost_usd or event.cost_unknown:
                continue  # already priced (by the gateway, or before it was spilled)
            try:
                event.cost_usd, event.cost_unknown = self._price(event)
            except Exception:  # noqa: BLE001 - an unpriced row beats a lost row
                log.exception("ledger could not price %s", event.request_id)
                event.cost_unknown = True

    def _spill(self, events: list[UsageEvent], reason: str, *, sync: bool) -> None:
        if not events:
            return
        try:
            self.spill.append(events, sync=sync)
        except OSError:
            log.exception("ledger LOST %d events: spill file %s not writable", len(events), self.spill.path)
            return
        self.spilled += len(events)
        now = time.monotonic()
        if now - self._last_spill_log >= 10.0:
            self._last_spill_log = now
            log.warning("ledger spilled %d events to %s (%s); %d spilled so far",
                        len(events), self.spill.path, reason, self.spilled)

    # -- replay --------------------------------------------------------------------------

    async def _replay_loop(self) -> None:
        while True:
            try:
                await self.replay()
            except Exception:  # noqa: BLE001 - the loop must survive anything and try again
                log.exception("ledger replay failed")
            await asyncio.sleep(self.replay_interval)

    async def replay(self) -> int:
        """Write the spill file back to the database in order; returns events committed."""
        async with self._replay_lock:
            total = 0
            while True:
                events, end = self.spill.read(self._replay_offset, self.batch_size)
                if end == self._replay_offset:
                    break  # no complete line left to read
                if events and not await self._replay_batch(events):
                    if total:
                        log.info("ledger replayed %d events before the database failed again", total)
                    return total
                self._replay_offset = end
                total += len(events)
                self.replayed += len(events)
            # No await since the last read, so nothing was appended in between: every line in
            # the file is committed (or rejected) and it can go.
            if self._replay_offset and self._replay_offset >= self.spill.size():
                self.spill.truncate()
                self._replay_offset = 0
            if total:
                log.info("ledger replayed %d events from %s; database is back", total, self.spill.path)
            self._db_down = False
            return total

    async def _replay_batch(self, events: list[UsageEvent]) -> bool:
        try:
            await asyncio.wait_for(self._write(events), self.write_timeout)
            return True
        except Exception:  # noqa: BLE001
            if not await self._reachable():
                return False
        return await self._write_one_by_one(events)

    async def _write_one_by_one(self, events: list[UsageEvent]) -> bool:
        for event in events:
            try:
                await asyncio.wait_for(self._write([event]), self.write_timeout)
            except Exception as exc:  # noqa: BLE001
                if not await self._reachable():
                    return False
                log.error("ledger row %s refused by the database (%s); kept in %s",
                          event.request_id, type(exc).__name__, self.spill.rejected_path)
                self.spill.reject_lines([_encoder.encode(event) + b"\n"])
                self.rejected += 1
        return True

    async def _reachable(self) -> bool:
        try:
            async def probe() -> None:
                async with self.db.session() as session:
                    await session.execute(text("SELECT 1"))

            await asyncio.wait_for(probe(), self.write_timeout)
            return True
        except Exception:  # noqa: BLE001
            return False


__all__ = ["Ledger", "LedgerSettings", "Pricer", "SpillFile", "UsageEvent"]
