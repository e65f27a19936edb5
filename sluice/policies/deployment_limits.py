"""Deployments' own limits: each deployment's declared ``rpm``/``tpm`` (its upstream account's),
reserved per attempt through the call limits' limiter, and an alias's capacity summed from them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.policies.limits import Admission, Demand, LimiterUnavailable, Limits, Shape, _no_seed, _safe, rate_checks
from sluice.policies.tokens import encoding_ready, warm_up_for


@dataclass(slots=True)
class DeploymentTicket:
    """What one attempt reserved against its deployment's own limits; settled when the call ends."""

    deployment: str
    admission: Admission


class DeploymentLimits:
    """Each deployment's declared ``rpm``/``tpm`` (its upstream account's limits), reserved per
    attempt through the same limiter as every other limit — shared through Redis, so exact
    across instances. A deployment at its limit is skipped for the next one (the router's
    ``DeploymentGate``); the alias's summed capacity, checked before routing, keeps callers
    queueing while the alias as a whole is full.

    ``tokens(req, upstream_model)`` gives (input, output) tokens to reserve for a ``tpm`` limit.
    """

    def __init__(self, limits: Limits, tokens: Callable[[Any, str | None], tuple[int, int]]) -> None:
        self.limits = limits
        self._tokens = tokens

    async def enter(self, dep: Any, req: Any, route: Any) -> float | None:
        declared = {name: value for name in ("rpm", "tpm") if (value := getattr(dep, name, None))}
        tokens_in = tokens_out = 0
        if "tpm" in declared:
            model = dep.client.upstream.model
            if not encoding_ready(model):  # the first such call loads the tokenizer off the event loop
                await asyncio.to_thread(warm_up_for, model)
            tokens_in, tokens_out = self._tokens(req, model)
        demand = Demand(route.alias, tokens_in, tokens_out)
        planned = rate_checks(f"d:{_safe(dep.name)}", f"deployment {dep.name}", declared, demand)
        try:
            res = await self.limits._reserve([p.check for p in planned], _no_seed)
        except LimiterUnavailable:
            self.limits._limiter_down()  # raises under the closed policy; open: go ahead uncounted
            return None
        if not res.ok:
            self.limits.refusals["deployment_rate_limit"] += 1
            return res.retry_after
        route.tickets = [*(route.tickets or ()), DeploymentTicket(dep.name, Admission(demand, Shape(planned), res, report=False))]
        return None


def deployment_capacity(deployments: Sequence[Any]) -> dict[str, int]:
    """An alias's capacity: the sum of its deployments' rpm/tpm, when every deployment declares it."""
    capacity: dict[str, int] = {}
    for name in ("rpm", "tpm"):
        values = [getattr(d, name, None) for d in deployments]
        if values and all(v is not None for v in values):
            capacity[name] = sum(values)  # type: ignore[arg-type]
    return capacity


__all__ = ["DeploymentLimits", "DeploymentTicket", "deployment_capacity"]
