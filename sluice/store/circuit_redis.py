"""Circuit-breaker state in Redis, shared by every gateway instance.

Implements the ``CircuitStore`` protocol of ``sluice.routing.health`` (structurally: this layer
may not import routing). Each call is one atomic Lua script, one round trip. A circuit is one
hash, ``<prefix>:circuit:{<deployment>}``; the braces are a Redis Cluster hash tag, and since
every script touches a single key, any slot is fine. Fields:

    s  "o" while open (the key is deleted when the circuit closes with no failure streak)
    f  the failure streak's timestamps, space-separated (at most ``failures`` of them)
    o  opened_at        r  retry_at (end of the open period)
    p  probe holder     l  probe lease end

Every write sets a TTL of ``(retry_at - now) + keep`` so the state of a deployment that is
gone from the config, or no longer used, expires on its own.

Timestamps come from the callers' clocks (wall clock by default), so instances should run
NTP; the reply is ``(state, failures, opened_at, retry_at, granted, holder)``, the transitions
the same as ``LocalCircuitStore``'s.
"""

from __future__ import annotations

from typing import Any

from sluice.store.redis import key

_SCRIPT = """
local key, op = KEYS[1], ARGV[1]
local now, owner, keep = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local h = redis.call('HMGET', key, 's', 'f', 'o', 'r', 'p', 'l')
local open = h[1] == 'o'
local fails = {}
if h[2] then for t in string.gmatch(h[2], '%S+') do fails[#fails + 1] = tonumber(t) end end
local opened, retry = tonumber(h[3]) or 0, tonumber(h[4]) or 0
local probe, lease = h[5] or '', tonumber(h[6]) or 0

local function reply(granted)
  local state = 'closed'
  if open then state = (now < retry) and 'open' or 'half_open' end
  local holder = (probe ~= '' and probe == owner and lease > now) and 1 or 0
  return {state, #fails, tostring(opened), tostring(retry), granted and 1 or 0, holder}
end

local function persist()
  if not open and #fails == 0 then redis.call('DEL', key) return end
  redis.call('HSET', key, 's', open and 'o' or 'c', 'f', table.concat(fails, ' '), 'o', tostring(opened),
             'r', tostring(retry), 'p', probe, 'l', tostring(lease))
  redis.call('PEXPIRE', key, math.ceil((math.max(retry - now, 0) + keep) * 1000))
end

local function trip(seconds)
  open, fails, opened, retry, probe, lease = true, {}, now, now + seconds, '', 0
  persist()
end

if op == 'peek' then return reply(false) end

if op == 'acquire' then
  if not open then return reply(true) end
  if now < retry or (probe ~= '' and lease > now) then return reply(false) end
  probe, lease = owner, now + tonumber(ARGV[5])
  persist()
  return reply(true)
end

if op == 'success' then
  if not open or (now >= retry and probe == owner) then
    if open or #fails > 0 then redis.call('DEL', key) end
    open, fails, opened, retry, probe, lease = false, {}, 0, 0, '', 0
  end
  return reply(false)
end

if op == 'release' then
  if probe == owner then probe, lease = '', 0; persist() end
  return reply(false)
end

if op == 'failure' then
  local threshold, window = tonumber(ARGV[5]), tonumber(ARGV[6])
  local cooldown, open_for = tonumber(ARGV[7]), tonumber(ARGV[8])
  if open then
    if now >= retry and probe == owner then trip(math.max(cooldown, open_for))
    elseif open_for > 0 and now + open_for > retry then retry = now + open_for; persist() end
    return reply(false)
  end
  if open_for > 0 then trip(open_for) return reply(false) end
  local kept = {}
  for _, t in ipairs(fails) do if now - t < window then kept[#kept + 1] = t end end
  while #kept > threshold - 1 do table.remove(kept, 1) end
  kept[#kept + 1] = now
  fails = kept
  if #fails >= threshold then trip(cooldown) else persist() end
  return reply(false)
end

return redis.error_reply('unknown circuit op ' .. tostring(op))
"""


def _num(value: float) -> str:
    # repr keeps every digit of a float; Lua's tonumber reads it back exactly
    return repr(float(value))


class RedisCircuitStore:
    """``CircuitStore`` over one Redis (or Valkey, or Redis Cluster) client.

    The client is the process's shared one (``sluice.store.redis.redis_client``); the breaker
    bounds each call with its own short timeout and fails open on any error raised here.
    """

    shared = True

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)

    @property
    def client(self) -> Any:
        """The Redis client, for the owner to close at shutdown."""
        return self._client

    def key_for(self, name: str) -> str:
        return key(self._prefix, "circuit", "{" + name + "}")

    async def _run(self, op: str, name: str, now: float, owner: str, keep: float, *extra: float) -> tuple:
        raw = await self._script(keys=[self.key_for(name)],
                                 args=[op, _num(now), owner, _num(keep), *(_num(x) for x in extra)])
        state, failures, opened_at, retry_at, granted, holder = raw
        return (state.decode() if isinstance(state, bytes) else state, int(failures),
                float(opened_at), float(retry_at), bool(granted), bool(holder))

    async def acquire(self, name: str, now: float, owner: str, probe_timeout: float, keep: float) -> tuple:
        return await self._run("acquire", name, now, owner, keep, probe_timeout)

    async def success(self, name: str, now: float, owner: str, keep: float) -> tuple:
        return await self._run("success", name, now, owner, keep)

    async def failure(self, name: str, now: float, owner: str, failures: int, window: float,
                      cooldown: float, open_for: float, keep: float) -> tuple:
        return await self._run("failure", name, now, owner, keep, failures, window, cooldown, open_for)

    async def release(self, name: str, now: float, owner: str, keep: float) -> tuple:
        return await self._run("release", name, now, owner, keep)

    async def peek(self, name: str, now: float, owner: str) -> tuple:
        return await self._run("peek", name, now, owner, 0.0)


__all__ = ["RedisCircuitStore"]
