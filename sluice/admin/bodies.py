"""Request and response bodies of the admin API (and the console), as its OpenAPI document shows them.

Secrets appear in exactly two responses: ``KeyWithSecret`` from create and rotate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluice.admin.limits import Limits, Priority
from sluice.store.models import BUDGET_PERIODS, BUDGET_SCOPES

T = TypeVar("T")

Role = str  # one of admin, team_admin, member, viewer (checked by the services)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListOf(BaseModel, Generic[T]):
    data: list[T]


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="e.g. permission_error, not_found_error, invalid_request_error")
    code: str | None = None
    param: str | None = Field(None, description="The request field at fault, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


LIMITS_HELP = ("Requests, tokens (total, input, output) per minute and requests in flight, overall and per model "
               "alias; absent = no limit.")
PRIORITY_HELP = "Queue class when a model is at capacity: interactive goes before default, default before batch."


# --- keys -------------------------------------------------------------------------------------

class KeyCreate(Body):
    name: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, description="Owner; a member may only name themselves.")
    team_id: str | None = Field(None, description="Defaults to the user's (or the caller's) team.")
    models: list[str] | None = Field(None, description="Model aliases allowed; null = all of the team's.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    expires_at: datetime | None = None
    duration: str | None = Field(None, description="Expires this long after creation: 30d, 12h, 90m, 2w.",
                                 examples=["30d"])
    limits: Limits | None = Field(None, description=LIMITS_HELP + " Admins and the team's admin only.")
    priority: Priority | None = Field(None, description=PRIORITY_HELP)


class KeyUpdate(Body):
    """Only the fields sent are changed; ``expires_at: null`` removes the expiry."""

    name: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    expires_at: datetime | None = None
    duration: str | None = None
    limits: Limits | None = Field(None, description="Replaces all the key's limits; null removes them.")
    priority: Priority | None = Field(None, description=PRIORITY_HELP)


class KeyRotate(Body):
    grace: str = Field("24h", description="How long the old key keeps working: 24h, 30m, 0s.")


class KeyOut(BaseModel):
    id: str
    key_prefix: str = Field(description="The first characters of the secret, to recognise it.")
    name: str | None
    user_id: str | None
    team_id: str | None
    models: list[str] | None
    metadata: dict[str, Any]
    tags: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None
    lineage: str | None = Field(None, description="The first key of its rotation chain (the key itself if never "
                                                  "rotated): its own limits and budgets count per lineage.")
    limits: dict[str, Any] | None = Field(None, description="The key's limits; null = none of its own.")
    priority: str | None = Field(None, description="Queue class under saturation; null = default.")
    created_at: datetime | None
    status: str = Field(description="active, revoked or expired")


class KeyDetail(KeyOut):
    limits_status: dict[str, Any] | None = Field(
        None, description="Current usage, remaining and reset time of each limit and budget that applies to the "
                          "key; null when the gateway has no limiter attached.")


class KeyWithSecret(KeyOut):
    key: str = Field(description="The secret. Shown in this response only; store it now.")


# --- teams and users --------------------------------------------------------------------------

class TeamCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    models: list[str] | None = Field(None, description="Model aliases the team's keys may use; null = all.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    limits: Limits | None = Field(None, description=LIMITS_HELP + " Shared by all the team's keys.")


class TeamUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    models: list[str] | None = None
    metadata: dict[str, Any] | None = None
    limits: Limits | None = Field(None, description="Replaces the team's limits; null removes them. Admin only.")


class TeamOut(BaseModel):
    id: str
    name: str
    models: list[str] | None
    metadata: dict[str, Any]
    limits: dict[str, Any] | None = None
    created_at: datetime | None


class MemberAdd(Body):
    user_id: str
    role: Role | None = Field(None, description="Also set the user's role (team_admin, member, viewer).")


class UserCreate(Body):
    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    role: Role = "member"
    team_id: str | None = None
    external_id: str | None = Field(None, max_length=300, description="The identity provider's subject.")
    limits: Limits | None = Field(None, description=LIMITS_HELP + " Shared by all the user's keys. Admin only.")


class UserUpdate(Body):
    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    team_id: str | None = None
    external_id: str | None = Field(None, max_length=300)
    limits: Limits | None = Field(None, description="Replaces the user's limits; null removes them. Admin only.")


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str | None
    role: str
    team_id: str | None
    external_id: str | None
    limits: dict[str, Any] | None = None
    created_at: datetime | None


# --- budgets ----------------------------------------------------------------------------------

BudgetScope = Literal[BUDGET_SCOPES]  # type: ignore[valid-type]
BudgetPeriod = Literal[BUDGET_PERIODS]  # type: ignore[valid-type]
USD = {"gt": 0, "allow_inf_nan": False}


class BudgetCreate(Body):
    scope: BudgetScope = Field(description="What the budget limits: key, team, user (by id), end_user (the "
                                           "application's end-user id), model (alias) or tag.")
    subject: str = Field(min_length=1, max_length=300, description="The key, team or user id; the end-user id, "
                                                                     "model alias or tag.")
    period: BudgetPeriod = Field("monthly", description="Calendar period in UTC; none = for all time.")
    max_usd: float = Field(description="Hard limit: calls are refused once spending reaches it.", **USD)
    soft_usd: float | None = Field(None, description="Alert threshold, at most max_usd.", **USD)
    name: str | None = Field(None, max_length=200)


class BudgetUpdate(Body):
    """Only the fields sent change; ``soft_usd: null`` removes the alert threshold."""

    max_usd: float | None = Field(None, **USD)
    soft_usd: float | None = Field(None, **USD)
    name: str | None = Field(None, max_length=200)
    period: BudgetPeriod | None = None


class BudgetOut(BaseModel):
    id: str
    scope: str
    subject: str
    period: str
    max_usd: float
    soft_usd: float | None
    name: str | None
    team_id: str | None = Field(description="The subject's team (tenant scoping); null for end-user, model and "
                                            "tag budgets.")
    created_at: datetime | None
    updated_at: datetime | None
    status: dict[str, Any] | None = Field(
        None, description="Spent, remaining and reset time in the current period; null when the gateway has no "
                          "budget tracker attached.")


# --- audit, usage, caller ---------------------------------------------------------------------

class AuditOut(BaseModel):
    id: int
    ts: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    team_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


class UsageTotals(BaseModel):
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0


class UsageRow(UsageTotals):
    group: str | None

    @field_validator("group", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        # Days come back as dates, other groups as ids or names; the API speaks text.
        return None if value is None else str(value)


class UsageReport(BaseModel):
    group_by: str
    start: datetime
    end: datetime
    rows: list[UsageRow]
    totals: UsageTotals


class Caller(BaseModel):
    kind: str
    id: str
    role: str
    key_id: str | None
    user_id: str | None
    team_id: str | None
