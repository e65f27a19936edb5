"""Bearer JWTs from an identity provider (OIDC): signature, times, audience, issuer → Principal.

Keys come from a static PEM public key or a JWKS URL. The JWKS is cached for
``jwks_cache_seconds``; a token naming a ``kid`` we do not hold triggers a refetch (the IdP
rotated its keys), at most once per ``min_refetch_seconds`` so a flood of forged ``kid``s
cannot turn the gateway into a load generator against the IdP. Concurrent fetches share one.

Only asymmetric algorithms are accepted. ``none`` and HS* are refused before any key is
touched: with a public key as the "secret", HS256 would let anyone who knows the public key
(everyone) mint tokens.

A JWT caller is not looked up in the ``users`` table: the token is the source of truth for
user, team and role, and ``Principal.user_id`` is the user claim (the IdP subject).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import jwt as pyjwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.models import ROLES

log = logging.getLogger("sluice.auth.jwt")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)


class JWTClaimNames(Protocol):
    user: str
    email: str
    team: str
    roles: str


class JWTSettings(Protocol):
    """What the verifier reads from ``sluice.config.JWTConfig`` (policies may not import config)."""

    jwks_url: str | None
    public_key: str | None
    issuer: str | None
    audience: str | list[str] | None
    algorithms: list[str]
    claims: JWTClaimNames
    jwks_cache_seconds: float
    leeway_seconds: float


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # a cryptography public key
    alg: str | None  # the JWK's declared "alg", if any


def _reject(reason: str, code: str) -> GatewayError:
    return GatewayError("authentication", f"Invalid token: {reason}.", code=code)


def allowed_algorithms(configured: Sequence[str]) -> frozenset[str]:
    """The configured list, refusing anything that is not a public-key signature algorithm."""
    bad = [a for a in configured if a not in ASYMMETRIC_ALGORITHMS]
    if bad:
        raise ValueError(f"auth.jwt.algorithms: {bad} not allowed; use public-key algorithms "
                         f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})")
    if not configured:
        raise ValueError("auth.jwt.algorithms: give at least one algorithm")
    return frozenset(configured)


def _fits(key: _Key, alg: str) -> bool:
    """Whether this key can verify this algorithm (a key never serves another family)."""
    if key.alg is not None and key.alg != alg:
        return False
    k = key.key
    if alg.startswith(("RS", "PS")):
        return isinstance(k, rsa.RSAPublicKey)
    if alg.startswith("ES"):
        return isinstance(k, ec.EllipticCurvePublicKey)
    return isinstance(k, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))


def parse_jwks(document: Any, algorithms: frozenset[str]) -> dict[str | None, _Key]:
    """kid → key for the usable signing keys of a JWKS; others (oct, enc, unknown alg) are skipped."""
    keys: dict[str | None, _Key] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise TypeError("JWKS has no 'keys' list")
    for jwk in entries:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg") is not None and jwk["alg"] not in algorithms:
            continue
        try:
            parsed = pyjwt.PyJWK(jwk)
        except pyjwt.PyJWTError as exc:
            log.debug("skipping JWK %r: %s", jwk.get("kid"), exc)
            continue
        keys[jwk.get("kid")] = _Key(parsed.key, jwk.get("alg"))
    return keys


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (e.g. Keycloak's ``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def pick_role(value: Any) -> str:
    """The most privileged of ROLES the claim names (order of ROLES); "member" if none."""
    named = set(_as_list(value))
    return next((role for role in ROLES if role in named), "member")


class JWTVerifier:
    def __init__(self, config: JWTSettings, *, min_refetch_seconds: float = 30.0,
                 fetch_timeout: float = 5.0) -> None:
        self.config = config
        self._algorithms = allowed_algorithms(config.algorithms)
        self._static = _Key(load_pem_public_key(config.public_key.encode()), None) if config.public_key else None
        self._keys: dict[str | None, _Key] = {}
        self._fetched_at = float("-inf")  # last successful JWKS fetch (monotonic)
        self._attempted_at = float("-inf")  # last attempt, successful or not
        self._min_refetch = min_refetch_seconds
        self._fetch_timeout = fetch_timeout
        self._inflight: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0  # JWKS requests made (observability, tests)

    async def verify(self, token: str) -> Principal:
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            raise _reject("malformed token", "malformed_token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise _reject("signing algorithm not allowed", "algorithm_not_allowed")
        key = await self._key_for(header.get("kid"), alg)
        return self._principal(self._decode(token, key, alg))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- keys ------------------------------------------------------------------------------

    async def _key_for(self, kid: Any, alg: str) -> _Key:
        if self._static is not None:
            if _fits(self._static, alg):
                return self._static
            raise _reject("unknown signing key", "unknown_signing_key")
        now = time.monotonic()
        if not self._keys or now - self._fetched_at > self.config.jwks_cache_seconds:
            await self._refresh(now)
        key = self._find(kid, alg)
        if key is None and kid not in self._keys:
            await self._refresh(time.monotonic())  # perhaps the IdP rotated keys
            key = self._find(kid, alg)
        if key is None:
            raise _reject("unknown signing key", "unknown_signing_key")
        return key

    def _find(self, kid: Any, alg: str) -> _Key | None:
        if kid is None:
            # No kid: acceptable only when exactly one key could have signed it.
            fitting = [k for k in self._keys.values() if _fits(k, alg)]
            return fitting[0] if len(fitting) == 1 else None
        key = self._keys.get(kid)
        return key if key is not None and _fits(key, alg) else None

    async def _refresh(self, now: float) -> None:
        """Fetch the JWKS unless one was attempted too recently; concurrent callers share one fetch."""
        if self._inflight is None:
            if now - self._attempted_at < self._min_refetch:
                if not self._keys:
                    raise GatewayError("server_error", "Identity provider keys are unavailable; try again shortly.",
                                       status=503, code="jwks_unavailable")
                return
            self._attempted_at = now
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._fetch_done)
        await asyncio.shield(self._inflight)

    def _fetch_done(self, task: asyncio.Task) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # consumed by the awaiters; avoid "exception never retrieved"

    async def _fetch(self) -> None:
        url = self.config.jwks_url
        self.fetches += 1
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._fetch_timeout))
            async with self._session.get(url, headers={"accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                keys = parse_jwks(orjson.loads(await resp.read()), self._algorithms)
        except Exception as exc:  # noqa: BLE001 — network, HTTP or JSON: all mean "no fresh keys"
            log.warning("JWKS fetch from %s failed: %s", url, exc)
            if not self._keys:
                raise GatewayError("server_error", "Identity provider keys are unavailable; try again shortly.",
                                   status=503, code="jwks_unavailable") from None
            return  # keep serving the keys we have
        self._keys = keys
        self._fetched_at = time.monotonic()

    # ---- claims ----------------------------------------------------------------------------

    def _decode(self, token: str, key: _Key, alg: str) -> dict[str, Any]:
        cfg = self.config
        try:
            return pyjwt.decode(
                token, key.key, algorithms=[alg], audience=cfg.audience, issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp"], "verify_aud": cfg.audience is not None},
            )
        except pyjwt.PyJWTError as exc:
            raise _decode_error(exc) from None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        names = self.config.claims
        user = _claim(claims, names.user)
        if user is None or user == "" or isinstance(user, (dict, list)):
            raise _reject(f"malformed token (no '{names.user}' claim)", "malformed_token")
        team = _claim(claims, names.team)
        if isinstance(team, list):
            team = team[0] if team else None
        email = _claim(claims, names.email)
        return Principal(
            kind="jwt", id=str(user), role=pick_role(_claim(claims, names.roles)),
            user_id=str(user), team_id=str(team) if team is not None else None,
            metadata={"email": email} if isinstance(email, str) else None,
        )


def _decode_error(exc: pyjwt.PyJWTError) -> GatewayError:
    """PyJWT's exception → the 401 a client can act on (most specific classes first)."""
    if isinstance(exc, pyjwt.ExpiredSignatureError):
        return _reject("token expired", "token_expired")
    if isinstance(exc, pyjwt.ImmatureSignatureError):
        return _reject("token not yet valid", "token_not_yet_valid")
    if isinstance(exc, pyjwt.InvalidAudienceError):
        return _reject("wrong audience", "wrong_audience")
    if isinstance(exc, pyjwt.InvalidIssuerError):
        return _reject("wrong issuer", "wrong_issuer")
    if isinstance(exc, pyjwt.MissingRequiredClaimError):
        if exc.claim == "aud":
            return _reject("wrong audience", "wrong_audience")
        if exc.claim == "iss":
            return _reject("wrong issuer", "wrong_issuer")
        return _reject(f"malformed token (no '{exc.claim}' claim)", "malformed_token")
    if isinstance(exc, pyjwt.InvalidSignatureError):
        return _reject("bad signature", "bad_signature")
    if isinstance(exc, pyjwt.InvalidAlgorithmError):
        return _reject("signing algorithm not allowed", "algorithm_not_allowed")
    if isinstance(exc, pyjwt.InvalidKeyError):
        return _reject("unknown signing key", "unknown_signing_key")
    return _reject("malformed token", "malformed_token")


__all__ = ["ASYMMETRIC_ALGORITHMS", "JWTSettings", "JWTVerifier", "allowed_algorithms", "parse_jwks", "pick_role"]
