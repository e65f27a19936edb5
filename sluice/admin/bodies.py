"""Request and response bodies of the admin API (and the console), as its OpenAPI document shows them.

Secrets appear in exactly two responses: ``KeyWithSecret`` from create and rotate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class ErrorBody(BaseModel):
    error: ErrorDetail


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


class KeyUpdate(Body):
    """Only the fields sent are changed; ``expires_at: null`` removes the expiry."""

    name: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    expires_at: datetime | None = None
    duration: str | None = None


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
    created_at: datetime | None
    status: str = Field(description="active, revoked or expired")


class KeyWithSecret(KeyOut):
    key: str = Field(description="The secret. Shown in this response only; store it now.")


# --- teams and users --------------------------------------------------------------------------

class TeamCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    models: list[str] | None = Field(None, description="Model aliases the team's keys may use; null = all.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class TeamUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    models: list[str] | None = None
    metadata: dict[str, Any] | None = None


class TeamOut(BaseModel):
    id: str
    name: str
    models: list[str] | None
    metadata: dict[str, Any]
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


class UserUpdate(Body):
    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    team_id: str | None = None
    external_id: str | None = Field(None, max_length=300)


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str | None
    role: str
    team_id: str | None
    external_id: str | None
    created_at: datetime | None


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
