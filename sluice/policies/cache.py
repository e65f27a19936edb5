"""The response cache stage: which requests may be answered from the cache, under which key, and
how a cached answer is stored and replayed — as JSON or as a stream, in either inbound dialect.

**Key.** SHA-256 of the request normalised to what changes the answer: the model alias, the
messages, tools and tool choice, the response format and every sampling parameter (temperature,
top_p, max_tokens, stop, n, seed, penalties, provider extras). Not in the key: ``stream`` and
``include_usage`` (a streamed and a plain request share entries), ``user`` and ``metadata``.
Dictionaries are serialised with sorted keys, so two clients that order a schema differently
share an entry.

**Namespace.** Per team by default (``cache.namespace: team``; a key without a team is its own
namespace), or per key, or global. A team never receives another team's cached answer: the
namespace is part of the entry's key, not a filter applied afterwards.

**Policy.** Only requests at or below ``cache.max_temperature`` (default 0: deterministic asks;
an unset temperature counts as the providers' default of 1) and, unless ``cache.tools`` is on,
without tools. Per request: ``Cache-Control: no-cache`` skips the lookup (the fresh answer is
still stored), ``no-store`` skips both, ``x-sluice-cache-ttl: <seconds>`` sets this entry's TTL
(0: do not store).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import msgspec
import orjson
from msgspec import structs

from sluice.schema import ChatChunk, ChatRequest, ChatResponse, Choice, Message, TextPart, ToolCall, ToolCallDelta, Usage
from sluice.store.response_cache import SEP, ResponseStore, entry_key

log = logging.getLogger("sluice.cache")

_DEFAULT_TEMPERATURE = 1.0  # what providers use when a request sets none


class CacheSettings(msgspec.Struct, kw_only=True):
    """The shape of ``sluice.config.CacheConfig`` that this stage reads."""

    namespace: str = "team"
    ttl: float = 3600.0
    max_temperature: float | None = 0.0
    tools: bool = False
    model_ttl: dict[str, float] = msgspec.field(default_factory=dict)
    disabled_models: frozenset[str] = frozenset()


class Entry(msgspec.Struct, kw_only=True):
    """What is stored: the answer, and what it cost when it was produced (for "cost saved")."""

    response: ChatResponse
    cost_usd: float = 0.0
    deployment: str | None = None
    upstream_model: str | None = None


_ENTRY_ENCODER = msgspec.msgpack.Encoder()
_ENTRY_DECODER = msgspec.msgpack.Decoder(Entry)


@dataclass(slots=True)
class Plan:
    """This request's cache decision: the entry key, whether to look up, whether and how long to store."""

    key: str
    lookup: bool
    store: bool
    ttl: float


def _namespace(mode: str, principal: Any) -> str:
    if mode == "global":
        return "g"
    key_id = getattr(principal, "key_id", None)
    team_id = getattr(principal, "team_id", None)
    if mode == "team" and team_id:
        return f"t:{team_id}"
    if key_id:
        return f"k:{key_id}"
    return f"p:{getattr(principal, 'id', 'anonymous')}"  # master key, anonymous or a JWT caller


def request_digest(req: ChatRequest) -> str:
    normal = structs.replace(req, stream=False, include_usage=False, user=None, metadata=None)
    return hashlib.sha256(orjson.dumps(msgspec.to_builtins(normal), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    return headers.get(name) if headers is not None else None


class ResponseCache:
    def __init__(self, store: ResponseStore, settings: CacheSettings, *, shared: bool = False) -> None:
        self.store = store
        self.settings = settings
        self.shared = shared
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.errors = 0

    def plan(self, req: ChatRequest, principal: Any, headers: Mapping[str, str] | None) -> Plan | None:
        s = self.settings
        if req.model in s.disabled_models:
            return None
        if s.max_temperature is not None:
            temperature = _DEFAULT_TEMPERATURE if req.temperature is None else req.temperature
            if temperature > s.max_temperature:
                return None
        if req.tools and not s.tools:
            return None
        control = (_header(headers, "cache-control") or "").lower()
        no_store = "no-store" in control
        ttl = s.model_ttl.get(req.model, s.ttl)
        wanted_ttl = _header(headers, "x-sluice-cache-ttl")
        if wanted_ttl is not None:
            try:
                ttl = max(float(wanted_ttl), 0.0)
            except ValueError:
                pass  # a malformed header is ignored, like an unknown cache directive
        namespace = _namespace(s.namespace, principal)
        key = entry_key(req.model, namespace, request_digest(req))
        return Plan(key, lookup=not no_store and "no-cache" not in control, store=not no_store and ttl > 0, ttl=ttl)

    async def lookup(self, plan: Plan, alias: str) -> Entry | None:
        try:
            raw = await self.store.get(plan.key)
        except Exception:  # noqa: BLE001 - a cache that fails is a miss, never an error
            self.errors += 1
            log.warning("response cache lookup failed", exc_info=True)
            return None
        if raw is None:
            self.misses[alias] += 1
            return None
        try:
            entry = _ENTRY_DECODER.decode(raw)
        except msgspec.DecodeError:
            self.misses[alias] += 1
            return None
        self.hits[alias] += 1
        return entry

    async def save(self, plan: Plan, entry: Entry) -> None:
        try:
            await self.store.set(plan.key, _ENTRY_ENCODER.encode(entry), plan.ttl)
        except Exception:  # noqa: BLE001
            self.errors += 1
            log.warning("response cache store failed", exc_info=True)

    async def purge(self, alias: str | None = None, namespace: str | None = None) -> int:
        return await self.store.purge(alias, namespace)


# ---- the semantic layer ---------------------------------------------------------------------------

@dataclass(slots=True)
class Probe:
    """A request as the semantic cache sees it: its scope, the last user message's vector and signature."""

    scope: str
    vector: Any
    signature: str


class SemanticCache:
    """Reuses the answer to a previous prompt that means the same, within the same scope.

    The scope is the alias, the tenant namespace and a digest of everything but the last user
    message (system prompt, earlier turns, tools, parameters): only the last user message is
    compared by meaning (``sluice.policies.semantic_cache``: embedding similarity plus a lexical
    guard against near-misses like changed numbers or negations). A match points at an exact
    cache entry; an entry that has expired since is a miss.
    """

    def __init__(self, index: Any, embed: Any) -> None:
        self.index = index  # SemanticIndex or RedisSemanticIndex
        self._embed = embed  # async (list[str]) -> list[vector]
        self.hits: Counter[str] = Counter()

    async def probe(self, req: ChatRequest, plan: Plan) -> Probe | None:
        from sluice.policies.semantic_cache import prompt_signature

        last = req.messages[-1] if req.messages else None
        if last is None or last.role != "user":
            return None
        text = last.text()
        if not text.strip():
            return None
        alias, namespace, _ = plan.key.split(SEP, 2)
        context = request_digest(structs.replace(req, messages=req.messages[:-1]))
        vector = (await self._embed([text]))[0]
        return Probe(f"{alias}{SEP}{namespace}{SEP}{context}", vector, prompt_signature(text))

    async def lookup(self, cache: ResponseCache, probe: Probe, alias: str) -> Entry | None:
        match = self.index.nearest(probe.scope, probe.vector, probe.signature)
        if match is None:
            return None
        plan = Plan(match.entry_key, lookup=True, store=False, ttl=0)
        entry = await cache.lookup(plan, alias)
        if entry is None:
            removed = self.index.remove(match.entry_key)
            if hasattr(removed, "__await__"):
                await removed
            return None
        self.hits[alias] += 1
        return entry

    async def remember(self, probe: Probe, plan: Plan) -> None:
        added = self.index.add(probe.scope, probe.vector, plan.key, plan.ttl, probe.signature)
        if hasattr(added, "__await__"):
            await added


# ---- streams: assemble to store, replay from a stored answer -----------------------------------

class StreamAssembler:
    """Collects a stream's chunks into the ChatResponse a non-streaming call would have returned."""

    __slots__ = ("_finish", "_id", "_model", "_stop", "_texts", "_tools", "usage")

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, list]] = {}
        self._finish: dict[int, str | None] = {}
        self._stop: dict[int, str | None] = {}
        self._id: str | None = None
        self._model: str | None = None
        self.usage: Usage | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.id and self._id is None:
            self._id, self._model = chunk.id, chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        i = chunk.index
        self._texts.setdefault(i, [])
        if chunk.text:
            self._texts[i].append(chunk.text)
        for t in chunk.tool_calls or ():
            parts = self._tools.setdefault(i, {}).setdefault(t.index, [None, None, []])
            parts[0] = parts[0] or t.id
            parts[1] = parts[1] or t.name
            parts[2].append(t.arguments)
        if chunk.finish_reason is not None:
            self._finish[i] = chunk.finish_reason
            self._stop[i] = chunk.stop_sequence

    def response(self, model: str) -> ChatResponse:
        choices = []
        for i in sorted(self._texts):
            text = "".join(self._texts[i])
            calls = [ToolCall(id=p[0] or f"call_{i}_{n}", name=p[1] or "", arguments="".join(p[2]))
                     for n, p in sorted(self._tools.get(i, {}).items())]
            message = Message(role="assistant", content=[TextPart(text=text)] if text else [],
                              tool_calls=calls or None)
            choices.append(Choice(index=i, message=message, finish_reason=self._finish.get(i),
                                  stop_sequence=self._stop.get(i)))
        return ChatResponse(id=self._id or "cached", model=self._model or model, choices=choices, usage=self.usage)


class Replay:
    """A stored answer as a stream of canonical chunk batches (the shape ``MeteredStream`` reads)."""

    __slots__ = ("_batches",)

    def __init__(self, response: ChatResponse) -> None:
        self._batches = [replay_chunks(response)]

    def __aiter__(self) -> AsyncIterator[list[ChatChunk]]:
        return self

    async def __anext__(self) -> list[ChatChunk]:
        if not self._batches:
            raise StopAsyncIteration
        return self._batches.pop()

    async def aclose(self) -> None:
        self._batches.clear()


def replay_chunks(response: ChatResponse) -> list[ChatChunk]:
    chunks: list[ChatChunk] = []
    for choice in response.choices:
        message = choice.message
        chunks.append(ChatChunk(index=choice.index, role="assistant", id=response.id, model=response.model))
        text = message.text()
        if text:
            chunks.append(ChatChunk(index=choice.index, text=text))
        if message.tool_calls:
            chunks.append(ChatChunk(index=choice.index, tool_calls=[
                ToolCallDelta(index=n, id=c.id, name=c.name, arguments=c.arguments)
                for n, c in enumerate(message.tool_calls)]))
        chunks.append(ChatChunk(index=choice.index, finish_reason=choice.finish_reason or "stop",
                                stop_sequence=choice.stop_sequence))
    if response.usage is not None:
        chunks.append(ChatChunk(usage=response.usage))
    return chunks


__all__ = ["CacheSettings", "Entry", "Plan", "Probe", "Replay", "ResponseCache", "SemanticCache", "StreamAssembler",
           "replay_chunks", "request_digest"]
