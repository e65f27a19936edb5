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
script. The price is that all limiter traffic lands on one shard; a script is O(log n) per
check, and a single Redis node runs tens of thousands of them per second, which is far above
one deployment's request rate. A deployment that outgrows it can pass a tag per tenant (all
checks of one reservation must then share that tenant).

Time. With ``now=None`` the script reads the Redis server's clock (``TIME``), so instances with
skewed clocks still agree on every window; an explicit ``now`` (tests, replays) is used as is.
Each write refreshes the TTL of both keys to the longest life an entry can have, so idle keys
vanish by themselves.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

_SCRIPT = """
local function amount_of(member) return tonumber(string.match(member, ':(%d+)$')) end
local function num(x) return string.format('%.17g', x) end

local function touch(i, ttl)
  redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
  redis.call('PEXPIRE', KEYS[2 * i], ttl)
end

-- adjust: per key pair, ARGV = 'adjust', then (old member, new member or '', delta, ttl ms)
if ARGV[1] == 'adjust' then
  for i = 1, #KEYS / 2 do
    local b = 1 + 4 * (i - 1)
    if string.sub(ARGV[b + 1], 1, 2) == 'c:' then  -- a period counter: no entries, just the total
      if redis.call('EXISTS', KEYS[2 * i]) == 1 then redis.call('INCRBY', KEYS[2 * i], ARGV[b + 3]) end
    else
    local score = redis.call('ZSCORE', KEYS[2 * i - 1], ARGV[b + 1])
    if score then  -- an entry already expired no longer counts: nothing to adjust
      redis.call('ZREM', KEYS[2 * i - 1], ARGV[b + 1])
      if ARGV[b + 2] ~= '' then redis.call('ZADD', KEYS[2 * i - 1], score, ARGV[b + 2]) end
      redis.call('INCRBY', KEYS[2 * i], ARGV[b + 3])
      touch(i, ARGV[b + 4])
    end
    end
  end
  return 1
end

-- reserve: ARGV = 'reserve', now ('' = server clock), reservation id, then per check
-- (limit, life = window or lease or period, amount, kind: 0 window | 1 gauge | 2 counter, seed or '')
local now = tonumber(ARGV[2])
if not now then local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1e6 end
local n = #KEYS / 2
local S = 5
local totals = {}
local unseeded = {}
local failed, retry = -1, 0
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
  else
    total = tonumber(redis.call('GET', tot) or '0')
    local gone = redis.call('ZRANGEBYSCORE', log, '-inf', num(now))
    if #gone > 0 then
      for _, m in ipairs(gone) do total = total - amount_of(m) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', num(now))
      redis.call('SET', tot, total, 'KEEPTTL')
    end
  end
  totals[i] = total
  if total + amount > limit then
    local wait = math.huge
    if amount <= limit and kind == '2' then
      local ttl = redis.call('PTTL', tot)
      if ttl > 0 then wait = ttl / 1000 end
    elseif amount <= limit then  -- walk the oldest entries until enough would have expired
      local need, freed = total + amount - limit, 0
      local all = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
      for j = 1, #all, 2 do
        freed = freed + amount_of(all[j])
        if freed >= need then wait = math.max(tonumber(all[j + 1]) - now, 0) break end
      end
    end
    if failed < 0 or wait > retry then failed, retry = i - 1, wait end
  end
end

if #unseeded > 0 then  -- nothing charged: the caller learns the starting values and asks again
  local out = {-2, '0', num(now)}
  for _, i in ipairs(unseeded) do out[#out + 1] = i end
  return out
end

if failed < 0 then
  local rid = ARGV[3]
  for i = 1, n do
    local b = 3 + S * (i - 1)
    local life, amount, kind = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4]
    if amount > 0 and kind == '2' then
      redis.call('INCRBY', KEYS[2 * i], amount)
      totals[i] = totals[i] + amount
    elseif amount > 0 then
      redis.call('ZADD', KEYS[2 * i - 1], num(now + life), rid .. ':' .. (i - 1) .. ':' .. amount)
      redis.call('INCRBY', KEYS[2 * i], amount)
      totals[i] = totals[i] + amount
      touch(i, math.ceil(life * 1000) + 1000)
    end
  end
end

local out = {failed, retry == math.huge and 'inf' or num(retry), num(now)}
for i = 1, n do
  local b = 3 + S * (i - 1)
  out[#out + 1] = totals[i]
  local reset = 0
  if ARGV[b + 4] == '2' then
    local ttl = redis.call('PTTL', KEYS[2 * i])
    if ttl > 0 then reset = ttl / 1000 end
  elseif ARGV[b + 4] ~= '1' then
    local last = redis.call('ZRANGE', KEYS[2 * i - 1], -1, -1, 'WITHSCORES')
    if #last > 0 then reset = math.max(tonumber(last[2]) - now, 0) end
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


def _num(value: float) -> str:
    return repr(float(value))


class RedisReservation:
    """A ``Reservation`` held in Redis; ``settle`` and ``release`` are one round trip each."""

    __slots__ = ("_limiter", "_members", "checks", "failed", "ok", "remaining", "reset", "retry_after")

    def __init__(self, limiter: RedisLimiter, checks: tuple[CheckLike, ...], failed: int | None,
                 retry_after: float, remaining: tuple[int, ...], reset: tuple[float, ...],
                 members: list[str | None]) -> None:
        self.ok = failed is None
        self.checks, self.failed, self.retry_after = checks, failed, retry_after
        self.remaining, self.reset = remaining, reset
        self._limiter = limiter
        self._members = members  # the live member per check, None when nothing is held

    async def settle(self, amounts: Sequence[int | None]) -> None:
        if len(amounts) != len(self.checks):
            raise ValueError("settle needs one amount (or None) per check")
        wanted = {i: a for i, a in enumerate(amounts) if a is not None}
        await self._adjust(wanted)

    async def release(self) -> None:
        await self._adjust({i: 0 for i, c in enumerate(self.checks) if c.window == 0 and c.period is None})

    async def _adjust(self, wanted: dict[int, int]) -> None:
        keys: list[str] = []
        args: list[str] = ["adjust"]
        for i, amount in wanted.items():
            old = self._members[i]
            if old is None or amount < 0:
                continue
            prefix, _, held = old.rpartition(":")
            if int(held) == amount:
                continue
            new = f"{prefix}:{amount}" if amount > 0 else None
            keys += self._limiter.keys_for(self.checks[i].key)
            args += [old, new or "", str(amount - int(held)), str(self._limiter.ttl_ms(self.checks[i]))]
            self._members[i] = new
        if keys:
            await self._limiter.adjust(keys, args[1:])


class RedisLimiter:
    """``Limiter`` over one Redis (or Valkey, or Redis Cluster) client shared by the process."""

    def __init__(self, client: Any, prefix: str, *, lease: float = 300.0, tag: str | None = None) -> None:
        self._client = client
        self._tag = "{" + (tag or f"{prefix}:rl") + "}"
        self._lease = lease
        self._script = client.register_script(_SCRIPT)
        self._pending: list[tuple[list[str], list[str], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    @property
    def client(self) -> Any:
        return self._client

    async def adjust(self, keys: list[str], args: list[str]) -> None:
        """Settle or release entries. Adjustments that arrive together (under load: many calls end
        in the same few milliseconds) go to Redis as one script call, so settling costs a fraction
        of a round trip per call. Returns when this adjustment is applied."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            await self._flush_batches()
        except asyncio.CancelledError:  # shutting down: nobody may wait forever
            for _, _, future in self._pending:
                if not future.done():
                    future.cancel()
            self._pending.clear()
            raise

    async def _flush_batches(self) -> None:
        await asyncio.sleep(0)  # let the adjustments of this loop iteration join the batch
        while self._pending:
            batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            keys: list[str] = []
            args: list[str] = ["adjust"]
            for k, a, _ in batch:
                keys += k
                args += a
            try:
                await self.run(keys, args)
            except Exception as exc:  # noqa: BLE001 - each waiter learns of the failure
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def keys_for(self, key: str) -> list[str]:
        return [f"{self._tag}:l:{key}", f"{self._tag}:n:{key}"]

    def ttl_ms(self, check: CheckLike) -> int:
        return math.ceil((check.window or self._lease) * 1000) + 1000

    def _life(self, check: CheckLike) -> float:
        if check.period is not None:
            return 0.0 if math.isinf(check.period) else check.period
        return check.window or self._lease

    async def run(self, keys: list[str], args: list[str]) -> Any:
        return await self._script(keys=keys, args=args)

    async def reserve(self, checks: Sequence[CheckLike], now: float | None = None,
                      seeder: Seeder | None = None) -> RedisReservation:
        checks = tuple(checks)
        rid, raw = await self._reserve_once(checks, now)
        if int(raw[0]) == -2:  # period counters Redis does not hold (new period, or Redis restarted)
            if seeder is None:
                raise ValueError("a period counter needs a seeder to learn what was already spent")
            unseeded = [int(i) for i in raw[3:]]
            values = await seeder([checks[i] for i in unseeded])
            seeded = list(checks)
            for i, value in zip(unseeded, values, strict=True):
                seeded[i] = replace(checks[i], seed=int(value))  # type: ignore[type-var]
            checks = tuple(seeded)
            rid, raw = await self._reserve_once(checks, now)
        return self._reservation(checks, rid, raw)

    async def _reserve_once(self, checks: tuple[CheckLike, ...], now: float | None) -> tuple[str, Any]:
        rid = secrets.token_hex(8)
        keys: list[str] = []
        args = ["reserve", "" if now is None else _num(now), rid]
        for c in checks:
            keys += self.keys_for(c.key)
            seed = "" if c.seed is None else str(int(c.seed))
            args += [str(c.limit), _num(self._life(c)), str(c.amount), _kind(c), seed]
        return rid, await self.run(keys, args)

    def _reservation(self, checks: tuple[CheckLike, ...], rid: str, raw: Any) -> RedisReservation:
        failed = int(raw[0])
        if failed == -2:
            raise RuntimeError("period counters still unseeded after seeding")
        totals = [int(x) for x in raw[3::2]]
        remaining = tuple(max(c.limit - t, 0) for c, t in zip(checks, totals, strict=True))
        reset = tuple(float(x) for x in raw[4::2])
        members: list[str | None] = [
            None if failed >= 0 or c.amount <= 0 else
            f"c:{c.amount}" if c.period is not None else f"{rid}:{i}:{c.amount}"
            for i, c in enumerate(checks)
        ]
        return RedisReservation(self, checks, None if failed < 0 else failed, float(raw[1]),
                                remaining, reset, members)


__all__ = ["CheckLike", "RedisLimiter", "RedisReservation"]
