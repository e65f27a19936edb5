"""GatewayError: the one error type every layer raises; the api layer renders it per dialect."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "timeout",
    "payload_too_large",
    "unprocessable",
    "rate_limit",
    "server_error",
    "overloaded",
    "upstream_unavailable",
    "context_window_exceeded",
    "content_policy",
]

DEFAULT_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "timeout": 408,
    "payload_too_large": 413,
    "unprocessable": 422,
    "rate_limit": 429,
    "server_error": 500,
    "overloaded": 529,
    "upstream_unavailable": 502,
    "context_window_exceeded": 400,
    "content_policy": 400,
}

_KIND_BY_STATUS = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "payload_too_large",
    422: "unprocessable",
    429: "rate_limit",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}


def kind_for_status(status: int) -> str:
    if status in _KIND_BY_STATUS:
        return _KIND_BY_STATUS[status]
    if status >= 500:
        return "server_error"
    return "invalid_request"


class GatewayError(Exception):
    """An error a client will see: a kind, an HTTP status and a message safe to show.

    ``retry_after`` (seconds) is echoed as a ``Retry-After`` header. ``retryable`` tells the
    router whether another attempt (same or other deployment) may succeed.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else DEFAULT_STATUS.get(kind, 500)
        self.retry_after = retry_after
        self.param = param
        self.code = code
        self.provider = provider

    @classmethod
    def from_status(cls, status: int, message: str, **kw) -> "GatewayError":
        return cls(kind_for_status(status), message, status=status, **kw)

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500 or self.kind in ("timeout", "upstream_unavailable")

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.status}, {self.message!r})"
