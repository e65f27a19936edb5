"""Who is calling: the auth stage. Issue-3 work (virtual keys, JWT) plugs in here."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sluice.schema import GatewayError


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "master" | "anonymous"
    id: str


ANONYMOUS = Principal("anonymous", "anonymous")
MASTER = Principal("master", "master")


class Authenticator:
    """With a master key set, every call must present it; without one the gateway is open.

    An open gateway is only allowed on loopback (enforced when the server starts), which is
    what a developer running ``sluice serve`` on a laptop expects.
    """

    def __init__(self, master_key: str | None) -> None:
        self._master = master_key.encode() if master_key else None

    @property
    def open(self) -> bool:
        return self._master is None

    def authenticate(self, credential: str | None) -> Principal:
        if self._master is None:
            return ANONYMOUS
        if not credential:
            raise GatewayError(
                "authentication",
                "Missing API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' on /v1/messages).",
                code="missing_api_key",
            )
        if hmac.compare_digest(credential.encode(), self._master):
            return MASTER
        raise GatewayError("authentication", "Invalid API key.", code="invalid_api_key")
