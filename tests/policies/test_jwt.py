"""Bearer JWTs: RSA keys generated here, a JWKS served by an aiohttp server on an ephemeral port."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import jwt as pyjwt
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluice.config import JWTConfig
from sluice.policies.auth import Authenticator
from sluice.policies.jwt import JWTVerifier, allowed_algorithms, pick_role
from sluice.schema import GatewayError

ISSUER = "https://idp.example.test/"
AUDIENCE = "sluice-gateway"


@pytest.fixture(scope="module")
def keys():
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("k1", "k2", "rogue")}


def public_pem(private) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwk(private, kid: str) -> dict:
    data = pyjwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


def token(private, kid: str | None = "k1", **overrides) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
              "email": "alice@example.com", "team": "team_red", "roles": ["member", "team_admin"]}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return pyjwt.encode(claims, private, algorithm="RS256", headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_parts(header: dict, claims: dict) -> str:
    return b64(orjson.dumps(header)) + "." + b64(orjson.dumps(claims))


def valid_claims() -> dict:
    now = int(time.time())
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "roles": ["admin"]}


class JWKSServer:
    def __init__(self) -> None:
        self.jwks: dict = {"keys": []}
        self.hits = 0
        self.status = 200
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(body=orjson.dumps(self.jwks), status=self.status, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"


@pytest_asyncio.fixture
async def idp(keys):
    server = JWKSServer()
    server.jwks = {"keys": [jwk(keys["k1"], "k1")]}
    await server.start()
    yield server
    await server.runner.cleanup()


def jwks_config(url: str, **extra) -> JWTConfig:
    return JWTConfig(jwks_url=url, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=5, **extra)


@pytest_asyncio.fixture
async def verifier(idp):
    v = JWTVerifier(jwks_config(idp.url), min_refetch_seconds=0.3)
    yield v
    await v.close()


async def rejected(v: JWTVerifier, credential: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await v.verify(credential)
    assert info.value.status == 401 and info.value.kind == "authentication"
    return info.value


async def test_valid_token_to_principal(verifier, keys):
    p = await verifier.verify(token(keys["k1"]))
    assert (p.kind, p.id, p.user_id) == ("jwt", "alice", "alice")
    assert p.role == "team_admin"  # the most privileged of the roles named
    assert p.team_id == "team_red" and p.metadata == {"email": "alice@example.com"}
    assert p.actor == "jwt:alice" and p.key_id is None and p.models is None


# Times are offsets from when the test runs, not from collection: in a slow suite a "future"
# nbf computed at collection has passed by the time the test runs.
NOW = object()


@pytest.mark.parametrize("overrides, reason, code", [
    ({"exp": (NOW, -60)}, "token expired", "token_expired"),
    ({"nbf": (NOW, 120)}, "token not yet valid", "token_not_yet_valid"),
    ({"iat": (NOW, 120)}, "token not yet valid", "token_not_yet_valid"),
    ({"aud": "someone-else"}, "wrong audience", "wrong_audience"),
    ({"aud": None}, "wrong audience", "wrong_audience"),
    ({"iss": "https://evil.example/"}, "wrong issuer", "wrong_issuer"),
    ({"iss": None}, "wrong issuer", "wrong_issuer"),
    ({"exp": None}, "malformed token (no 'exp' claim)", "malformed_token"),
    ({"sub": None}, "malformed token (no 'sub' claim)", "malformed_token"),
])
async def test_each_claim_failure(verifier, keys, overrides, reason, code):
    overrides = {k: int(time.time()) + v[1] if isinstance(v, tuple) and v[0] is NOW else v
                 for k, v in overrides.items()}
    err = await rejected(verifier, token(keys["k1"], **overrides))
    assert err.code == code
    assert err.message == f"Invalid token: {reason}."


async def test_leeway_accepts_small_clock_skew(verifier, keys):
    assert (await verifier.verify(token(keys["k1"], exp=int(time.time()) - 2))).id == "alice"


async def test_signature_and_key_failures(verifier, keys):
    forged = token(keys["rogue"], kid="k1")  # claims to be k1, signed by someone else
    assert (await rejected(verifier, forged)).code == "bad_signature"

    head, _body, sig = token(keys["k1"]).split(".")
    tampered_body = b64(orjson.dumps({**pyjwt.decode(token(keys["k1"]), options={"verify_signature": False}),
                                      "roles": ["admin"]}))
    assert (await rejected(verifier, f"{head}.{tampered_body}.{sig}")).code == "bad_signature"

    err = await rejected(verifier, token(keys["rogue"], kid="nobody"))
    assert (err.code, err.message) == ("unknown_signing_key", "Invalid token: unknown signing key.")

    for garbage in ("abc.def.ghi", "not-a-token", ""):
        err = await rejected(verifier, garbage)
        assert (err.code, err.message) == ("malformed_token", "Invalid token: malformed token.")


async def test_alg_none_refused(verifier, keys):
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": "k1"}, {"alg": "None"}):
        err = await rejected(verifier, unsigned_parts(header, valid_claims()) + ".")
        assert err.code == "algorithm_not_allowed"


def hs256_with_public_key(pem: str, kid: str | None = "k1") -> str:
    """The classic confusion attack: HMAC "signed" with the (public) verification key."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = unsigned_parts(header, valid_claims())
    sig = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


async def test_hs256_with_public_key_refused(verifier, keys):
    err = await rejected(verifier, hs256_with_public_key(public_pem(keys["k1"])))
    assert err.code == "algorithm_not_allowed"
    static = JWTVerifier(JWTConfig(public_key=public_pem(keys["k1"]), algorithms=["RS256", "ES256"]))
    err = await rejected(static, hs256_with_public_key(public_pem(keys["k1"]), kid=None))
    assert err.code == "algorithm_not_allowed"


def test_symmetric_or_none_algorithms_refused_in_config():
    for bad in (["HS256"], ["RS256", "none"], ["HS512", "RS256"], []):
        with pytest.raises(ValueError):
            allowed_algorithms(bad)
    with pytest.raises(ValueError):
        JWTVerifier(JWTConfig(jwks_url="http://127.0.0.1:1/jwks", algorithms=["HS256"]))
    assert allowed_algorithms(["RS256", "ES256"]) == {"RS256", "ES256"}


async def test_jwks_cached_and_concurrent_fetches_coalesced(idp, keys):
    idp.delay = 0.1  # a slow IdP: every caller below arrives while the first fetch is in flight
    v = JWTVerifier(jwks_config(idp.url))
    try:
        principals = await asyncio.gather(*(v.verify(token(keys["k1"], sub=f"u{i}")) for i in range(20)))
        assert [p.id for p in principals] == [f"u{i}" for i in range(20)]
        assert idp.hits == 1
        for _ in range(30):
            await v.verify(token(keys["k1"]))
        assert idp.hits == 1 and v.fetches == 1
    finally:
        await v.close()


async def test_jwks_cache_expires(idp, keys):
    v = JWTVerifier(jwks_config(idp.url, jwks_cache_seconds=0.2), min_refetch_seconds=0.0)
    try:
        await v.verify(token(keys["k1"]))
        await asyncio.sleep(0.25)
        await v.verify(token(keys["k1"]))
        assert idp.hits == 2
    finally:
        await v.close()


async def test_key_rotation_picked_up_with_throttled_refetch(verifier, idp, keys):
    assert (await verifier.verify(token(keys["k1"]))).id == "alice"
    assert idp.hits == 1
    idp.jwks = {"keys": [jwk(keys["k2"], "k2")]}  # the IdP rotates: k1 retired, k2 in use

    # Right after a fetch an unknown kid does not trigger another (anti-hammering) ...
    assert (await rejected(verifier, token(keys["k2"], kid="k2"))).code == "unknown_signing_key"
    assert idp.hits == 1
    await asyncio.sleep(0.35)
    # ... but once the minimum interval has passed it does, and the new key is used.
    assert (await verifier.verify(token(keys["k2"], kid="k2", sub="bob"))).id == "bob"
    assert idp.hits == 2
    # The retired key is gone; a burst of unknown kids costs at most one fetch per interval.
    for _ in range(10):
        assert (await rejected(verifier, token(keys["k1"]))).code == "unknown_signing_key"
    assert idp.hits == 2


async def test_token_without_kid_uses_the_only_key(verifier, keys, idp):
    assert (await verifier.verify(token(keys["k1"], kid=None))).id == "alice"
    idp.jwks = {"keys": [jwk(keys["k1"], "k1"), jwk(keys["k2"], "k2")]}
    await asyncio.sleep(0.35)
    # With two candidate keys a kid-less token is ambiguous, so it is refused.
    assert (await verifier.verify(token(keys["k2"], kid="k2"))).id == "alice"  # refetch picks up both
    assert (await rejected(verifier, token(keys["k1"], kid=None))).code == "unknown_signing_key"


async def test_jwks_unreachable_is_503(keys):
    v = JWTVerifier(jwks_config("http://127.0.0.1:1/jwks.json"), fetch_timeout=1.0)
    try:
        with pytest.raises(GatewayError) as info:
            await v.verify(token(keys["k1"]))
        assert (info.value.status, info.value.code) == (503, "jwks_unavailable")
    finally:
        await v.close()


async def test_jwks_failure_keeps_serving_known_keys(idp, keys):
    v = JWTVerifier(jwks_config(idp.url, jwks_cache_seconds=0.1), min_refetch_seconds=0.0)
    try:
        await v.verify(token(keys["k1"]))
        idp.status = 500
        await asyncio.sleep(0.15)
        assert (await v.verify(token(keys["k1"]))).id == "alice"
        assert idp.hits == 2
    finally:
        await v.close()


async def test_static_public_key(keys):
    v = JWTVerifier(JWTConfig(public_key=public_pem(keys["k1"]), issuer=ISSUER, audience=AUDIENCE))
    assert (await v.verify(token(keys["k1"], kid=None))).id == "alice"
    assert (await rejected(v, token(keys["rogue"], kid=None))).code == "bad_signature"
    assert (await rejected(v, token(keys["k1"], exp=int(time.time()) - 600))).code == "token_expired"
    # An EC-signed token cannot be checked with an RSA key, even if ES256 is allowed.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    es = pyjwt.encode(valid_claims(), ec_key, algorithm="ES256")
    v2 = JWTVerifier(JWTConfig(public_key=public_pem(keys["k1"]), algorithms=["RS256", "ES256"]))
    assert (await rejected(v2, es)).code == "unknown_signing_key"


async def test_claim_mapping_is_configurable(keys):
    cfg = JWTConfig(public_key=public_pem(keys["k1"]),
                    claims={"user": "preferred_username", "team": "groups", "roles": "realm_access.roles"})
    v = JWTVerifier(cfg)
    t = token(keys["k1"], kid=None, preferred_username="carol", groups=["team_blue", "team_green"],
              realm_access={"roles": ["offline_access", "viewer"]}, aud=None, iss=None)
    p = await v.verify(t)
    assert (p.id, p.team_id, p.role) == ("carol", "team_blue", "viewer")


def test_pick_role():
    assert pick_role(["viewer", "admin"]) == "admin"
    assert pick_role("member team_admin") == "team_admin"
    assert pick_role("viewer,member") == "member"
    assert pick_role(["superuser"]) == "member"
    assert pick_role(None) == "member"


async def test_authenticator_routes_jwts(keys):
    v = JWTVerifier(JWTConfig(public_key=public_pem(keys["k1"]), issuer=ISSUER, audience=AUDIENCE))
    auth = Authenticator("mk-" + "x" * 40, jwt=v)
    assert not auth.open
    p = await auth.authenticate(token(keys["k1"]))
    assert (p.kind, p.id) == ("jwt", "alice")
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(token(keys["k1"], exp=int(time.time()) - 600))
    assert info.value.code == "token_expired"
    with pytest.raises(GatewayError) as info:
        await auth.authenticate("plainly-wrong")
    assert info.value.code == "invalid_api_key"
    # Without a verifier a JWT is just a wrong key.
    with pytest.raises(GatewayError) as info:
        await Authenticator("mk-" + "x" * 40).authenticate(token(keys["k1"]))
    assert info.value.code == "invalid_api_key"
    await auth.close()
