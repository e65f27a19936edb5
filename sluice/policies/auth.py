"""Who is calling: the auth stage. Issue-3 work (virtual keys, JWT) plugs in here."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sluice.schema import GatewayError


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as every later stage and the admin API see it.

    ``models`` is the allow-list in force (the key's narrowed by its team's); None = all.
    """

    kind: str  # "master" | "anonymous" | "key" | "jwt"
    id: str  # "master", "anonymous", the key id, or the user id for a JWT
    role: str = "admin"  # admin | team_admin | member | viewer
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    metadata: dict | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.kind in ("master", "anonymous"):
            return self.kind
        return f"{self.kind}:{self.id}"


ANONYMOUS = Principal("anonymous", "anonymous", role="anonymous")  # the admin API refuses it
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

    async def authenticate(self, credential: str | None) -> Principal:
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
