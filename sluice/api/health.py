"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sluice.api.http import JSONResponse


async def liveness(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readiness(request: Request) -> Response:
    gateway = request.app.state.gateway
    return JSONResponse({"status": "ready", "models": len(gateway.router.groups)})


async def deployments(request: Request) -> Response:
    """Each deployment's circuit state, latency, time to first token, error rate and load."""
    gateway = request.app.state.gateway
    rows = await gateway.router.health()
    if gateway.prober is not None:
        for row in rows:
            row["last_probe"] = gateway.prober.results.get(row["deployment"])
    return JSONResponse({"deployments": rows})
