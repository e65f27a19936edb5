"""Router policies with injected call functions (no network): fallbacks by error kind, retries, strategies."""

from __future__ import annotations

import pytest

from sluice.providers.http import HttpPool
from sluice.routing.router import DeploymentSpec, Policy, ProviderSpec, Route, Router
from sluice.routing.strategies import least_busy, lowest_cost, lowest_latency, priority, usage_aware
from sluice.routing.windows import context_window, estimate_prompt_tokens
from sluice.providers.http import Timeouts
from sluice.schema import ChatRequest, GatewayError, Message, TextPart


def _router() -> Router:
    spec = ProviderSpec("p", "openai", "http://127.0.0.1:9/v1", "k", None, {}, {}, Timeouts())
    router = Router(HttpPool(), {"p": spec})
    router.add_alias("main", [DeploymentSpec("p", "m1", name="d1")],
                     policy=Policy(content_policy_fallback="safe", fallbacks=("backup",)))
    router.add_alias("safe", [DeploymentSpec("p", "m2", name="d-safe")])
    router.add_alias("backup", [DeploymentSpec("p", "m3", name="d-backup")])
    return router


def _req(text: str = "hi", model: str = "main") -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text=text)])])


@pytest.mark.parametrize("kind, status, answered_by", [
    ("content_policy", 400, "d-safe"),
    ("server_error", 500, "d-backup"),
    ("rate_limit", 429, "d-backup"),
])
async def test_fallback_target_depends_on_the_error(kind, status, answered_by):
    router = _router()

    async def call(dep, req):
        if dep.name == "d1":
            raise GatewayError(kind, "no", status=status)
        return dep.name

    route = Route()
    assert await router._attempts(_req(), route, call) == answered_by
    assert route.fallback == ("safe" if kind == "content_policy" else "backup")


async def test_client_errors_do_not_fall_back():
    router = _router()
    calls = []

    async def call(dep, req):
        calls.append(dep.name)
        raise GatewayError("invalid_request", "bad", status=400)

    with pytest.raises(GatewayError):
        await router._attempts(_req(), Route(), call)
    assert calls == ["d1"]


def test_context_window_table_and_estimate():
    assert context_window("gpt-4o-2024-08-06") == 128_000
    assert context_window("openai/gpt-4o-mini") == 128_000
    assert context_window("my-own-model") is None
    assert 240 <= estimate_prompt_tokens(_req("word " * 200)) <= 300


class _Dep:
    def __init__(self, name, weight=1.0, prio=0, rpm=None, tpm=None):
        self.name, self.weight, self.priority, self.rpm, self.tpm = name, weight, prio, rpm, tpm


class _Stats:
    def __init__(self, inflight=None, latency=None, usage=None):
        self._inflight, self._latency, self._usage = inflight or {}, latency or {}, usage or {}

    def inflight(self, name):
        return self._inflight.get(name, 0)

    def latency(self, name, stream):
        return self._latency.get(name)

    def usage_this_minute(self, name):
        return self._usage.get(name, (0, 0))


def test_strategies_order_by_their_measure():
    a, b, c = _Dep("a"), _Dep("b"), _Dep("c", weight=0)
    deps = [a, b, c]
    assert least_busy(deps, stats=_Stats(inflight={"a": 5, "b": 1}))[0] is b
    assert lowest_latency(deps, stats=_Stats(latency={"a": 0.2, "b": 0.9}))[0] is a
    assert lowest_latency(deps, stats=_Stats(latency={"a": 0.2}))[0] is b  # unmeasured goes first
    assert lowest_cost(deps, cost_of=lambda d, t: {"a": 3.0, "b": 1.0}.get(d.name), prompt_tokens=10)[0] is b
    assert [d.name for d in priority([_Dep("x", prio=2), _Dep("y", prio=1)])] == ["y", "x"]
    full, empty = _Dep("full", rpm=10), _Dep("empty", rpm=10)
    assert usage_aware([full, empty], stats=_Stats(usage={"full": (10, 0)}))[0] is empty
    assert least_busy(deps, stats=_Stats(inflight={"a": 9, "b": 9}))[-1] is c  # standby stays last


def test_rule_conditions():
    from sluice.routing.conditional import ConditionalRouter, Facts, Rule

    rules = ConditionalRouter([
        Rule("vision", "big", has_images=True),
        Rule("team-a-free", "mini", team="team-a", metadata={"tier": "free"}),
        Rule("tools-short", "tooler", has_tools=True, prompt_tokens_lt=100),
        Rule("user-x", "special", user="x", key="k1"),
    ])
    pick = lambda **kw: (rules.pick(Facts(model="m", **kw)) or Rule("none", "")).name  # noqa: E731
    assert pick(has_images=True) == "vision"
    assert pick(team_id="team-a", metadata={"tier": "free"}) == "team-a-free"
    assert pick(team_id="team-a", metadata={"tier": "paid"}) == "none"
    assert pick(has_tools=True, prompt_tokens=lambda: 50) == "tools-short"
    assert pick(has_tools=True, prompt_tokens=lambda: 500) == "none"
    assert pick(user_id="x", key_id="k1") == "user-x" and pick(user_id="x", key_id="k2") == "none"


class _Gate:
    """A DeploymentGate whose deployments are full or not as the test says."""

    def __init__(self, full: dict[str, float]) -> None:
        self.full = full
        self.entered: list[str] = []

    async def enter(self, dep, req, route):
        if dep.name in self.full:
            return self.full[dep.name]
        self.entered.append(dep.name)
        route.tickets = [*(route.tickets or ()), dep.name]
        return None


def _limited_router(gate: _Gate) -> Router:
    spec = ProviderSpec("p", "openai", "http://127.0.0.1:9/v1", "k", None, {}, {}, Timeouts())
    router = Router(HttpPool(), {"p": spec})
    router.add_alias("pair", [DeploymentSpec("p", "m", name="a", rpm=1, priority=0),
                              DeploymentSpec("p", "m", name="b", rpm=1, priority=1)],
                     policy=Policy(strategy="priority", fallbacks=("other",)))
    router.add_alias("other", [DeploymentSpec("p", "m", name="c")])  # declares no limit: never gated
    router.gate = gate
    return router


async def _answer(dep, req):
    return dep.name


async def test_a_deployment_at_its_own_limit_is_skipped_for_the_next():
    gate = _Gate({"a": 12.0})
    route = Route()
    assert await _limited_router(gate)._attempts(_req(model="pair"), route, _answer) == "b"
    assert gate.entered == ["b"] and route.tickets == ["b"] and route.attempts == 1


async def test_every_deployment_full_is_a_retryable_429_with_the_soonest_room():
    gate = _Gate({"a": 12.0, "b": 3.5})
    router = _limited_router(gate)
    router.groups["pair"].policy.fallbacks = ()
    with pytest.raises(GatewayError) as exc:
        await router._attempts(_req(model="pair"), Route(), _answer)
    err = exc.value
    assert err.status == 429 and err.code == "deployment_rate_limit" and err.retry_after == 3.5 and err.retryable


async def test_full_deployments_fall_back_to_another_alias():
    route = Route()
    assert await _limited_router(_Gate({"a": 1.0, "b": 1.0}))._attempts(_req(model="pair"), route, _answer) == "c"
    assert route.fallback == "other"


def test_weighted_picks_in_proportion_and_fails_over_to_every_other():
    from collections import Counter

    from sluice.routing.strategies import weighted

    a, b, c, spare = _Dep("a", weight=3), _Dep("b"), _Dep("c"), _Dep("spare", weight=0)
    deps = [a, b, c, spare]
    orders = [weighted(deps) for _ in range(5000)]
    firsts = Counter(o[0].name for o in orders)
    assert 0.55 < firsts["a"] / 5000 < 0.65 and 0.15 < firsts["b"] / 5000 < 0.25  # 3:1:1
    for order in orders:
        assert {d.name for d in order} == {"a", "b", "c", "spare"} and order[-1] is spare
    assert {tuple(d.name for d in o) for o in orders} == {("a", "b", "c", "spare"), ("b", "c", "a", "spare"),
                                                          ("c", "a", "b", "spare")}
    equal = [_Dep("x"), _Dep("y")]
    assert 0.4 < sum(weighted(equal)[0].name == "x" for _ in range(4000)) / 4000 < 0.6


async def test_a_lone_deployment_is_gated_only_when_reached_as_a_fallback():
    # Asked for directly, its alias's capacity (reserved before routing) already holds it exactly.
    gate = _Gate({})
    spec = ProviderSpec("p", "openai", "http://127.0.0.1:9/v1", "k", None, {}, {}, Timeouts())
    router = Router(HttpPool(), {"p": spec})
    router.add_alias("solo", [DeploymentSpec("p", "m", name="s", rpm=5)])
    router.add_alias("front", [DeploymentSpec("p", "m", name="f")], policy=Policy(fallbacks=("solo",)))
    router.gate = gate
    assert await router._attempts(_req(model="solo"), Route(), _answer) == "s"
    assert gate.entered == []

    async def front_fails(dep, req):
        if dep.name == "f":
            raise GatewayError("server_error", "down", status=500)
        return dep.name

    assert await router._attempts(_req(model="front"), Route(), front_fails) == "s"
    assert gate.entered == ["s"]
