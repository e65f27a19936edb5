"""How an alias orders its deployments for one call: the first is tried first, the rest are
the failover order. Each strategy is a small function of the deployments and their live stats.

Unknown figures (a deployment not yet measured) count as best, so new or recovered
deployments get traffic and are measured.
"""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Callable, Literal, Protocol, Sequence

StrategyName = Literal["weighted", "round_robin", "least_busy", "lowest_latency", "lowest_cost", "priority",
                       "usage_aware"]
STRATEGIES: tuple[str, ...] = ("weighted", "round_robin", "least_busy", "lowest_latency", "lowest_cost",
                               "priority", "usage_aware")


class Candidate(Protocol):
    name: str
    weight: float
    priority: int
    rpm: int | None
    tpm: int | None


class LiveStats(Protocol):
    """What strategies read about a deployment (sluice.routing.stats provides it)."""

    def inflight(self, name: str) -> int: ...

    def latency(self, name: str, stream: bool) -> float | None: ...

    def usage_this_minute(self, name: str) -> tuple[int, int]: ...  # (requests, tokens)


CostOf = Callable[[Candidate, int], float | None]  # (deployment, estimated prompt tokens) → USD or None


def _standby_last(ordered: list, deps: Sequence) -> list:
    """Weight-0 deployments are standby: never first while another has weight."""
    active = [d for d in ordered if d.weight > 0]
    return active + [d for d in ordered if d.weight <= 0] if active else ordered


def weighted(deps: Sequence, **_) -> list:
    """One deployment picked at random in proportion to its weight, then the others in their
    configured order after it (so failover from each pick goes on to a different one), then
    the standby ones (weight 0). The picking table is worked out once per alias."""
    plan = _weighted_plans.get(id(deps))
    if plan is None or plan[0] is not deps:
        plan = _weighted_plan(deps)
    _, active, cumulative, standby = plan
    if cumulative is None:  # equal weights
        i = random.randrange(len(active))
    else:
        i = bisect.bisect(cumulative, random.random() * cumulative[-1])
    return [*active[i:], *active[:i], *standby]


_weighted_plans: dict[int, tuple] = {}


def _weighted_plan(deps: Sequence) -> tuple:
    active = [d for d in deps if d.weight > 0] or list(deps)
    weights = [d.weight or 1 for d in active]
    cumulative = None if len(set(weights)) == 1 else list(itertools.accumulate(weights))
    plan = (deps, active, cumulative, [d for d in deps if d not in active])
    if len(_weighted_plans) > 20_000:  # aliases made on the fly (wildcards, passthrough) come and go
        _weighted_plans.clear()
    _weighted_plans[id(deps)] = plan
    return plan


class RoundRobin:
    def __init__(self) -> None:
        self._counters: dict[int, itertools.count] = {}

    def __call__(self, deps: Sequence, **_) -> list:
        counter = self._counters.setdefault(id(deps), itertools.count())
        i = next(counter) % len(deps)
        return _standby_last([*deps[i:], *deps[:i]], deps)


def least_busy(deps: Sequence, stats: LiveStats, **_) -> list:
    ranked = sorted(deps, key=lambda d: (stats.inflight(d.name), random.random()))
    return _standby_last(ranked, deps)


def lowest_latency(deps: Sequence, stats: LiveStats, stream: bool = False, **_) -> list:
    def key(d) -> tuple:
        latency = stats.latency(d.name, stream)
        return (0.0 if latency is None else latency, random.random())

    return _standby_last(sorted(deps, key=key), deps)


def lowest_cost(deps: Sequence, cost_of: CostOf | None = None, prompt_tokens: int = 0, **_) -> list:
    def key(d) -> tuple:
        cost = cost_of(d, prompt_tokens) if cost_of else None
        return (float("inf") if cost is None else cost, random.random())

    return _standby_last(sorted(deps, key=key), deps)


def priority(deps: Sequence, **_) -> list:
    return sorted(deps, key=lambda d: d.priority)  # stable: config order breaks ties


def usage_aware(deps: Sequence, stats: LiveStats, prompt_tokens: int = 0, **_) -> list:
    """Most headroom first against each deployment's declared upstream RPM/TPM; full ones last."""
    def headroom(d) -> float:
        requests, tokens = stats.usage_this_minute(d.name)
        room = 1.0
        if d.rpm:
            room = min(room, (d.rpm - requests - 1) / d.rpm)
        if d.tpm:
            room = min(room, (d.tpm - tokens - prompt_tokens) / d.tpm)
        return room

    return _standby_last(sorted(deps, key=lambda d: (-headroom(d), random.random())), deps)


def make_strategy(name: str) -> Callable[..., list]:
    if name == "round_robin":
        return RoundRobin()
    return {"weighted": weighted, "least_busy": least_busy, "lowest_latency": lowest_latency,
            "lowest_cost": lowest_cost, "priority": priority, "usage_aware": usage_aware}[name]
