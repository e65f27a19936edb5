"""The admin API: ``/admin/…`` for keys, teams, users, budgets, the audit log and usage (OpenAPI at ``/docs``).

A FastAPI application of its own: it is not on the hot path, and its OpenAPI document is part
of the product. Every route resolves the caller from ``Authorization: Bearer`` and hands it to
the ``sluice.admin`` services, which enforce the role rules themselves. Errors are
``{"error": {"message", "type", "code"}}`` with the status of the ``GatewayError``, plus
``"param"`` (the field at fault) when the error names one.

Live figures (a key's current usage against its limits, a budget's spend) come from an optional
``LimitsView`` the gateway attaches; without one those fields are null.

Mounting into the gateway's Starlette app: ``routes += admin_routes(create_admin_app(...))``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice import admin
from sluice.admin.bodies import (AuditOut, BudgetCreate, BudgetOut, BudgetUpdate, Caller, ErrorBody, KeyCreate,
                                 KeyDetail, KeyOut, KeyRotate, KeyUpdate, KeyWithSecret, ListOf, MemberAdd, TeamCreate,
                                 TeamOut, TeamUpdate, UsageReport, UserCreate, UserOut, UserUpdate)
from sluice.api.http import REQUEST_ID_KEY, JSONResponse, bearer_token, new_request_id
from sluice.schema import GatewayError

log = logging.getLogger("sluice.admin")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((400, "Invalid request"), (401, "No admin credential"), (403, "Not allowed for your role"),
                         (404, "Not found, or outside your scope"), (409, "Conflicts with an existing object"))
}


class SupportsAuthenticate(Protocol):
    async def authenticate(self, credential: str | None) -> admin.Principal: ...


class LimitsView(Protocol):
    """Live state of limits and budgets, provided by the gateway's enforcement (``sluice.policies``).

    Both receive the admin API's view of the object (a dict as ``KeyOut`` / ``BudgetOut`` shows
    it) and return a JSON-safe dict, shown as-is.
    """

    async def key_status(self, key: dict[str, Any]) -> dict[str, Any]: ...

    async def budget_status(self, budget: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Call:
    """One admin request: the services it needs, the caller, and the request id for the audit log."""

    db: Any
    events: Any
    caller: admin.Principal
    request_id: str
    limits_view: LimitsView | None = None


# Declared so the OpenAPI document (and the "Authorize" button of /docs) knows the scheme;
# auto_error off: a missing credential gets the gateway's own 401, not FastAPI's 403.
_BEARER = HTTPBearer(auto_error=False, description="The master key or a virtual key / JWT of a user with a role.")


async def current_call(request: Request, _: Annotated[Any, Depends(_BEARER)] = None) -> Call:
    state = request.app.state
    principal = await state.authenticator.authenticate(bearer_token(request))
    admin.check_caller(principal)
    return Call(state.db, state.events, principal, request.scope[REQUEST_ID_KEY], state.limits_view)


CallDep = Annotated[Call, Depends(current_call)]
router = APIRouter(prefix="/admin", responses=ERROR_RESPONSES)


def create_admin_app(db: Any, authenticator: SupportsAuthenticate, events: Any | None = None,
                     limits_view: LimitsView | None = None, cache: Any | None = None) -> FastAPI:
    """``db``: ``sluice.store.db.Database``; ``events``: ``sluice.store.events.Events`` (or None);
    ``limits_view``: live limit and budget figures for key and budget responses (or None)."""
    app = FastAPI(title="Sluice admin API", version="1", docs_url=None, openapi_url="/openapi.json",
                  redoc_url=None,
                  description="Virtual keys, teams, users, limits, budgets, the audit log and usage of a "
                              "Sluice gateway. "
                              "Authenticate with `Authorization: Bearer <master key or an admin's key>`.")
    app.state.db, app.state.authenticator, app.state.events = db, authenticator, events
    app.state.limits_view = limits_view
    app.state.cache = cache  # sluice.policies.cache.ResponseCache, when the cache is enabled
    app.include_router(router)
    _add_docs(app)
    _add_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    return app


def admin_routes(app: ASGIApp) -> list[BaseRoute]:
    """Routes for a parent Starlette app that hand ``/admin/…``, ``/docs`` and ``/openapi.json`` to ``app``.

    A ``Route`` whose endpoint is an ASGI app passes the scope on unchanged, so the admin app
    sees the full path (a ``Mount`` would strip its prefix).
    """
    paths = ("/admin", "/admin/{rest:path}", "/docs", "/docs/{rest:path}", "/openapi.json")
    return [Route(path, endpoint=app) for path in paths]


def _add_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package: the docs work with no internet (no CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Sluice admin API",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/docs/static/favicon-32x32.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()


# --- errors and request ids -------------------------------------------------------------------

def error_body(err: GatewayError) -> dict[str, Any]:
    kind = err.kind if err.kind.endswith("error") else f"{err.kind}_error"  # server_error stays as it is
    detail: dict[str, Any] = {"message": err.message, "type": kind, "code": err.code}
    if err.param is not None:
        detail["param"] = err.param
    return {"error": detail}


def _add_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return JSONResponse(error_body(exc), status_code=exc.status)

    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
        problem = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid value")
        err = GatewayError("invalid_request", f"{where}: {problem}", code="invalid_value",
                           param=None if where == "request" else where)
        return JSONResponse(error_body(err), status_code=400)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "invalid_request"
        message = f"Unknown path {request.url.path}." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body(GatewayError(kind, message)), status_code=exc.status_code)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)


class RequestIdMiddleware:
    """Give every request an id (the caller's ``x-request-id`` if sane) and echo it; turn any
    unexpected exception into a JSON 500 that carries the id too.

    When the gateway's own request-context middleware already set and echoes the id, this
    only does the second part.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        echo: list[tuple[bytes, bytes]] = []
        if not scope.get(REQUEST_ID_KEY):
            given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
            scope[REQUEST_ID_KEY] = given if _VALID_ID.match(given) else new_request_id()
            echo.append((b"x-request-id", scope[REQUEST_ID_KEY].encode()))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *echo]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - a client never sees a stack trace
            log.exception("admin API failure", extra={"request_id": scope[REQUEST_ID_KEY]})
            if not started:
                body = error_body(GatewayError("server_error", "Internal error."))
                await JSONResponse(body, status_code=500)(scope, receive, send_with_id)


# --- routes -----------------------------------------------------------------------------------


@router.get("/whoami", response_model=Caller, tags=["caller"])
async def whoami(call: CallDep) -> Caller:
    """Who the presented credential is, as the admin API sees it."""
    p = call.caller
    return Caller(kind=p.kind, id=p.id, role=p.role, key_id=p.key_id, user_id=p.user_id, team_id=p.team_id)


@router.post("/keys", response_model=KeyWithSecret, status_code=201, tags=["keys"])
async def create_key(body: KeyCreate, call: CallDep) -> Any:
    """Create a virtual key. The secret (`key`) is in this response and nowhere else, ever."""
    view, secret = await admin.create_key(call.db, call.caller, admin.KeySpec(**body.model_dump()),
                                          request_id=call.request_id)
    return {**view, "key": secret}

@router.get("/keys", response_model=ListOf[KeyOut], tags=["keys"])
async def list_keys(call: CallDep, team_id: str | None = None, user_id: str | None = None,
                    status: str | None = Query(None, description="active, revoked or expired"),
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
    """Keys in your scope: all (admin), your team's (team admin, viewer) or your own (member)."""
    return {"data": await admin.list_keys(call.db, call.caller, team_id=team_id, user_id=user_id, status=status,
                                          limit=limit, offset=offset)}

@router.get("/keys/{key_id}", response_model=KeyDetail, tags=["keys"])
async def get_key(key_id: str, call: CallDep) -> Any:
    """One key, with `limits_status`: where it stands against every limit and budget that applies."""
    view = await admin.get_key(call.db, call.caller, key_id)
    status = await _live(call.limits_view.key_status(view), "key", key_id) if call.limits_view else None
    return {**view, "limits_status": status}

@router.patch("/keys/{key_id}", response_model=KeyOut, tags=["keys"])
async def update_key(key_id: str, body: KeyUpdate, call: CallDep) -> Any:
    """Change name, models, metadata, tags or expiry; only the fields sent change."""
    return await admin.update_key(call.db, call.caller, key_id, body.model_dump(exclude_unset=True),
                                  request_id=call.request_id, events=call.events)

@router.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["keys"])
async def revoke_key(key_id: str, call: CallDep) -> Any:
    """Revoke now; every gateway instance refuses the key within a second."""
    return await admin.revoke_key(call.db, call.caller, key_id, request_id=call.request_id, events=call.events)

@router.post("/keys/{key_id}/rotate", response_model=KeyWithSecret, status_code=201, tags=["keys"])
async def rotate_key(key_id: str, call: CallDep, body: KeyRotate | None = None) -> Any:
    """A new key with the same settings; the old one keeps working for `grace` (default 24h)."""
    grace = admin.parse_duration((body or KeyRotate()).grace, param="grace", allow_zero=True)
    view, secret = await admin.rotate_key(call.db, call.caller, key_id, grace=grace, request_id=call.request_id,
                                          events=call.events)
    return {**view, "key": secret}


@router.post("/teams", response_model=TeamOut, status_code=201, tags=["teams"])
async def create_team(body: TeamCreate, call: CallDep) -> Any:
    """Create a team (admin only)."""
    return await admin.create_team(call.db, call.caller, admin.TeamSpec(**body.model_dump()),
                                   request_id=call.request_id)

@router.get("/teams", response_model=ListOf[TeamOut], tags=["teams"])
async def list_teams(call: CallDep, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
    """All teams for an admin; your own team for anyone else."""
    return {"data": await admin.list_teams(call.db, call.caller, limit=limit, offset=offset)}

@router.get("/teams/{team_id}", response_model=TeamOut, tags=["teams"])
async def get_team(team_id: str, call: CallDep) -> Any:
    return await admin.get_team(call.db, call.caller, team_id)

@router.patch("/teams/{team_id}", response_model=TeamOut, tags=["teams"])
async def update_team(team_id: str, body: TeamUpdate, call: CallDep) -> Any:
    """Admins change anything; a team admin only their team's metadata."""
    return await admin.update_team(call.db, call.caller, team_id, body.model_dump(exclude_unset=True),
                                   request_id=call.request_id, events=call.events)

@router.delete("/teams/{team_id}", status_code=204, tags=["teams"])
async def delete_team(team_id: str, call: CallDep) -> Response:
    """Delete a team (admin only): its keys are revoked and its users left without a team."""
    await admin.delete_team(call.db, call.caller, team_id, request_id=call.request_id, events=call.events)
    return Response(status_code=204)


@router.get("/teams/{team_id}/members", response_model=ListOf[UserOut], tags=["teams"])
async def list_members(team_id: str, call: CallDep) -> Any:
    return {"data": await admin.list_members(call.db, call.caller, team_id)}

@router.post("/teams/{team_id}/members", response_model=UserOut, tags=["teams"])
async def add_member(team_id: str, body: MemberAdd, call: CallDep) -> Any:
    """Add a user to the team (a team admin: only users of no team); optionally set their role."""
    return await admin.add_member(call.db, call.caller, team_id, body.user_id, role=body.role,
                                  request_id=call.request_id, events=call.events)

@router.delete("/teams/{team_id}/members/{user_id}", response_model=UserOut, tags=["teams"])
async def remove_member(team_id: str, user_id: str, call: CallDep) -> Any:
    """Remove a user from the team; their keys in it are revoked."""
    return await admin.remove_member(call.db, call.caller, team_id, user_id, request_id=call.request_id,
                                     events=call.events)


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
async def create_user(body: UserCreate, call: CallDep) -> Any:
    """Admins create any user; a team admin creates non-admin users in their own team."""
    return await admin.create_user(call.db, call.caller, admin.UserSpec(**body.model_dump()),
                                   request_id=call.request_id)

@router.get("/users", response_model=ListOf[UserOut], tags=["users"])
async def list_users(call: CallDep, team_id: str | None = None, role: str | None = None,
                     limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
    return {"data": await admin.list_users(call.db, call.caller, team_id=team_id, role=role, limit=limit,
                                           offset=offset)}

@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
async def get_user(user_id: str, call: CallDep) -> Any:
    return await admin.get_user(call.db, call.caller, user_id)

@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
async def update_user(user_id: str, body: UserUpdate, call: CallDep) -> Any:
    return await admin.update_user(call.db, call.caller, user_id, body.model_dump(exclude_unset=True),
                                   request_id=call.request_id, events=call.events)

@router.delete("/users/{user_id}", status_code=204, tags=["users"])
async def delete_user(user_id: str, call: CallDep) -> Response:
    """Delete a user; all their keys are revoked first."""
    await admin.delete_user(call.db, call.caller, user_id, request_id=call.request_id, events=call.events)
    return Response(status_code=204)


async def _live(pending: Any, what: str, ident: str) -> dict[str, Any] | None:
    """A live figure, or null when the limiter cannot say (its Redis is down, say): the object's
    configuration is worth showing on its own."""
    try:
        return await pending
    except Exception:  # noqa: BLE001 - the admin answer must not depend on the limiter's health
        log.warning("no live status for %s %s", what, ident, exc_info=True)
        return None


async def _with_status(call: Call, budget: dict[str, Any]) -> dict[str, Any]:
    view = call.limits_view
    status = await _live(view.budget_status(budget), "budget", budget["id"]) if view else None
    return {**budget, "status": status}


@router.post("/budgets", response_model=BudgetOut, status_code=201, tags=["budgets"])
async def create_budget(body: BudgetCreate, call: CallDep) -> Any:
    """Create a budget. Admins: any scope; a team admin: budgets of their team's keys and users."""
    budget = await admin.create_budget(call.db, call.caller, admin.BudgetSpec(**body.model_dump()),
                                       request_id=call.request_id, events=call.events)
    return await _with_status(call, budget)

scope_doc = Query(None, description="key, team, user, end_user, model or tag")


@router.get("/budgets", response_model=ListOf[BudgetOut], tags=["budgets"])
async def list_budgets(call: CallDep, scope: str | None = scope_doc, subject: str | None = None,
                       team_id: str | None = None,
                       limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
    """Budgets in your scope, each with its live `status`."""
    budgets = await admin.list_budgets(call.db, call.caller, scope=scope, subject=subject, team_id=team_id,
                                       limit=limit, offset=offset)
    return {"data": await asyncio.gather(*(_with_status(call, budget) for budget in budgets))}

@router.get("/budgets/{budget_id}", response_model=BudgetOut, tags=["budgets"])
async def get_budget(budget_id: str, call: CallDep) -> Any:
    return await _with_status(call, await admin.get_budget(call.db, call.caller, budget_id))

@router.patch("/budgets/{budget_id}", response_model=BudgetOut, tags=["budgets"])
async def update_budget(budget_id: str, body: BudgetUpdate, call: CallDep) -> Any:
    """Change max_usd, soft_usd (null removes it), name or period; only the fields sent change."""
    budget = await admin.update_budget(call.db, call.caller, budget_id, body.model_dump(exclude_unset=True),
                                       request_id=call.request_id, events=call.events)
    return await _with_status(call, budget)

@router.delete("/budgets/{budget_id}", status_code=204, tags=["budgets"])
async def delete_budget(budget_id: str, call: CallDep) -> Response:
    await admin.delete_budget(call.db, call.caller, budget_id, request_id=call.request_id, events=call.events)
    return Response(status_code=204)


@router.get("/audit", response_model=ListOf[AuditOut], tags=["audit"])
async def audit(call: CallDep, team_id: str | None = None, actor: str | None = None, action: str | None = None,
                object_type: str | None = None, object_id: str | None = None, request_id: str | None = None,
                start: datetime | None = None, end: datetime | None = None,
                limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
    """Changes, newest first: all of them for an admin, their team's for a team admin."""
    query = admin.AuditQuery(team_id=team_id, actor=actor, action=action, object_type=object_type,
                             object_id=object_id, request_id=request_id, start=_utc(start), end=_utc(end),
                             limit=limit, offset=offset)
    return {"data": await admin.query_audit(call.db, call.caller, query)}


async def _usage(call: Call, group_by: str, start: datetime | None, end: datetime | None,
                 key_id: str | None, team_id: str | None, user_id: str | None) -> dict[str, Any]:
    f = admin.UsageFilter(group_by=group_by, start=start, end=end, key_id=key_id, team_id=team_id,
                          user_id=user_id)
    return await admin.usage_report(call.db, call.caller, f)


group_doc = Query("model", description=f"One of {', '.join(admin.GROUPS)}.")


@router.get("/usage", response_model=UsageReport, tags=["usage"],
            responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}})
async def usage(call: CallDep, group_by: str = group_doc, start: datetime | None = None,
                end: datetime | None = None, key_id: str | None = None, team_id: str | None = None,
                user_id: str | None = None, format: str = Query("json", pattern="^(json|csv)$")) -> Any:
    """Requests, errors, tokens and cost per group over [start, end) (default: the last 30 days)."""
    result = await _usage(call, group_by, start, end, key_id, team_id, user_id)
    return _csv(result) if format == "csv" else result


@router.get("/usage.csv", tags=["usage"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
async def usage_csv(call: CallDep, group_by: str = group_doc, start: datetime | None = None,
                    end: datetime | None = None, key_id: str | None = None, team_id: str | None = None,
                    user_id: str | None = None) -> Response:
    """The same as `/admin/usage?format=csv`."""
    return _csv(await _usage(call, group_by, start, end, key_id, team_id, user_id))


@router.get("/cache", tags=["cache"])
async def cache_report(request: Request, call: CallDep, start: datetime | None = None, end: datetime | None = None,
                       key_id: str | None = None, team_id: str | None = None,
                       user_id: str | None = None) -> dict[str, Any]:
    """The response cache's hit rate and the money it saved, per model, over [start, end) (default:
    the last 30 days), from the ledger; scoped like `/admin/usage`."""
    f = admin.UsageFilter("model", _utc(start), _utc(end), key_id, team_id, user_id)
    return await admin.cache_report(call.db, call.caller, f, request.app.state.cache)


@router.delete("/cache", tags=["cache"])
async def purge_cache(request: Request, call: CallDep, model: str | None = None, team_id: str | None = None,
                      key_id: str | None = None) -> dict[str, Any]:
    """Remove cached answers: of one model alias, one team's namespace or one key's (any combination of
    model with team or key). Admins purge anything; team admins their own team's entries."""
    return await admin.purge_cache(call.db, call.caller, request.app.state.cache, model=model, team_id=team_id,
                                   key_id=key_id, request_id=call.request_id)


def _csv(report: dict[str, Any]) -> Response:
    filename = f"usage-by-{report['group_by']}.csv"
    return Response(admin.usage_csv(report), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
