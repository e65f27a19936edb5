"""The semantic response cache's index: which earlier prompt, if any, means the same as this one.

A cached answer is reused for a new prompt when an earlier prompt of the same **scope** (the
caller composes it from the alias, the tenant namespace and a hash of the system prompt) is
near enough in embedding space *and* passes a lexical guard. The index holds only vectors and
entry keys; the answers themselves live in the response cache under those keys.

* ``SemanticIndex`` — in process. Each scope is a contiguous float32 matrix of unit vectors
  (grown by doubling, rows removed by swapping in the last row), searched with one matrix-vector
  product. A scope that grows past ``ann_threshold`` entries also gets an HNSW index from the
  optional ``voyager`` package, built on a worker thread, used for candidates that are then
  re-scored exactly (``usearch`` was tried first, but importing it before onnxruntime crashes
  the process). Entries expire after their TTL; past ``max_entries`` the least recently used
  entry goes.
* ``RedisSemanticIndex`` — the same index on every instance, kept in step through Redis: one
  hash per entry (scope, vector, guard signature, expiry; with a TTL), a sorted set of entries
  by expiry (for loading on start-up), and a capped stream of changes that each instance follows.
  Lookups never leave the process.

Why a guard: a small sentence embedder scores "convert 10 miles to km" and "convert 10 km to
miles" at 0.997, and "enable dark mode" / "disable dark mode" above many true rewordings, so no
cosine threshold reaches the 95% hit precision target on a set with such pairs (see
docs/caching.md). ``prompt_signature`` keeps the words an embedding blurs (numbers, negations,
order around "from"/"to", the one word swapped in a template) and ``signatures_compatible``
refuses a hit when they disagree. The guard is tuned for English; numbers work in any language.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from sluice.store.redis import key, redis_client

try:  # an optional accelerator for very large scopes; exact search is used without it
    import voyager as _voyager
except ImportError:  # pragma: no cover - depends on the environment
    _voyager = None
ANN_AVAILABLE = _voyager is not None

log = logging.getLogger("sluice.cache.semantic")

# Chosen by bench/eval_semantic_cache.py: the lowest cosine threshold whose hit precision,
# with the guard, is >= 0.95 on tests/data/paraphrase_pairs.jsonl (dev split). docs/caching.md.
DEFAULT_THRESHOLD = 0.76
DEFAULT_ANN_THRESHOLD = 20_000  # exact search stops being sub-millisecond around here (bench)
ANN_CATCH_UP_LIMIT = 128  # changes made during a build applied on the loop; more: build again
VectorLike = Sequence[float] | np.ndarray


class SemanticMatch(NamedTuple):
    entry_key: str
    similarity: float


# -- the lexical guard ---------------------------------------------------------------------------

SIGNATURE_HEAD, SIGNATURE_TAIL = 192, 64  # tokens kept: instructions sit at a prompt's ends

_NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "zero - two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split()) if w != "-"}  # not "one": a pronoun too
_NUMBER_WORDS.update(thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80",
                     ninety="90", hundred="100", thousand="1000", million="1000000", billion="1000000000")
_NEGATIONS = frozenset("not no never without nor none nothing neither nobody nowhere".split())
# closed-class words whose opposite flips the ask ("before"/"after"), compared as a set
_POLAR = frozenset("before after above below more less fewer against off least min max minimum maximum".split())
# words that carry no ask of their own: a change among them is a rewording, not a new question
_FUNCTION_WORDS = frozenset("""
    a an the this that these those some any all each every my your our their his her its me you we
    they i he she it him them us do does did done can could would should will shall might must be
    is are was were been being am have has had what which who whom whose how why when where whether
    if then so and or but also just please kindly thanks thank hi hello hey to of in on at by for
    with about as into from than like there here very really quite vs versus one way get got tell
    give show explain let""".split())
_DETERMINERS = frozenset("a an the my your our their his her its this that these those".split())
_DIRECTIONS = {"from": "from", "to": "to", "into": "to"}
_OPPOSING_PREFIXES = ("counter", "anti", "non", "dis", "un", "in", "im", "il", "ir", "de", "ex", "mis")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_CONTRACTIONS = ((re.compile(r"\bcan't\b|\bcannot\b"), "can not"), (re.compile(r"\bwon't\b"), "will not"),
                 (re.compile(r"n't\b"), " not"), (re.compile(r"'(?:s|re|ve|ll|m|d)\b"), ""))


def prompt_signature(text: str) -> str:
    """The normalised words of ``text`` that the guard compares (space-separated, bounded).

    Lower-cased, contractions expanded ("can't" → "can not"), number words as digits, thousands
    separators dropped; only the first ``SIGNATURE_HEAD`` and last ``SIGNATURE_TAIL`` tokens are
    kept so that memory per entry stays small. Store it with the entry; pass it to lookups.
    """
    lowered = text.lower().replace("\u2019", "'")
    for pattern, replacement in _CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    tokens = [_normal_token(t) for t in _TOKEN.findall(lowered)]
    if len(tokens) > SIGNATURE_HEAD + SIGNATURE_TAIL:
        tokens = tokens[:SIGNATURE_HEAD] + tokens[-SIGNATURE_TAIL:]
    return " ".join(tokens)


def _normal_token(token: str) -> str:
    if token[0].isdigit():
        return token.replace(",", "")
    return _NUMBER_WORDS.get(token, token)


@dataclass(frozen=True, slots=True)
class _Features:
    """What the guard compares, derived from a signature when a comparison needs it."""

    words: frozenset[str]
    numbers: tuple[str, ...]
    negations: int
    polar: frozenset[str]
    spans: frozenset[tuple[str, tuple[str, ...], str]]  # (word, 1-3 words between, word)
    roles: dict[str, str]  # word -> "from" | "to": the source or destination it names
    content: tuple[str, ...]

    @classmethod
    def of(cls, signature: str) -> _Features:
        tokens = signature.split()
        return cls(
            words=frozenset(tokens),
            numbers=tuple(t for t in tokens if t[0].isdigit()),
            negations=sum(t in _NEGATIONS for t in tokens),
            polar=frozenset(t for t in tokens if t in _POLAR),
            spans=frozenset(_spans(tokens)),
            roles=_roles(tokens),
            content=tuple(t for t in tokens if t not in _FUNCTION_WORDS and t not in _NEGATIONS and t not in _POLAR),
        )


def _spans(tokens: list[str]) -> Iterator[tuple[str, tuple[str, ...], str]]:
    for i, first in enumerate(tokens):
        if first in _FUNCTION_WORDS:
            continue
        for j in range(i + 2, min(i + 5, len(tokens))):
            if tokens[j] not in _FUNCTION_WORDS and tokens[j] != first:
                yield first, tuple(tokens[i + 1:j]), tokens[j]


def _roles(tokens: list[str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if token not in _DIRECTIONS:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j] in _DETERMINERS:
            j += 1
        if j < len(tokens) and tokens[j] not in _FUNCTION_WORDS:
            roles.setdefault(tokens[j], _DIRECTIONS[token])
    return roles


def signatures_compatible(a: str, b: str) -> bool:
    """False when the two prompts differ in something an embedding blurs but an answer depends on."""
    if a == b:
        return True
    fa, fb = _Features.of(a), _Features.of(b)
    if fa.numbers != fb.numbers or fa.negations != fb.negations or fa.polar != fb.polar:
        return False
    return not (_swapped(fa, fb) or _opposite_prefixes(fa, fb) or _roles_conflict(fa, fb)
                or _template_substitution(fa.content, fb.content))


def _swapped(fa: _Features, fb: _Features) -> bool:
    """"the dog chases the cat" / "the cat chases the dog": same words, roles reversed."""
    return any((y, mid, x) in fb.spans and (x, mid, y) not in fb.spans for x, mid, y in fa.spans)


def _roles_conflict(fa: _Features, fb: _Features) -> bool:
    """"from PayPal to my bank" / "from my bank to PayPal"."""
    return any(fb.roles.get(word, role) != role for word, role in fa.roles.items())


def _opposite_prefixes(fa: _Features, fb: _Features) -> bool:
    """install/uninstall, increase/decrease, import/export: one stem, opposing prefixes."""
    def forms(words: frozenset[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for word in words:
            if word in _FUNCTION_WORDS:
                continue
            out.setdefault(word, set()).add("")
            for prefix in _OPPOSING_PREFIXES:
                if word.startswith(prefix) and len(word) - len(prefix) >= 4:
                    out.setdefault(word[len(prefix):], set()).add(prefix)
        return out

    only_a, only_b = forms(fa.words - fb.words), forms(fb.words - fa.words)
    return any(only_a[stem] != prefixes for stem, prefixes in only_b.items() if stem in only_a)


def _template_substitution(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same prompt with one or two content words swapped for new ones (not typos).

    A rewording by a person changes several words; a prompt template filled with another city,
    language, unit or verb changes one or two, and then the embedding cannot tell a synonym
    from a different ask. Refusing those costs some recall and buys most of the precision.
    """
    if len(a) != len(b):
        return False
    in_a, in_b = set(a), set(b)
    changed = [(x, y) for x, y in zip(a, b) if x not in in_b and y not in in_a and not _typo(x, y)]
    return 0 < len(changed) <= 2 and len(a) > len(changed)


def _typo(x: str, y: str) -> bool:
    """One insertion, deletion, substitution or transposition apart."""
    if abs(len(x) - len(y)) > 1:
        return False
    if len(x) == len(y):
        diff = [i for i in range(len(x)) if x[i] != y[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and x[diff[0]] == y[diff[1]] and x[diff[1]] == y[diff[0]])
    short, long_ = (x, y) if len(x) < len(y) else (y, x)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


# -- the in-process index ------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Entry:
    key: str
    scope: str
    uid: int  # stable label for the ANN index (rows move when others are removed)
    row: int
    expires_at: float
    signature: str | None


class _ScopeVectors:
    """One scope's vectors: rows 0..n-1 of a matrix whose capacity doubles when full."""

    MIN_CAPACITY = 16

    def __init__(self, scope: str, dim: int) -> None:
        self.scope = scope
        self.matrix = np.empty((self.MIN_CAPACITY, dim), dtype=np.float32)
        self.entries: list[_Entry] = []
        self.ann: _AnnIndex | None = None
        self.building: Future | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: _Entry, vector: np.ndarray) -> None:
        n = len(self.entries)
        if n == len(self.matrix):
            self._resize(2 * n)
        self.matrix[n] = vector
        entry.row = n
        self.entries.append(entry)

    def remove(self, entry: _Entry) -> None:
        """Swap the last row into the hole: O(dim), and the live rows stay contiguous."""
        last = self.entries.pop()
        if last is not entry:
            self.matrix[entry.row] = self.matrix[last.row]
            self.entries[entry.row] = last
            last.row = entry.row
        n, capacity = len(self.entries), len(self.matrix)
        if capacity > self.MIN_CAPACITY and n < capacity // 4:  # give memory back after mass expiry
            self._resize(max(self.MIN_CAPACITY, capacity // 2))

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        return self.matrix[: len(self.entries)] @ vector

    def _resize(self, capacity: int) -> None:
        grown = np.empty((capacity, self.matrix.shape[1]), dtype=np.float32)
        n = len(self.entries)
        grown[:n] = self.matrix[:n]
        self.matrix = grown


class _AnnIndex:
    """HNSW candidates for one large scope (voyager, 8-bit storage); exact re-scoring follows.

    M=16, ef_construction=64, query ef=64: recall@1 0.99-1.0 at 50k vectors, ~0.1 ms a query,
    ~0.15 ms an insert (bench/semantic_cache.py).
    """

    QUERY_EF = 64

    def __init__(self, dim: int) -> None:
        self.index = _voyager.Index(_voyager.Space.InnerProduct, num_dimensions=dim, M=16, ef_construction=64,
                                    storage_data_type=_voyager.StorageDataType.Float8)
        self.removed = 0  # HNSW removals only mark nodes; rebuild when they pile up

    @classmethod
    def build(cls, uids: np.ndarray, vectors: np.ndarray) -> _AnnIndex:
        ann = cls(vectors.shape[1])
        if len(uids):
            ann.index.add_items(vectors, ids=uids.astype(np.uint64), num_threads=1)
        return ann

    def ids(self) -> set[int]:
        return {int(uid) for uid in self.index.ids}

    def add(self, uid: int, vector: np.ndarray) -> None:
        self.index.add_item(vector, id=uid)

    def remove(self, uid: int) -> None:
        self.index.mark_deleted(uid)
        self.removed += 1

    def candidates(self, vector: np.ndarray, count: int) -> np.ndarray | None:
        """Up to ``count`` labels, nearest first; None if the graph could not find that many."""
        try:
            labels, _distances = self.index.query(vector, k=count, query_ef=max(self.QUERY_EF, count))
        except Exception:  # voyager's RecallError: fewer reachable than asked; search exactly
            return None
        return np.asarray(labels, dtype=np.int64)


class SemanticIndex:
    """Nearest earlier prompt per scope, for one process. Not thread-safe: use it from one loop.

    ``nearest`` returns the most similar live entry of the scope whose similarity is at least the
    threshold and, when both sides have a signature, whose signature is compatible (it looks at
    up to ``max_candidates`` entries above the threshold, best first). A hit makes the entry the
    most recently used; ``add`` of an existing key replaces it.
    """

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, max_entries: int = 10_000,
                 ann_threshold: int = DEFAULT_ANN_THRESHOLD, max_candidates: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.threshold = threshold
        self.max_entries = max_entries
        self.ann_threshold = ann_threshold
        self.max_candidates = max_candidates
        self.dim: int | None = None
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._by_uid: dict[int, _Entry] = {}
        self._scopes: dict[str, _ScopeVectors] = {}
        self._uids = itertools.count(1)
        self._builder: ThreadPoolExecutor | None = None
        self._next_purge = float("-inf")
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_key: object) -> bool:
        return entry_key in self._entries

    def scope_size(self, scope: str) -> int:
        vectors = self._scopes.get(scope)
        return len(vectors) if vectors is not None else 0

    def uses_ann(self, scope: str) -> bool:
        """Whether lookups in ``scope`` currently go through the HNSW index."""
        vectors = self._scopes.get(scope)
        return vectors is not None and vectors.ann is not None

    def add(self, scope: str, vector: VectorLike, entry_key: str, ttl: float, signature: str | None = None) -> None:
        """Index ``vector`` (normalised here) under ``entry_key`` for ``ttl`` seconds."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        unit = self._unit(vector)
        self.remove(entry_key)
        entry = _Entry(entry_key, scope, next(self._uids), -1, self._clock() + ttl, signature)
        vectors = self._scopes.get(scope)
        if vectors is None:
            vectors = self._scopes[scope] = _ScopeVectors(scope, unit.shape[0])
        vectors.append(entry, unit)
        if vectors.ann is not None:
            vectors.ann.add(entry.uid, unit)
        self._entries[entry_key] = entry
        self._by_uid[entry.uid] = entry
        self._evict_if_full()
        self._maintain_ann(vectors)

    def nearest(self, scope: str, vector: VectorLike, signature: str | None = None, *,
                threshold: float | None = None) -> SemanticMatch | None:
        vectors = self._scopes.get(scope)
        if vectors is None:
            return None
        unit = self._unit(vector)
        self._maintain_ann(vectors)
        floor = self.threshold if threshold is None else threshold
        rows, sims = self._candidates(vectors, unit, floor)
        now, expired, match = self._clock(), [], None
        for row, sim in zip(rows.tolist(), sims.tolist()):
            entry = vectors.entries[row]
            if entry.expires_at <= now:
                expired.append(entry)
            elif signature is None or entry.signature is None or signatures_compatible(signature, entry.signature):
                match = SemanticMatch(entry.key, float(sim))
                self._entries.move_to_end(entry.key)
                break
        for entry in expired:
            self._drop(entry)
        return match

    def remove(self, entry_key: str) -> bool:
        entry = self._entries.get(entry_key)
        if entry is None:
            return False
        self._drop(entry)
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._by_uid.clear()
        self._scopes.clear()

    def purge_expired(self) -> int:
        now = self._clock()
        gone = [e for e in self._entries.values() if e.expires_at <= now]
        for entry in gone:
            self._drop(entry)
        return len(gone)

    def wait_for_ann_builds(self, timeout: float | None = None) -> None:
        """Finish pending ANN builds and put them in use (benchmarks and tests)."""
        for vectors in list(self._scopes.values()):
            while vectors.building is not None:  # a build may be followed by a catch-up build
                vectors.building.result(timeout)
                self._maintain_ann(vectors)

    def close(self) -> None:
        if self._builder is not None:
            self._builder.shutdown(wait=False, cancel_futures=True)

    def entries(self) -> Iterator[tuple[str, str, float]]:
        """(entry_key, scope, seconds left) of live entries, least recently used first."""
        now = self._clock()
        for entry in self._entries.values():
            if entry.expires_at > now:
                yield entry.key, entry.scope, entry.expires_at - now

    def vector(self, entry_key: str) -> np.ndarray | None:
        entry = self._entries.get(entry_key)
        return None if entry is None else self._scopes[entry.scope].matrix[entry.row].copy()

    # -- internals ---------------------------------------------------------------------------

    def _unit(self, vector: VectorLike) -> np.ndarray:
        unit = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.dim is None:
            self.dim = unit.shape[0]
        elif unit.shape[0] != self.dim:
            raise ValueError(f"vector has {unit.shape[0]} dimensions, the index holds {self.dim}")
        norm = float(np.linalg.norm(unit))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("cannot index a zero or non-finite vector")
        return unit / norm

    def _candidates(self, vectors: _ScopeVectors, unit: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows at or above ``floor``, best first, at most ``max_candidates``."""
        uids = None
        if vectors.ann is not None and len(vectors):
            uids = vectors.ann.candidates(unit, min(self.max_candidates, len(vectors)))
        if uids is not None:
            rows = np.array([self._by_uid[u].row for u in uids.tolist() if u in self._by_uid], dtype=np.int64)
            sims = vectors.matrix[rows] @ unit if len(rows) else np.empty(0, dtype=np.float32)
        else:
            sims = vectors.similarities(unit)
            rows = np.flatnonzero(sims >= floor)
            if len(rows) > self.max_candidates:
                rows = rows[np.argpartition(-sims[rows], self.max_candidates - 1)[: self.max_candidates]]
            sims = sims[rows]
        keep = sims >= floor
        rows, sims = rows[keep], sims[keep]
        order = np.argsort(-sims, kind="stable")
        return rows[order], sims[order]

    def _drop(self, entry: _Entry) -> None:
        del self._entries[entry.key]
        del self._by_uid[entry.uid]
        vectors = self._scopes[entry.scope]
        vectors.remove(entry)
        if vectors.ann is not None:
            vectors.ann.remove(entry.uid)
        if not vectors.entries and vectors.building is None:
            del self._scopes[entry.scope]

    def _evict_if_full(self) -> None:
        if len(self._entries) <= self.max_entries:
            return
        now = self._clock()
        if now >= self._next_purge:  # expired entries go before live ones; the scan is O(n),
            self.purge_expired()     # so a full index runs it at most once a second
            self._next_purge = now + 1.0
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries.values())))
            self.evictions += 1

    def _maintain_ann(self, vectors: _ScopeVectors) -> None:
        """Start, install or drop the ANN index of a scope as its size crosses the threshold."""
        if vectors.building is not None:
            if vectors.building.done():
                self._install_ann(vectors)
            return
        n = len(vectors)
        if vectors.ann is not None:
            if n < self.ann_threshold // 2:
                vectors.ann = None
            elif vectors.ann.removed > n:  # mostly tombstones: rebuild
                self._start_ann_build(vectors)
        elif n >= self.ann_threshold and _voyager is not None:
            self._start_ann_build(vectors)

    def _start_ann_build(self, vectors: _ScopeVectors) -> None:
        if self._builder is None:
            self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-ann")
        n = len(vectors)
        uids = np.fromiter((e.uid for e in vectors.entries), dtype=np.int64, count=n)
        vectors.building = self._builder.submit(_AnnIndex.build, uids, vectors.matrix[:n].copy())

    def _install_ann(self, vectors: _ScopeVectors) -> None:
        """Bring a finished build up to date with what changed while it was being built.

        Inserting costs ~0.15 ms on the event loop, so if many entries arrived meanwhile (a
        resync loading thousands) the build is started again from the current entries instead.
        """
        future, vectors.building = vectors.building, None
        try:
            ann: _AnnIndex = future.result()
        except Exception:  # a failed build leaves exact search in place
            log.exception("building the ANN index of a semantic cache scope failed")
            return
        built = ann.ids()
        live = {e.uid: e for e in vectors.entries}
        missing = live.keys() - built
        if len(missing) > ANN_CATCH_UP_LIMIT:
            if len(vectors) >= self.ann_threshold:
                self._start_ann_build(vectors)
            return
        for uid in built - live.keys():
            ann.remove(uid)
        for uid in missing:
            ann.add(uid, vectors.matrix[live[uid].row])
        vectors.ann = ann
        if not vectors.entries and self._scopes.get(vectors.scope) is vectors:
            del self._scopes[vectors.scope]


# -- shared through redis ------------------------------------------------------------------------

_ADD = """
local entry, all, log = KEYS[1], KEYS[2], KEYS[3]
local ek, scope, vec, sig, origin, base = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl, maxlen, cap = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = now + ttl
redis.call('DEL', entry)
redis.call('HSET', entry, 's', scope, 'v', vec, 'x', exp)
local change = {'op', 'a', 'k', ek, 's', scope, 'v', vec, 'x', exp, 'o', origin}
if ARGV[10] == '1' then
  redis.call('HSET', entry, 'g', sig)
  table.insert(change, 'g'); table.insert(change, sig)
end
redis.call('PEXPIRE', entry, ttl)
redis.call('ZADD', all, exp, ek)
redis.call('ZREMRANGEBYSCORE', all, '-inf', now)
local trim = ARGV[11]
redis.call('XADD', log, 'MAXLEN', trim, maxlen, '*', unpack(change))
local over = redis.call('ZCARD', all) - cap
if over > 0 then
  local gone = redis.call('ZPOPMIN', all, over)
  for i = 1, #gone, 2 do
    redis.call('DEL', base .. gone[i])
    redis.call('XADD', log, 'MAXLEN', trim, maxlen, '*', 'op', 'r', 'k', gone[i], 'o', origin)
  end
end
local last = redis.call('ZRANGE', all, -1, -1, 'WITHSCORES')
local keep = math.max(tonumber(last[2] or exp) - now, ttl) + 60000
redis.call('PEXPIRE', all, keep)
redis.call('PEXPIRE', log, keep)
return exp
"""


@dataclass(slots=True)
class _Change:
    op: str  # "a" add, "r" remove
    entry_key: str
    scope: str = ""
    vector: bytes = b""
    expires_ms: int = 0  # Redis clock
    signature: str | None = None
    origin: str = ""


class RedisSemanticIndex:
    """A ``SemanticIndex`` per instance, kept in step with the others' through Redis.

    Keys (one Cluster hash tag, ``{<prefix>:semcache}``): ``…:e:<entry key>`` a hash per entry
    with a TTL; ``…:all`` a sorted set of entry keys by expiry (Redis clock, ms); ``…:log`` a
    stream of changes capped at ``log_maxlen``. ``start()`` notes the log's tail, loads the
    newest ``max_entries`` entries, then follows the log from that tail, so nothing added or
    removed meanwhile is missed (replaying a change is harmless). If the follower lost its place
    (Redis unreachable, or the log trimmed past it) it reloads everything. Writes go to Redis
    and to the local index at once; a Redis failure is logged and the local index still serves.
    """

    def __init__(self, url: str, prefix: str, *, log_maxlen: int = 10_000, shared_max_entries: int | None = None,
                 block_ms: int = 1000, **index_options: Any) -> None:
        self.local = SemanticIndex(**index_options)
        self._base = "{%s:semcache}" % prefix
        self._all, self._log = key(self._base, "all"), key(self._base, "log")
        self._client = redis_client(url, name="sluice-semcache")
        self._reader = redis_client(url, name="sluice-semcache-follow")
        self._add_script = self._client.register_script(_ADD)
        self._origin = secrets.token_hex(8)
        self._log_maxlen = log_maxlen
        self._approximate_trim = log_maxlen >= 1000  # "~" trims by whole nodes (~100 entries)
        self._shared_max = shared_max_entries or self.local.max_entries
        self._block_ms = block_ms
        self._batch = max(1, min(500, log_maxlen // 2))
        self._last_id = b"0-0"
        self._offset_ms = 0.0  # Redis clock minus local wall clock
        self._task: asyncio.Task | None = None
        self._closing = False
        self.resyncs = 0

    @property
    def threshold(self) -> float:
        return self.local.threshold

    async def start(self) -> None:
        """Load the shared entries and follow the log; if Redis is down, keep retrying in the background."""
        if self._task is not None:
            return
        try:
            await self.resync()
            loaded = True
        except Exception as exc:  # noqa: BLE001 — serve from the local index meanwhile
            log.warning("semantic cache: Redis unavailable at start (%s: %s); retrying", type(exc).__name__, exc)
            loaded = False
        self._task = asyncio.create_task(self._follow(lost=not loaded), name="sluice-semcache-follow")

    async def close(self) -> None:
        task, self._task = self._task, None
        self._closing = True
        if task is not None:
            task.cancel()
            # redis-py can turn a cancellation that lands in a read's timeout into an ordinary
            # error (Python 3.11's asyncio.timeout), so the follower also stops on ``_closing``,
            # at the latest when its blocking read returns.
            await asyncio.wait({task}, timeout=self._block_ms / 1000 + 2)
        self.local.close()
        await self._reader.aclose()
        await self._client.aclose()

    def nearest(self, scope: str, vector: VectorLike, signature: str | None = None, *,
                threshold: float | None = None) -> SemanticMatch | None:
        return self.local.nearest(scope, vector, signature, threshold=threshold)

    async def add(self, scope: str, vector: VectorLike, entry_key: str, ttl: float,
                  signature: str | None = None) -> None:
        self.local.add(scope, vector, entry_key, ttl, signature)
        unit = self.local.vector(entry_key)
        args = [entry_key, scope, unit.tobytes(), signature or "", self._origin, key(self._base, "e", ""),
                max(1, int(ttl * 1000)), self._log_maxlen, self._shared_max, "0" if signature is None else "1",
                "~" if self._approximate_trim else "="]
        try:
            await self._add_script(keys=[self._entry(entry_key), self._all, self._log], args=args)
        except Exception as exc:  # noqa: BLE001 — a cache write must never fail the request
            log.warning("semantic cache: could not share an entry through Redis (%s: %s)", type(exc).__name__, exc)

    async def remove(self, entry_key: str) -> None:
        self.local.remove(entry_key)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._entry(entry_key))
                pipe.zrem(self._all, entry_key)
                pipe.xadd(self._log, {"op": "r", "k": entry_key, "o": self._origin},
                          maxlen=self._log_maxlen, approximate=self._approximate_trim)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001
            log.warning("semantic cache: could not remove an entry from Redis (%s: %s)", type(exc).__name__, exc)

    async def resync(self) -> None:
        """Reload the local index from Redis (start-up, or after losing the log's thread)."""
        seconds, micros = await self._client.time()
        self._offset_ms = seconds * 1000 + micros / 1000 - time.time() * 1000
        tail = await self._client.xrevrange(self._log, count=1)
        changes = await self._snapshot()
        self.local.clear()
        for change in changes:
            self._apply(change)
        # set last, so the log is replayed from the tail noted *before* the snapshot was read
        self._last_id = tail[0][0] if tail else b"0-0"
        self.resyncs += 1

    # -- internals ---------------------------------------------------------------------------

    def _entry(self, entry_key: str) -> str:
        return key(self._base, "e", entry_key)

    async def _snapshot(self) -> list[_Change]:
        """The newest ``max_entries`` live entries, oldest first (so LRU order follows age)."""
        now_ms = int(time.time() * 1000 + self._offset_ms)
        keys = await self._client.zrevrangebyscore(self._all, "+inf", now_ms, start=0, num=self.local.max_entries)
        changes: list[_Change] = []
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            async with self._client.pipeline(transaction=False) as pipe:
                for entry_key in batch:
                    pipe.hmget(self._entry(entry_key.decode()), "s", "v", "x", "g")
                rows = await pipe.execute()
            for entry_key, (scope, vector, expires, signature) in zip(batch, rows):
                if scope is not None and vector is not None and expires is not None:
                    changes.append(_Change("a", entry_key.decode(), scope.decode(), vector, int(expires),
                                           None if signature is None else signature.decode()))
        changes.reverse()
        return changes

    def _apply(self, change: _Change) -> None:
        if change.op == "r":
            self.local.remove(change.entry_key)
            return
        ttl = (change.expires_ms - self._offset_ms) / 1000 - time.time()
        if ttl <= 0:
            self.local.remove(change.entry_key)
            return
        try:
            vector = np.frombuffer(change.vector, dtype=np.float32)
            self.local.add(change.scope, vector, change.entry_key, ttl, change.signature)
        except ValueError as exc:  # e.g. another embedding model's dimension: not comparable
            log.warning("semantic cache: ignoring shared entry %r (%s)", change.entry_key, exc)

    async def _follow(self, *, lost: bool) -> None:
        backoff = 0.05
        while not self._closing:
            try:
                if lost:
                    await self.resync()
                    log.info("semantic cache: back in step with Redis")
                    lost, backoff = False, 0.05
                await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — connection refused, reset, timeout, …
                if self._closing:
                    return
                if not lost:
                    log.warning("semantic cache: lost the shared log (%s: %s); will reload", type(exc).__name__, exc)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _read_once(self) -> None:
        reply = await self._reader.xread({self._log: self._last_id}, count=self._batch, block=self._block_ms)
        for _stream, messages in reply or []:
            if len(messages) >= self._batch and await self._trimmed_past_us():
                await self.resync()
                return
            for message_id, fields in messages:
                self._last_id = message_id
                change = _decode_change(fields)
                if change is not None and change.origin != self._origin:
                    self._apply(change)

    async def _trimmed_past_us(self) -> bool:
        """Whether the log no longer holds the entry after ours (we fell more than a cap behind)."""
        first = await self._client.xrange(self._log, count=1)
        return bool(first) and _stream_id(first[0][0]) > _stream_id(self._last_id)


def _decode_change(fields: dict[bytes, bytes]) -> _Change | None:
    op, entry_key = fields.get(b"op"), fields.get(b"k")
    if op not in (b"a", b"r") or entry_key is None:
        return None
    origin = fields.get(b"o", b"").decode()
    if op == b"r":
        return _Change("r", entry_key.decode(), origin=origin)
    signature = fields.get(b"g")
    return _Change("a", entry_key.decode(), fields.get(b"s", b"").decode(), fields.get(b"v", b""),
                   int(fields.get(b"x", b"0")), None if signature is None else signature.decode(), origin)


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


__all__ = ["ANN_AVAILABLE", "DEFAULT_ANN_THRESHOLD", "DEFAULT_THRESHOLD", "RedisSemanticIndex", "SemanticIndex",
           "SemanticMatch", "prompt_signature", "signatures_compatible"]
