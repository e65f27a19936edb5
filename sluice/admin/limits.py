"""The ``limits`` object of a key, team or user, and a key's priority: validation and normal form.

The shape is ``sluice.store.models.LIMITS_DOC``. The same pydantic models check the admin API's
bodies (so OpenAPI shows them) and the services' arguments (so the console and direct callers
get the same answers). What is stored is the normal form: fields left out or null are omitted,
an empty per-model entry or ``models`` map is dropped, and an object with no limit at all is
stored as null — one spelling for "no limits", whatever the caller sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.schema import GatewayError
from sluice.store.models import PRIORITIES

# A Literal over the tuple, so OpenAPI lists the classes and they stay those of the store.
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]

# Strict: "60" or 60.5 or true are mistakes in a limit, not values to coerce.
_COUNT = {"ge": 0, "strict": True}


class ModelLimits(BaseModel):
    """Limits of one (key, team or user; model alias) pair. Absent = no limit."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, description="Requests per minute.", **_COUNT)
    tpm: int | None = Field(None, description="Tokens per minute, input and output together.", **_COUNT)
    input_tpm: int | None = Field(None, description="Input (prompt) tokens per minute.", **_COUNT)
    output_tpm: int | None = Field(None, description="Output (completion) tokens per minute.", **_COUNT)
    concurrency: int | None = Field(None, description="Requests in flight at once.", **_COUNT)


class Limits(ModelLimits):
    """Limits of a key, team or user; windows slide over the last minute. Absent = no limit."""

    models: dict[str, ModelLimits] | None = Field(
        None, description="Per model alias, on top of the overall limits.",
        examples=[{"gpt-4o": {"rpm": 60, "tpm": 10000}}])


LIMIT_FIELDS = tuple(ModelLimits.model_fields)


def normal_form(limits: Limits | None) -> dict[str, Any] | None:
    """The JSON stored and shown: no null fields, no empty entries; None when nothing is limited."""
    if limits is None:
        return None
    result: dict[str, Any] = {name: value for name in LIMIT_FIELDS
                              if (value := getattr(limits, name)) is not None}
    per_model = {alias: entry.model_dump(exclude_none=True) for alias, entry in (limits.models or {}).items()}
    per_model = {alias: entry for alias, entry in per_model.items() if entry}
    if per_model:
        result["models"] = per_model
    return result or None


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """(param, message) of pydantic's first complaint, in the admin API's words."""
    path = ".".join(str(part) for part in error.get("loc", ()))
    param = f"limits.{path}" if path else "limits"
    if error.get("type") == "extra_forbidden":
        return param, f"{param}: unknown field; a limit is one of {', '.join(LIMIT_FIELDS)} (and models)"
    return param, f"{param}: {error.get('msg', 'invalid value')}"


def check_limits(value: Any) -> dict[str, Any] | None:
    """Validate a ``limits`` value (a dict, a ``Limits`` or None) into its normal form; 400 otherwise."""
    if value is None:
        return None
    if isinstance(value, Limits):
        return normal_form(value)
    if not isinstance(value, dict):
        raise GatewayError("invalid_request", "limits: expected an object", param="limits")
    models = value.get("models")
    for alias in models if isinstance(models, dict) else ():
        if not isinstance(alias, str) or not alias.strip():
            raise GatewayError("invalid_request", "limits.models: a model alias must be a non-empty string",
                               param="limits.models")
    try:
        return normal_form(Limits.model_validate(value))
    except ValidationError as exc:
        param, message = _describe(exc.errors()[0])
        raise GatewayError("invalid_request", message, param=param) from None


def check_priority(value: Any) -> str | None:
    """A key's priority class; None means the default class."""
    if value is None or value in PRIORITIES:
        return value
    raise GatewayError("invalid_request", f"priority must be one of {', '.join(PRIORITIES)}", param="priority")


__all__ = ["LIMIT_FIELDS", "Limits", "ModelLimits", "Priority", "check_limits", "check_priority", "normal_form"]
