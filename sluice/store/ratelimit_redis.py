"""Exact limits shared by every gateway instance through Redis: one Lua script, one round trip.

Implements the ``Limiter`` protocol of ``sluice.policies.ratelimit`` structurally (this layer may
not import policies); the semantics — sliding log for ``window > 0``, leased concurrency gauge
for ``window == 0``, all-or-nothing across checks — are documented there and are the same as
``LocalLimiter``'s.

Layout. Each check key ``k`` is two Redis keys:

    {<tag>}:l:<k>   sorted set: member ``<reservation id>:<check index>:<amount>``,
                    score = the entry's expiry (charge time + window, or + lease for a gauge)
    {<tag>}:n:<k>   the sum of the live members' amounts, so a check costs O(log n), not O(n)

The amount lives in the member, so expiring an entry needs no second lookup. ``<tag>`` defaults
to ``<prefix>:rl``: the braces are a Redis Cluster hash tag, so every key of every reservation
hashes to one slot and a reservation spanning a key, its team and a model stays one atomic
script. The price is that all limiter traffic lands on one shard. A script is O(log n) per
check, and its cost is mostly its ``redis.call``s (a few microseconds each), so the script makes
as few as it can: a reservation of two window checks makes 11 to 13, a settlement 4 per changed
entry. On the slow 2-core VM of ``docs/benchmarks.md`` one Redis core ran ~15,000 such
reservations per second, the ceiling of the whole fleet's limited calls. A deployment that
outgrows it can pass a tag per tenant (all checks of one reservation must then share that
tenant).

Time. With ``now=None`` the script reads the Redis server's clock (``TIME``), so instances with
skewed clocks still agree on every window; an explicit ``now`` (tests, replays) is used as is.
Each write refreshes the TTL of both keys to the longest life an entry can have, so idle keys
vanish by themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

from sluice.store.resp import PipelinedRedis, RedisReplyError, bulk, encode_command

log = logging.getLogger("sluice.limits")

_SCRIPT = """
local function amount_of(member) return tonumber(string.match(member, ':(%d+)$')) end
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

-- Every redis.call costs Redis a few microseconds, and every instance's calls queue on this one
-- script: the reserve and adjust paths below make as few as they can.

-- adjust: per key pair, ARGV = 'adjust', then (old member, new member or '', delta). An adjusted
-- entry keeps its expiry, which the keys' TTLs set when it was charged already outlast: no TTL
-- is touched.
if ARGV[1] == 'adjust' then
  for i = 1, #KEYS / 2 do
    local b = 1 + 3 * (i - 1)
    if string.sub(ARGV[b + 1], 1, 2) == 'c:' then  -- a period counter: no entries, just the total
      if redis.call('EXISTS', KEYS[2 * i]) == 1 then redis.call('INCRBY', KEYS[2 * i], ARGV[b + 3]) end
    else
    local score = redis.call('ZSCORE', KEYS[2 * i - 1], ARGV[b + 1])
    if score then  -- an entry already expired no longer counts: nothing to adjust
      -- the new entry goes in before the old comes out: a log left empty would be deleted, and
      -- made again without its TTL
      if ARGV[b + 2] ~= '' then redis.call('ZADD', KEYS[2 * i - 1], score, ARGV[b + 2]) end
      redis.call('ZREM', KEYS[2 * i - 1], ARGV[b + 1])
      redis.call('INCRBY', KEYS[2 * i], ARGV[b + 3])
    end
    end
  end
  return 1
end

-- reserve: ARGV = 'reserve' (or 'reserve_q', below), now ('' = server clock), reservation id, then per
-- check (limit, life = window or lease or period, amount, kind: 0 window | 1 gauge | 2 counter, seed or '')
local now = tonumber(ARGV[2])
if not now then local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1e6 end
local n = math.floor(#KEYS / 2)
local S = 5

-- 'reserve_q': the call may wait for a model's capacity. KEYS[#KEYS] is that model's line across
-- instances: marks '<instance>:<class>' (class 0 is the best), scored by when they lapse (ms). ARGV
-- after the checks: the call's class, its instance, the classes waiting on that instance (a digit
-- each; '' none) and a mark's life (ms). The instance's marks are brought up to date; a mark of a
-- better class from another instance means that class waits there: nothing is charged (-3).
if ARGV[1] == 'reserve_q' then
  local line, q = KEYS[#KEYS], 3 + S * n
  local class, me, here, life = tonumber(ARGV[q + 1]), ARGV[q + 2], ARGV[q + 3], tonumber(ARGV[q + 4])
  local nowms = now * 1000
  redis.call('ZREMRANGEBYSCORE', line, '-inf', nowms)
  for c = 0, 2 do
    if string.find(here, tostring(c), 1, true) then redis.call('ZADD', line, nowms + life, me .. ':' .. c)
    else redis.call('ZREM', line, me .. ':' .. c) end
  end
  redis.call('PEXPIRE', line, 10 * life)  -- an idle line goes; its marks lapse by their scores
  for _, mark in ipairs(redis.call('ZRANGE', line, 0, -1)) do
    local who, c = string.match(mark, '^(.*):(%d)$')
    if who ~= me and tonumber(c) < class then return {-3, num(life / 10000), num(now)} end
  end
end
local totals = {}
local unseeded = {}
local cleaned = {}  -- checks whose expired entries were dropped: their total is written once, below
local first = {}  -- key -> the first check on it (a key checked twice is cleaned once)
local failed, retry = -1, 0
local now_s = num(now)
for i = 1, n do
  local log, tot = KEYS[2 * i - 1], KEYS[2 * i]
  local b = 3 + S * (i - 1)
  local limit, life, amount, kind = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4]
  local total
  if kind == '2' then
    local value = redis.call('GET', tot)
    if value then
      total = tonumber(value)
    elseif ARGV[b + 5] == '' then
      unseeded[#unseeded + 1] = i - 1
      total = 0
    else
      total = tonumber(ARGV[b + 5])
      redis.call('SET', tot, ARGV[b + 5])
      if life > 0 then redis.call('PEXPIRE', tot, math.ceil(life * 1000)) end
    end
  elseif first[tot] then
    total = totals[first[tot]]
  else
    total = tonumber(redis.call('GET', tot) or '0')
    local gone = redis.call('ZRANGEBYSCORE', log, '-inf', now_s)
    if #gone > 0 then
      for _, m in ipairs(gone) do total = total - amount_of(m) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', now_s)
      cleaned[i] = true
    end
  end
  first[tot] = first[tot] or i
  totals[i] = total
  if total + amount > limit then
    local wait = math.huge
    if amount <= limit and kind == '2' then
      local ttl = redis.call('PTTL', tot)
      if ttl > 0 then wait = ttl / 1000 end
    elseif amount <= limit then  -- walk the oldest entries until enough would have expired
      local need, freed, offset = total + amount - limit, 0, 0
      while wait == math.huge do  -- a page at a time: a long log is not read whole on each refusal
        local page = redis.call('ZRANGE', log, offset, offset + 63, 'WITHSCORES')
        for j = 1, #page, 2 do
          freed = freed + amount_of(page[j])
          if freed >= need then wait = math.max(tonumber(page[j + 1]) - now, 0) break end
        end
        if #page < 128 then break end
        offset = offset + 64
      end
    end
    if failed < 0 or wait > retry then failed, retry = i - 1, wait end
  end
end

local charged = {}  -- check index -> true: its total was written whole with its charge
local written = {}  -- key -> true: its total is up to date
local function write_cleaned()
  for i in pairs(cleaned) do
    if not written[KEYS[2 * i]] then redis.call('SET', KEYS[2 * i], int(totals[i]), 'KEEPTTL') end
  end
end

if #unseeded > 0 then  -- nothing charged: the caller learns the starting values and asks again
  write_cleaned()
  local out = {-2, '0', now_s}
  for _, i in ipairs(unseeded) do out[#out + 1] = i end
  return out
end

if failed < 0 then
  local rid = ARGV[3]
  for i = 1, n do
    local b = 3 + S * (i - 1)
    local life, amount, kind = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4]
    local log, tot = KEYS[2 * i - 1], KEYS[2 * i]
    if amount > 0 and kind == '2' then
      redis.call('INCRBY', tot, amount)
      totals[i] = totals[i] + amount
    elseif amount > 0 then
      -- both keys outlive the entry by a second; the total is written whole (the script is
      -- atomic), which sets its TTL in the same call, unless another check of this
      -- reservation already charged the same key
      local ttl = math.ceil(life * 1000) + 1000
      redis.call('ZADD', log, num(now + life), rid .. ':' .. (i - 1) .. ':' .. amount)
      if written[tot] then
        redis.call('INCRBY', tot, amount)
        redis.call('PEXPIRE', tot, ttl)
      else
        redis.call('SET', tot, int(totals[i] + amount), 'PX', ttl)
        charged[i] = true
      end
      redis.call('PEXPIRE', log, ttl)
      written[tot] = true
      totals[i] = totals[i] + amount
    end
  end
end
write_cleaned()

local out = {failed, retry == math.huge and 'inf' or num(retry), now_s}
for i = 1, n do
  local b = 3 + S * (i - 1)
  out[#out + 1] = math.max(tonumber(ARGV[b + 1]) - totals[i], 0)  -- what is left under the limit
  local reset = 0
  if ARGV[b + 4] == '2' then
    local ttl = redis.call('PTTL', KEYS[2 * i])
    if ttl > 0 then reset = ttl / 1000 end
  elseif ARGV[b + 4] ~= '1' then
    if charged[i] and ARGV[2] == '' then
      -- charged just now at the server's time, with the window every entry of this key has:
      -- the newest entry is this one
      reset = tonumber(ARGV[b + 2])
    else
      local last = redis.call('ZRANGE', KEYS[2 * i - 1], -1, -1, 'WITHSCORES')
      if #last > 0 then reset = math.max(tonumber(last[2]) - now, 0) end
    end
  end
  out[#out + 1] = num(reset)
end
return out
"""


class CheckLike(Protocol):
    """``sluice.policies.ratelimit.Check``, seen structurally."""

    key: str
    limit: int
    window: float
    amount: int
    period: float | None
    seed: int | None


Seeder = Callable[[list[Any]], Awaitable[list[int]]]


def _kind(check: CheckLike) -> str:
    return "2" if check.period is not None else "1" if check.window == 0 else "0"


_BATCH = 128  # adjustments per script call (each touches one or a few key pairs)
SETTLE_DELAY = 0.002  # seconds an adjustment may wait for a reservation to leave with (see ``_queue``)


def _num(value: float) -> str:
    return repr(float(value))


_RESERVE, _RESERVE_Q, _ADJUST, _SERVER_CLOCK = bulk(b"reserve"), bulk(b"reserve_q"), bulk(b"adjust"), bulk(b"")
MARK_LIFE_MS = 1000  # how long a waiting class's mark outlives its last refresh (a waiter refreshes every ~0.1 s)


class Line(NamedTuple):
    """A call that may wait for a model's capacity: the model's line (a name, e.g. ``q:<alias>``),
    the call's class (0 best) and the classes waiting on this instance (a digit each)."""

    name: str
    rank: int
    waiting_here: str


class Adjustment(NamedTuple):
    """Part of an adjust script call: keys and arguments, encoded as RESP bulks for Sluice's own
    client (bytes), or as strings for redis-py; and how many of each."""

    keys: bytes | list[str]
    args: bytes | list[str]
    n_keys: int
    n_args: int


class RedisReservation:
    """A ``Reservation`` held in Redis; ``settle`` and ``release`` are one round trip each
    (shared with the other adjustments of the moment)."""

    __slots__ = ("_amounts", "_held", "_limiter", "_rid", "behind", "checks", "failed", "ok", "remaining", "reset",
                 "retry_after")

    def __init__(self, limiter: RedisLimiter, checks: tuple[CheckLike, ...], failed: int | None,
                 retry_after: float, remaining: tuple[int, ...], reset: tuple[float, ...], rid: str | bytes,
                 amounts: Sequence[int] | None = None) -> None:
        self.ok = failed is None
        self.checks, self.failed, self.retry_after = checks, failed, retry_after
        self.remaining, self.reset = remaining, reset
        self._limiter = limiter
        self.behind = False  # refused because a better class waits for the model on another instance
        self._rid = rid  # bytes on Sluice's own client, str on redis-py
        # the amount held under each check (its member is "<rid>:<i>:<amount>", a counter's "c:<amount>"); 0: none.
        # Made at the first settle or release: most calls settle once, and a refused one never.
        self._held: list[int] | None = None
        self._amounts = amounts  # what each check reserved, when not its own amount (send_reserve)

    async def settle(self, amounts: Sequence[int | None]) -> None:
        adjustment = self._adjustment(amounts)
        if adjustment is not None:
            await self._limiter.adjust(adjustment)

    def settle_now(self, amounts: Sequence[int | None]) -> None:
        """``settle`` without waiting for Redis: the adjustment leaves with the others of this
        moment, and a failure is logged by the limiter (the reservation then stays as charged)."""
        adjustment = self._adjustment(amounts)
        if adjustment is not None:
            self._limiter.adjust_nowait(adjustment)

    async def release(self) -> None:
        adjustment = self._adjustment([0 if c.window == 0 and c.period is None else None for c in self.checks])
        if adjustment is not None:
            await self._limiter.adjust(adjustment)

    def _adjustment(self, amounts: Sequence[int | None]) -> Adjustment | None:
        """The adjust script's keys and arguments that move each held entry to ``amounts[i]``
        (None: as it is)."""
        checks = self.checks
        if len(amounts) != len(checks):
            raise ValueError("settle needs one amount (or None) per check")
        held_amounts = self._held
        if held_amounts is None:
            reserved = self._amounts if self._amounts is not None else [c.amount for c in checks]
            held_amounts = self._held = [0] * len(checks) if not self.ok else [max(a, 0) for a in reserved]
        changes = []
        for i, amount in enumerate(amounts):
            if amount is None:
                continue
            held = held_amounts[i]
            if not held or amount < 0 or amount == held:
                continue
            changes.append((checks[i], i, held, amount))
            held_amounts[i] = amount
        return self._limiter.adjustment(changes, self._rid) if changes else None


class RedisLimiter:
    """``Limiter`` over one Redis (or Valkey, or Redis Cluster) client shared by the process.

    ``timeout``: seconds a round trip may take before it fails with ``TimeoutError`` (the limits
    stage then applies its Redis failure policy). Seeding a period counter from the ledger
    happens between round trips, so it is not under that deadline.
    """

    def __init__(self, client: Any, prefix: str, *, lease: float = 300.0, tag: str | None = None,
                 timeout: float | None = None) -> None:
        self._client = client
        self._tag = "{" + (tag or f"{prefix}:rl") + "}"
        self._lease = lease
        self.timeout = timeout
        self._script = client.register_script(_SCRIPT)
        # Sluice's own client takes commands encoded ahead: a check's keys and its fixed
        # arguments are encoded once, not on every call.
        self._pipelined = isinstance(client, PipelinedRedis)
        self._encoded_keys: dict[str, bytes] = {}
        self._encoded_fixed: dict[tuple, tuple[bytes, bytes, bytes]] = {}  # a check's keys, arguments around its amount
        # send_reserve's commands, made once per set of checks: (those checks, the command's
        # parts before the reservation id, and per check its encoding or, for a check whose amount
        # varies, the parts around the amount)
        self._templates: dict[int, tuple[tuple, bytes, list]] = {}
        # Reservation ids: unique per limiter (random) and per reservation (a counter), so no
        # random draw (a system call) per call.
        self._rid_prefix = secrets.token_hex(6)
        self._rid_prefix_bytes = self._rid_prefix.encode()
        self._rids = itertools.count()
        # Adjustments (settle, release) waiting to leave (see ``_queue``), and the script calls on
        # their way.
        self._pending: list[tuple[Adjustment, asyncio.Future | None]] = []
        self._send_handle: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Future] = set()

    @property
    def client(self) -> Any:
        return self._client

    def adjustment(self, changes: list[tuple[CheckLike, int, int, int]], rid: str | bytes) -> Adjustment:
        """The adjust script's part for ``changes``: (check, its index in the reservation, amount
        held, new amount; 0 removes the entry) of the reservation ``rid``. A window's or gauge's
        entry is the member ``<rid>:<index>:<amount>``, a period counter's ``c:<amount>``. Sluice's
        own client gets it encoded (the keys were encoded when reserving)."""
        if self._pipelined:
            keys, args = [], []
            for c, i, held, amount in changes:
                keys.append(self._keys_bulk(c.key))
                if c.period is None:
                    old, new = b"%s:%d:%d" % (rid, i, held), b"%s:%d:%d" % (rid, i, amount) if amount else b""
                else:
                    old, new = b"c:%d" % held, b"c:%d" % amount if amount else b""
                delta = b"%d" % (amount - held)
                args.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(old), old, len(new), new, len(delta), delta))
            return Adjustment(b"".join(keys), b"".join(args), 2 * len(changes), 3 * len(changes))
        key_list: list[str] = []
        arg_list: list[str] = []
        for c, i, held, amount in changes:
            key_list += self.keys_for(c.key)
            if c.period is None:
                old, new = f"{rid}:{i}:{held}", f"{rid}:{i}:{amount}" if amount else ""
            else:
                old, new = f"c:{held}", f"c:{amount}" if amount else ""
            arg_list += [old, new, str(amount - held)]
        return Adjustment(key_list, arg_list, len(key_list), len(arg_list))

    async def adjust(self, adjustment: Adjustment) -> None:
        """Settle or release entries. Adjustments that arrive together (under load: many calls end
        in the same few milliseconds) go to Redis as one script call, so settling costs a fraction
        of a round trip per call. Returns when this adjustment is applied."""
        future = asyncio.get_running_loop().create_future()
        self._queue(adjustment, future)
        await future

    def adjust_nowait(self, adjustment: Adjustment) -> None:
        """``adjust`` for a caller that does not wait: a failure is logged here."""
        self._queue(adjustment, None)

    def _queue(self, adjustment: Adjustment, future: asyncio.Future | None) -> None:
        """Adjustments leave ``SETTLE_DELAY`` after the first of them, or earlier with a
        reservation written at once on an idle connection (``send_reserve(flush=True)``): at low
        load a call's settlement then shares a write, a script run and the reply's wake-up with
        the next call's reservation (the settlement goes first), instead of a round trip of its
        own; under load they gather into larger batches. Holding an entry a little longer only
        errs on the safe side: a limit is never exceeded by it."""
        self._pending.append((adjustment, future))
        if self._send_handle is None:
            delay = SETTLE_DELAY if self._pipelined else 0.0  # redis-py sends each call on its own
            self._send_handle = asyncio.get_running_loop().call_later(delay, self._send_pending)

    def _send_pending(self) -> None:
        if self._send_handle is not None:
            self._send_handle.cancel()
            self._send_handle = None
        while self._pending:
            batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self._start(batch)

    def _start(self, batch: list[tuple[Adjustment, asyncio.Future | None]], retry: bool = False) -> None:
        """Send one adjust call for ``batch``. Sluice's own client, connected, sends it in this turn
        without a task; otherwise (redis-py, reconnecting, or Redis lost the script) a task runs it."""
        reply: asyncio.Future | None = None
        if self._pipelined:
            n_keys = sum(a.n_keys for a, _ in batch)
            count = 2 + n_keys + sum(a.n_args for a, _ in batch)
            encoded = b"".join([bulk(b"%d" % n_keys), *(a.keys for a, _ in batch), _ADJUST, *(a.args for a, _ in batch)])
            if not retry:
                reply = self._script.send_now(count, encoded, self.timeout)
            if reply is None:
                reply = asyncio.ensure_future(self._script.call(count, encoded, self.timeout))
        else:
            keys: list[str] = []
            args: list[str] = ["adjust"]
            for a, _ in batch:
                keys += a.keys  # type: ignore[arg-type]
                args += a.args  # type: ignore[arg-type]
            reply = asyncio.ensure_future(self.run(keys, args))
        self._inflight.add(reply)
        reply.add_done_callback(lambda done: self._adjusted(done, batch, retry))

    def _adjusted(self, reply: asyncio.Future, batch: list[tuple[Adjustment, asyncio.Future | None]],
                  retry: bool) -> None:
        self._inflight.discard(reply)
        if reply.cancelled():  # shutting down: the waiters are cancelled with it
            for _, future in batch:
                if future is not None and not future.done():
                    future.cancel()
            return
        exc = reply.exception()
        if self.script_missing(exc) and not retry:
            self._start(batch, retry=True)  # Redis restarted or failed over: send it loading the script
            return
        unwatched = 0
        for _, future in batch:
            if future is None:
                unwatched += 1
            elif future.done():
                continue
            elif exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
        if exc is not None and unwatched:
            log.warning("could not settle %d reservations in Redis (%s: %s); they stay as reserved",
                        unwatched, type(exc).__name__, exc)

    def leave_line(self, name: str) -> None:
        """Nothing waits here for the model of line ``name`` any more: drop this instance's marks
        now rather than when they lapse (without waiting; a failure leaves them to lapse)."""
        key, marks = f"{self._tag}:{name}", [f"{self._rid_prefix}:{c}" for c in range(3)]
        if self._pipelined:
            reply = self._client.send_now(encode_command("ZREM", key, *marks), self.timeout)
        else:
            reply = asyncio.ensure_future(self._client.zrem(key, *marks))
        if reply is not None:
            self._inflight.add(reply)
            reply.add_done_callback(self._left_line)

    def _left_line(self, reply: asyncio.Future) -> None:
        self._inflight.discard(reply)
        if not reply.cancelled() and reply.exception() is not None:
            log.debug("could not drop this instance's line marks (%s); they lapse by themselves", reply.exception())

    async def drain(self) -> None:
        """Wait until the queued adjustments have been answered (or have failed)."""
        if self._pending:
            self._send_pending()
        while self._pending or self._inflight:
            if self._inflight:
                await asyncio.wait(list(self._inflight))
            else:
                await asyncio.sleep(0)

    def _keys_bulk(self, key: str) -> bytes:
        """A check's two Redis keys as RESP bulks, encoded once."""
        keys = self._encoded_keys.get(key)
        if keys is None:
            if len(self._encoded_keys) > 10_000:  # keys of many callers: start over
                self._encoded_keys.clear()
            keys = self._encoded_keys[key] = b"".join([bulk(k.encode()) for k in self.keys_for(key)])
        return keys

    def keys_for(self, key: str) -> list[str]:
        return [f"{self._tag}:l:{key}", f"{self._tag}:n:{key}"]

    def ttl_ms(self, check: CheckLike) -> int:
        return math.ceil((check.window or self._lease) * 1000) + 1000

    def _life(self, check: CheckLike) -> float:
        if check.period is not None:
            return 0.0 if math.isinf(check.period) else check.period
        return check.window or self._lease

    async def run(self, keys: list[str], args: list[str]) -> Any:
        if self._pipelined:
            return await self._script(keys, args, self.timeout)
        if self.timeout is None:
            return await self._script(keys=keys, args=args)
        async with asyncio.timeout(self.timeout):
            return await self._script(keys=keys, args=args)

    async def reserve(self, checks: Sequence[CheckLike], now: float | None = None,
                      seeder: Seeder | None = None, line: Line | None = None) -> RedisReservation:
        """Reserve ``checks`` all or nothing. ``line``: the call may wait for a model's capacity;
        while a better class waits for it on another instance, nothing is charged and the
        reservation comes back ``behind``."""
        checks = tuple(checks)
        rid, raw = await self._reserve_once(checks, now, line)
        if int(raw[0]) == -2:  # period counters Redis does not hold (new period, or Redis restarted)
            if seeder is None:
                raise ValueError("a period counter needs a seeder to learn what was already spent")
            unseeded = [int(i) for i in raw[3:]]
            values = await seeder([checks[i] for i in unseeded])
            seeded = list(checks)
            for i, value in zip(unseeded, values, strict=True):
                seeded[i] = replace(checks[i], seed=int(value))  # type: ignore[type-var]
            checks = tuple(seeded)
            rid, raw = await self._reserve_once(checks, now, line)
        return self.reservation(checks, rid, raw)

    def send_reserve(self, checks: tuple[CheckLike, ...], template: tuple[CheckLike, ...] | None = None,
                     amounts: Sequence[int] | None = None, flush: bool = False) -> tuple[bytes, asyncio.Future] | None:
        """Send the reservation of ``checks`` (windows and gauges: nothing to seed; Redis's clock)
        in this turn of the loop, when Sluice's own client is connected: the reservation id and
        the reply's future, for ``reservation``. None: not sent, use ``reserve``. A reply that
        fails ``script_missing`` asks for ``reserve``, which loads the script.

        ``template``: checks the caller reserves again and again, of which ``checks`` is a copy
        where some amounts may differ. Their command is then encoded once and only the differing
        amounts per call. ``amounts`` (one per check, with a template) stand for the checks' own:
        the caller can pass the template as ``checks`` and make no check per call. ``flush``: see
        ``PipelinedRedis.send_now``."""
        if amounts is not None and template is None:
            raise ValueError("amounts apart from the checks need a template")
        if not self._pipelined:
            return None
        if self._pending and flush and self._client.idle:
            self._send_pending()  # the settlements waiting go first, in the same write
        rid = b"%s%010x" % (self._rid_prefix_bytes, next(self._rids))
        if template is None:
            command = self._script.command(1 + 7 * len(checks) + 3, self._encode_reserve(checks, None, rid))
        else:
            made = self._templates.get(id(template))
            if made is None or made[0] is not template:
                made = self._template(template)
            parts = [made[1], b"$%d\r\n%s\r\n" % (len(rid), rid)]
            if amounts is None:
                amounts = [c.amount for c in checks]
            for base, amount, encoded in zip(template, amounts, made[2], strict=True):
                if amount == base.amount:
                    parts.append(encoded[0])
                else:
                    parts += (encoded[1], b"$%d\r\n%d\r\n" % (len(b"%d" % amount), amount), encoded[2])
            command = b"".join(parts)
        reply = self._client.send_now(command, self.timeout, flush)
        return None if reply is None else (rid, reply)

    def _template(self, checks: tuple[CheckLike, ...]) -> tuple[tuple, bytes, list]:
        """``send_reserve``'s parts for ``checks``, made once: the command up to the reservation
        id (see ``_encode_reserve``), then per check its arguments whole and around its amount."""
        encoded = [self._fixed(c) for c in checks]
        head = b"".join([self._script.command_head(1 + 7 * len(checks) + 3), bulk(b"%d" % (2 * len(checks))),
                         *(keys for keys, _, _ in encoded), _RESERVE, _SERVER_CLOCK])
        per_check = [(fixed + bulk(b"%d" % c.amount) + after, fixed, after)
                     for c, (_, fixed, after) in zip(checks, encoded)]
        if len(self._templates) > 10_000:
            self._templates.clear()
        made = self._templates[id(checks)] = (checks, head, per_check)
        return made

    @staticmethod
    def script_missing(exc: BaseException) -> bool:
        """Redis restarted or failed over and lost the script (NOSCRIPT)."""
        return isinstance(exc, RedisReplyError) and str(exc).startswith("NOSCRIPT")

    async def _reserve_once(self, checks: tuple[CheckLike, ...], now: float | None,
                            line: Line | None = None) -> tuple[str | bytes, Any]:
        if self._pipelined:
            if self._pending:
                self._send_pending()
            rid = b"%s%010x" % (self._rid_prefix_bytes, next(self._rids))
            count = 1 + 7 * len(checks) + 3 + (5 if line is not None else 0)
            encoded = self._encode_reserve(checks, now, rid, line)
            reply = self._script.send_now(count, encoded, self.timeout)  # connected: no coroutine in between
            if reply is None:
                return rid, await self._script.call(count, encoded, self.timeout)
            try:
                return rid, await reply
            except RedisReplyError as exc:
                if not self.script_missing(exc):
                    raise
                return rid, await self._script.call(count, encoded, self.timeout)  # loads the script
        rid = f"{self._rid_prefix}{next(self._rids):x}"
        keys: list[str] = []
        args = ["reserve" if line is None else "reserve_q", "" if now is None else _num(now), rid]
        for c in checks:
            keys += self.keys_for(c.key)
            seed = "" if c.seed is None else str(int(c.seed))
            args += [str(c.limit), _num(self._life(c)), str(c.amount), _kind(c), seed]
        if line is not None:
            keys.append(f"{self._tag}:{line.name}")
            args += [str(line.rank), self._rid_prefix, line.waiting_here, str(MARK_LIFE_MS)]
        return rid, await self.run(keys, args)

    def _fixed(self, c: CheckLike) -> tuple[bytes, bytes, bytes]:
        """A check's keys, and its arguments before and after its amount, as RESP bulks."""
        fixed = (c.key, c.limit, c.window, c.period, c.seed)
        encoded = self._encoded_fixed.get(fixed)
        if encoded is None:
            if len(self._encoded_fixed) > 10_000:  # counters' seeds vary: start over
                self._encoded_fixed.clear()
            seed = b"" if c.seed is None else b"%d" % int(c.seed)
            encoded = self._encoded_fixed[fixed] = (self._keys_bulk(c.key),
                                                    bulk(b"%d" % c.limit) + bulk(_num(self._life(c)).encode()),
                                                    bulk(_kind(c).encode()) + bulk(seed))
        return encoded

    def _encode_reserve(self, checks: tuple[CheckLike, ...], now: float | None, rid: bytes,
                        line: Line | None = None) -> bytes:
        """The reserve script's key count, keys and arguments as RESP bulks (see ``_SCRIPT``)."""
        keys = [bulk(b"%d" % (2 * len(checks) + (line is not None)))]
        args = [_RESERVE if line is None else _RESERVE_Q, _SERVER_CLOCK if now is None else bulk(_num(now).encode()),
                bulk(rid)]
        for c in checks:
            encoded = self._fixed(c)
            keys.append(encoded[0])
            args += (encoded[1], bulk(b"%d" % c.amount), encoded[2])
        if line is not None:
            keys.append(bulk(f"{self._tag}:{line.name}".encode()))
            args += (bulk(b"%d" % line.rank), bulk(self._rid_prefix_bytes), bulk(line.waiting_here.encode()),
                     bulk(b"%d" % MARK_LIFE_MS))
        return b"".join(keys + args)

    def reservation(self, checks: tuple[CheckLike, ...], rid: str | bytes, raw: Any,
                    amounts: Sequence[int] | None = None) -> RedisReservation:
        """The reservation a reserve script's reply stands for; ``amounts`` as in ``send_reserve``."""
        failed = int(raw[0])
        if failed == -2:
            raise RuntimeError("period counters still unseeded after seeding")
        if failed == -3:  # a better class waits for the model on another instance: nothing was charged
            behind = RedisReservation(self, checks, 0, float(raw[1]), (0,) * len(checks), (0.0,) * len(checks), rid)
            behind.behind = True
            return behind
        remaining = tuple(raw[3::2])  # integers: what is left under each limit
        if len(remaining) != len(checks):
            raise ValueError(f"a reply for {len(remaining)} checks, not {len(checks)}")
        if failed < 0:
            return RedisReservation(self, checks, None, 0.0, remaining, tuple(map(float, raw[4::2])), rid, amounts)
        return RedisReservation(self, checks, failed, float(raw[1]), remaining, tuple(map(float, raw[4::2])), rid)


__all__ = ["Adjustment", "CheckLike", "Line", "RedisLimiter", "RedisReservation"]
