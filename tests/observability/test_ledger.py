"""The usage ledger on a real SQLite file and the run's PostgreSQL: batching, idempotency, roll-ups,
spill and replay when the database goes away, flush on shutdown, and the usage queries."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine.url import make_url

from sluice.observability.ledger import Ledger, SpillFile, UsageEvent
from sluice.observability.pricing import price_call
from sluice.store import migrate
from sluice.store.db import Database
from sluice.store.models import AuditEntry, UsageDaily, UsageRecord
from sluice.store.usage import query_usage, write_usage

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Settings:  # the shape of sluice.config.LedgerConfig
    spill_path: str
    batch_size: int = 100
    flush_interval: float = 0.02
    queue_size: int = 100_000


async def _create_pg_database(pg_url: str) -> str:
    import asyncpg

    name = f"sluice_ledger_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_pg_database(pg_url: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path, pg_url):
    """A migrated, empty database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/sluice.db"
        await migrate.upgrade(url)
        yield url
        return
    name = await _create_pg_database(pg_url)
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    await migrate.upgrade(url)
    yield url
    await _drop_pg_database(pg_url, name)


@pytest.fixture
async def pg_db_url(pg_url):
    name = await _create_pg_database(pg_url)
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    await migrate.upgrade(url)
    yield url
    await _drop_pg_database(pg_url, name)


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    yield database
    await database.close()


def event(i: int, prefix: str = "req", **kw) -> UsageEvent:
    """A call with tokens that differ per i; every 7th failed, a few on yesterday's date."""
    fields = dict(
        request_id=f"{prefix}-{i:06d}", ts=NOW - timedelta(days=1 if i % 10 == 0 else 0, seconds=i % 50),
        dialect="openai", endpoint="chat", model="fast" if i % 2 else "smart", status=500 if i % 7 == 0 else 200,
        key_id=f"key_{i % 3}", team_id=f"team_{i % 2}", user_id=f"user_{i % 4}",
        tags=["a", "b"] if i % 5 == 0 else (["a"] if i % 3 == 0 else []),
        provider="openai", deployment="openai/gpt-4o-mini", upstream_model="gpt-4o-mini-2024-07-18",
        input_tokens=100 + i, output_tokens=10 + i % 17, cached_tokens=(i % 4) * 10,
    )
    fields.update(kw)
    return UsageEvent(**fields)


def expected_cost(e: UsageEvent) -> float:
    return price_call(e.upstream_model, e.input_tokens, e.output_tokens, e.cached_tokens)[0]


async def ledger_rows(db: Database, prefix: str = "") -> dict[str, UsageRecord]:
    async with db.session() as s:
        rows = (await s.execute(select(UsageRecord).where(UsageRecord.request_id.like(f"{prefix}%")))).scalars()
        return {r.request_id: r for r in rows}


async def rollup_totals(db: Database) -> tuple[int, int, int, int, int, float]:
    d = UsageDaily
    async with db.session() as s:
        row = (await s.execute(select(func.sum(d.requests), func.sum(d.errors), func.sum(d.input_tokens),
                                      func.sum(d.output_tokens), func.sum(d.cached_tokens),
                                      func.sum(d.cost_usd)))).one()
    return tuple(0 if v is None else v for v in row)  # type: ignore[return-value]


def assert_rollups_match(totals, events: list[UsageEvent]) -> None:
    requests, errors, tokens_in, tokens_out, cached, cost = totals
    assert requests == len(events)
    assert errors == sum(1 for e in events if e.status >= 400)
    assert tokens_in == sum(e.input_tokens for e in events)
    assert tokens_out == sum(e.output_tokens for e in events)
    assert cached == sum(e.cached_tokens for e in events)
    assert math.isclose(cost, sum(expected_cost(e) for e in events), rel_tol=1e-9)


async def test_concurrent_calls_make_exactly_n_rows(db, tmp_path):
    n = 3000
    ledger = Ledger(db, Settings(spill_path=str(tmp_path / "spill.jsonl"), batch_size=500))
    await ledger.start()
    events = [event(i) for i in range(n)]

    async def client(chunk: list[UsageEvent]) -> None:
        for e in chunk:
            ledger.record(e)
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(client(events[k::40]) for k in range(40)))
    await ledger.close()
    elapsed = time.perf_counter() - started
    print(f"\nledger on {db.engine.dialect.name}: {n} rows in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s")

    rows = await ledger_rows(db)
    assert len(rows) == n and ledger.written == n and ledger.spilled == 0
    for e in events[::97]:
        row = rows[e.request_id]
        assert (row.input_tokens, row.output_tokens, row.cached_tokens, row.status) == \
            (e.input_tokens, e.output_tokens, e.cached_tokens, e.status)
        assert math.isclose(row.cost_usd, expected_cost(e), rel_tol=1e-12) and not row.cost_unknown
        assert row.tags == e.tags
    assert_rollups_match(await rollup_totals(db), events)


async def test_duplicate_request_ids_count_once(db, tmp_path):
    events = [event(i, "dup") for i in range(50)]
    ledger = Ledger(db, Settings(spill_path=str(tmp_path / "spill.jsonl"), batch_size=20))
    await ledger.start()
    for e in events + events[:30]:  # the same ids again, in later batches
        ledger.record(e)
    await ledger.close()
    async with db.transaction() as s:  # and a whole replayed batch
        assert await write_usage(s, events) == 0
    extra = event(999, "dup", cost_usd=expected_cost(event(999)))  # write_usage stores, it does not price
    async with db.transaction() as s:  # duplicates inside one batch, one new row
        assert await write_usage(s, [events[0], events[0], extra]) == 1
    rows = await ledger_rows(db, "dup")
    assert len(rows) == 51
    assert_rollups_match(await rollup_totals(db), events + [extra])


async def test_rows_are_stored_in_utc_with_long_values_clipped(db):
    """Times in any zone (or naive, taken as UTC) are stored as the same instant in UTC; an id
    or name longer than its column is clipped rather than failing the batch on PostgreSQL."""
    plus_two = timezone(timedelta(hours=2))
    naive = event(1, "tz", ts=NOW.replace(tzinfo=None))
    zoned = event(2, "tz", ts=NOW.astimezone(plus_two), model="m" * 250, end_user="u" * 400,
                  tags=("x", "y"))
    async with db.transaction() as s:
        assert await write_usage(s, [naive, zoned]) == 2
    rows = await ledger_rows(db, "tz")
    for row in rows.values():
        stored = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=timezone.utc)
        assert stored == NOW
    long_row = rows[zoned.request_id]
    assert long_row.model == "m" * 200 and long_row.end_user == "u" * 300 and long_row.tags == ["x", "y"]


async def test_the_ledger_writer_stores_rows_rollups_and_guardrail_audits_once(db, tmp_path):
    """Through the Ledger (SQLite: its own writer thread; PostgreSQL: the engine), twice over."""
    events = [event(i, "audited") for i in range(30)]
    events[3].guardrails = "pii=redact"
    events[4].guardrails = "injection=block"
    events[5].guardrails = "pii=allow"
    for _ in range(2):  # a replayed batch changes nothing
        ledger = Ledger(db, Settings(spill_path=str(tmp_path / "spill.jsonl"), batch_size=7))
        await ledger.start()
        for e in events:
            ledger.record(e)
        await ledger.close()
        assert ledger.spilled == 0
    rows = await ledger_rows(db, "audited")
    assert len(rows) == 30 and rows[events[3].request_id].guardrails == "pii=redact"
    assert_rollups_match(await rollup_totals(db), events)
    async with db.session() as s:
        audits = (await s.execute(select(AuditEntry).order_by(AuditEntry.request_id))).scalars().all()
    assert [(a.request_id, a.action) for a in audits] == [
        (events[3].request_id, "guardrail.redact"), (events[4].request_id, "guardrail.block")]
    assert audits[0].after["verdicts"] == "pii=redact" and audits[0].actor == "key:key_0"
    stored = audits[0].ts if audits[0].ts.tzinfo else audits[0].ts.replace(tzinfo=timezone.utc)
    assert stored == events[3].ts


async def test_close_flushes_a_full_queue(db, tmp_path):
    # SIGTERM-style: the queue is full and the writer has not had a turn yet; close() writes it all.
    n = 2000
    ledger = Ledger(db, Settings(spill_path=str(tmp_path / "spill.jsonl"), batch_size=250,
                                 flush_interval=30, queue_size=n))
    await ledger.start()
    events = [event(i, "term") for i in range(n)]
    for e in events:
        ledger.record(e)
    assert ledger.pending == n
    await ledger.close()
    assert len(await ledger_rows(db, "term")) == n
    assert ledger.spilled == 0 and ledger.pending == 0
    ledger.record(event(n, "term"))  # after close: spilled, not dropped
    assert ledger.spilled == 1


async def test_full_queue_spills_instead_of_blocking(db, tmp_path):
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(db, Settings(spill_path=str(spill), batch_size=5, queue_size=10), replay_interval=0.05)
    events = [event(i, "full") for i in range(25)]
    started = time.perf_counter()
    for e in events:  # writer not started: nothing drains the queue
        ledger.record(e)
    assert time.perf_counter() - started < 0.5
    assert ledger.pending == 10 and ledger.spilled == 15
    assert [e.request_id for e in SpillFile(spill).read(0, 100)[0]] == [e.request_id for e in events[10:]]
    await ledger.start()
    for _ in range(100):
        if ledger.replayed == 15:
            break
        await asyncio.sleep(0.05)
    await ledger.close()
    assert len(await ledger_rows(db, "full")) == 25
    assert ledger.replayed == 15 and spill.stat().st_size == 0
    assert_rollups_match(await rollup_totals(db), events)


async def test_spill_replays_after_restart(db_url, tmp_path):
    # The database is unreachable for this instance (a port nothing listens on): everything spills;
    # a later instance with a working database replays the file, once.
    spill = tmp_path / "spill.jsonl"
    if db_url.startswith("sqlite"):
        dead_url = f"sqlite:///{tmp_path}/missing-dir/x/y.db"
    else:
        dead_url = make_url(db_url).set(port=1).render_as_string(hide_password=False)
    dead = Database(dead_url)
    events = [event(i, "restart") for i in range(120)]
    ledger = Ledger(dead, Settings(spill_path=str(spill), batch_size=50), replay_interval=0.05, write_timeout=2)
    await ledger.start()
    for e in events:
        ledger.record(e)
    await ledger.close()
    await dead.close()
    assert ledger.written == 0 and ledger.spilled == 120
    spilled = SpillFile(spill).read(0, 1000)[0]
    assert [e.request_id for e in spilled] == [e.request_id for e in events]
    assert all(e.cost_usd > 0 for e in spilled)  # priced before spilling
    db = Database(db_url)
    try:
        for _ in range(2):  # two instances replaying the same file: still one row per call
            again = Ledger(db, Settings(spill_path=str(spill)), replay_interval=0.05)
            await again.start()
            await again.replay()
            await again.close()
        assert len(await ledger_rows(db, "restart")) == 120 and spill.stat().st_size == 0
        assert_rollups_match(await rollup_totals(db), events)
    finally:
        await db.close()


class Forwarder:
    """A TCP forwarder in front of PostgreSQL that the test can pull the plug on."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # existing connections die too, as when the server goes away
        self._writers.clear()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


async def test_database_down_mid_load_loses_nothing(pg_db_url, tmp_path):
    url = make_url(pg_db_url)
    forwarder = Forwarder(url.host or "127.0.0.1", url.port or 5432)
    await forwarder.start()
    via_forwarder = Database(url.set(port=forwarder.port).render_as_string(hide_password=False))
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(via_forwarder, Settings(spill_path=str(spill), batch_size=40, flush_interval=0.02),
                    replay_interval=0.1, write_timeout=3)
    await ledger.start()
    sent: list[UsageEvent] = []
    stop = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop.is_set():
            e = event(i, "down")
            sent.append(e)
            ledger.record(e)
            i += 1
            await asyncio.sleep(0.002)

    producer = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    await forwarder.stop()  # PostgreSQL "goes away" under load
    await asyncio.sleep(1.0)
    assert ledger.spilled > 0
    in_spill = [e.request_id for e in SpillFile(spill).read(0, 100_000)[0]]
    await forwarder.start()  # and comes back on the same address
    await asyncio.sleep(0.6)
    stop.set()
    await producer
    for _ in range(100):
        if spill.stat().st_size == 0 and ledger.pending == 0:
            break
        await asyncio.sleep(0.05)
    await ledger.close()
    await via_forwarder.close()
    await forwarder.stop()

    direct = Database(pg_db_url)
    try:
        rows = await ledger_rows(direct, "down")
        assert len(rows) == len(sent) and set(rows) == {e.request_id for e in sent}
        assert ledger.replayed >= len(in_spill) > 0 and spill.stat().st_size == 0
        assert_rollups_match(await rollup_totals(direct), sent)
        # Replayed in the spill file's order: by committing transaction, then position in it.
        async with direct.session() as s:
            order = (await s.execute(text(
                "SELECT request_id FROM usage WHERE request_id = ANY(:ids) "
                "ORDER BY xmin::text::bigint, ctid"), {"ids": in_spill})).scalars().all()
        assert order == in_spill
    finally:
        await direct.close()


async def test_a_row_the_database_refuses_does_not_stall_the_ledger(pg_db_url, tmp_path):
    db = Database(pg_db_url)
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(db, Settings(spill_path=str(spill), batch_size=10), replay_interval=0.05)
    await ledger.start()
    events = [event(i, "poison") for i in range(10)]
    events[4].input_tokens = 3_000_000_000  # does not fit PostgreSQL's integer column
    for e in events:
        ledger.record(e)
    for _ in range(100):
        if ledger.rejected and spill.stat().st_size == 0:
            break
        await asyncio.sleep(0.05)
    ledger.record(event(10, "poison"))  # the ledger is back to writing directly
    for _ in range(100):
        if ledger.written:
            break
        await asyncio.sleep(0.02)
    assert ledger.written == 1 and ledger.spilled == 10
    await ledger.close()
    try:
        rows = await ledger_rows(db, "poison")
        assert len(rows) == 10 and events[4].request_id not in rows
        assert ledger.rejected == 1 and events[4].request_id in spill.with_name("spill.jsonl.rejected").read_text()
    finally:
        await db.close()


async def test_query_usage_groups_and_totals(db):
    events = [event(i, "q") for i in range(200)]
    async with db.transaction() as s:
        for e in events:
            e.cost_usd, e.cost_unknown = price_call(e.upstream_model, e.input_tokens, e.output_tokens,
                                                    e.cached_tokens)
        assert await write_usage(s, events) == 200
    start, end = NOW - timedelta(days=3), NOW + timedelta(seconds=1)
    async with db.session() as s:
        by_model, totals = await query_usage(s, group_by="model", start=start, end=end)
        by_team, _ = await query_usage(s, group_by="team", start=start, end=end)
        by_tag, tag_totals = await query_usage(s, group_by="tag", start=start, end=end)
        by_day, _ = await query_usage(s, group_by="day", start=start, end=end)
        team0, team0_totals = await query_usage(s, group_by="key", start=start, end=end, team_id="team_0")
        today, today_totals = await query_usage(s, group_by="user", start=NOW - timedelta(hours=1), end=end)
        with pytest.raises(ValueError):
            await query_usage(s, group_by="planet", start=start, end=end)

    assert totals["requests"] == 200 and totals["errors"] == sum(1 for e in events if e.status >= 400)
    assert totals["input_tokens"] == sum(e.input_tokens for e in events)
    assert math.isclose(totals["cost_usd"], sum(e.cost_usd for e in events), rel_tol=1e-9)
    assert tag_totals == totals  # calls with two tags are counted once in the totals
    for grouped in (by_model, by_team, by_day):
        assert sum(r["requests"] for r in grouped) == 200
        assert sum(r["output_tokens"] for r in grouped) == totals["output_tokens"]
    assert {r["group"] for r in by_model} == {"fast", "smart"}
    assert by_model[0]["cost_usd"] >= by_model[1]["cost_usd"]
    tags = {r["group"]: r["requests"] for r in by_tag}
    assert tags == {"a": sum(1 for e in events if "a" in e.tags), "b": sum(1 for e in events if "b" in e.tags),
                    None: sum(1 for e in events if not e.tags)}
    days = {r["group"]: r["requests"] for r in by_day}
    assert days == {(NOW - timedelta(days=1)).date().isoformat(): 20, NOW.date().isoformat(): 180}
    assert team0_totals["requests"] == 100 and {r["group"] for r in team0} == {"key_0", "key_1", "key_2"}
    assert today_totals["requests"] == 180 and sum(r["requests"] for r in today) == 180


async def test_a_key_budget_spends_from_every_key_of_its_rotation_chain(db):
    """spent_usd for a key budget counts the key and the keys rotated from it (its lineage), so a
    budget seeded after a rotation starts from what the whole chain spent; other keys stay apart."""
    from sluice.store.models import ApiKey
    from sluice.store.usage import spent_usd

    async with db.session() as s:
        s.add_all([ApiKey(id="key_first", key_hash="h1", key_prefix="sk-"),
                   ApiKey(id="key_second", key_hash="h2", key_prefix="sk-", rotated_from="key_first",
                          lineage="key_first"),
                   ApiKey(id="key_other", key_hash="h3", key_prefix="sk-")])
        costs = {"key_first": 1.5, "key_second": 0.25, "key_other": 4.0}
        await write_usage(s, [event(i, f"lin-{key}", key_id=key, cost_usd=cost, ts=NOW)
                              for i, (key, cost) in enumerate(costs.items())])
        await s.commit()
    async with db.session() as s:
        assert await spent_usd(s, "key", "key_first", NOW - timedelta(hours=1)) == pytest.approx(1.75)
        assert await spent_usd(s, "key", "key_second", NOW - timedelta(hours=1)) == pytest.approx(0.25)
        assert await spent_usd(s, "key", "key_other", None) == pytest.approx(4.0)
