"""Custom guardrail checks: a webhook served by a real aiohttp server on an ephemeral port, and
Python entry points imported by name from tests/policies/guardrail_entrypoints.py."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from sluice.policies.guardrails.custom import EntryPointCheck, WebhookCheck
from sluice.policies.guardrails.outcome import CheckOutcome
from sluice.schema import Message, TextPart

CONTEXT = {"model": "gpt-4o", "key_id": "k1", "team_id": "t1", "user_id": "u1", "request_id": "req-1"}


class WebhookServer:
    """Answers by path, so each test picks a behaviour by URL; records what it received."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.peers: list[tuple] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        self.peers.append(request.transport.get_extra_info("peername"))
        kind = request.match_info["kind"]
        if kind == "echo":
            action = "block" if "forbidden" in body["text"] else "allow"
            return web.json_response({"action": action, "score": 0.8 if action == "block" else 0.0,
                                      "reasons": ["forbidden word"] if action == "block" else []})
        if kind == "flag":
            return web.json_response({"action": "flag", "score": 0.3, "reasons": ["borderline"]})
        if kind == "redact":
            return web.json_response({"action": "redact", "text": body["text"].replace("secret", "[gone]"),
                                      "reasons": ["secret"]})
        if kind == "slow":
            await asyncio.sleep(1.0)  # well past the checks' 0.3 s timeout
            return web.json_response({"action": "allow"})
        if kind == "error":
            return web.Response(status=500, text="internal error")
        if kind == "garbage":
            return web.Response(status=200, body=b"<html>not json", content_type="text/html")
        if kind == "list":
            return web.json_response(["allow"])
        if kind == "bad-action":
            return web.json_response({"action": "maybe"})
        if kind == "bad-score":
            return web.json_response({"action": "flag", "score": "high"})
        if kind == "redact-without-text":
            return web.json_response({"action": "redact"})
        if kind == "redirect":
            raise web.HTTPTemporaryRedirect(location="/hook/echo")
        raise web.HTTPNotFound()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{kind}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"


@pytest_asyncio.fixture
async def server():
    s = WebhookServer()
    await s.start()
    yield s
    await s.runner.cleanup()


@pytest_asyncio.fixture
async def checks():
    """Builds webhook checks and closes them all when the test ends."""
    made: list[WebhookCheck] = []

    def make(url: str, **kw) -> WebhookCheck:
        check = WebhookCheck(url, **kw)
        made.append(check)
        return check

    yield make
    for check in made:
        await check.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ webhook


async def test_webhook_allow_sends_the_documented_payload(server, checks):
    check = checks(f"{server.base}/echo", headers={"Authorization": "Bearer hook-secret"})
    out = await check.run("input", "hello there", {**CONTEXT, "messages": [{"role": "user", "content": "hello"}]})
    assert out == CheckOutcome(out.verdict) and out.verdict.action == "allow" and out.verdict.check == "webhook"
    assert out.error is None and out.replacement is None
    assert server.received == [{"stage": "input", "text": "hello there",
                                "messages": [{"role": "user", "content": "hello"}], **CONTEXT}]
    assert server.headers[0]["Authorization"] == "Bearer hook-secret"
    assert server.headers[0]["Content-Type"] == "application/json"
    assert "hook-secret" not in repr(check)


async def test_webhook_payload_without_messages_or_ids(server, checks):
    out = await checks(f"{server.base}/echo").run("output", "an answer", {"model": "m"})
    assert out.verdict.action == "allow"
    assert server.received == [{"stage": "output", "text": "an answer", "model": "m", "key_id": None,
                                "team_id": None, "user_id": None, "request_id": None}]


async def test_webhook_block_and_flag(server, checks):
    out = await checks(f"{server.base}/echo", name="policy-hook").run("input", "a forbidden thing", CONTEXT)
    assert out.verdict.check == "policy-hook" and out.verdict.action == "block"
    assert out.verdict.score == 0.8 and out.verdict.reasons == ("forbidden word",)
    assert out.blocked and out.error is None
    flagged = await checks(f"{server.base}/flag").run("output", "hmm", CONTEXT)
    assert (flagged.verdict.action, flagged.verdict.score, flagged.verdict.reasons) == ("flag", 0.3, ("borderline",))


async def test_webhook_redact_gives_the_replacement(server, checks):
    out = await checks(f"{server.base}/redact").run("output", "the secret is out", CONTEXT)
    assert out.verdict.action == "redact" and out.replacement == "the [gone] is out"


async def test_webhook_reuses_one_pooled_connection(server, checks):
    check = checks(f"{server.base}/echo")
    for _ in range(3):
        assert (await check.run("input", "x", CONTEXT)).verdict.action == "allow"
    assert len(server.peers) == 3 and len(set(server.peers)) == 1  # keep-alive: one client socket
    await check.close()
    assert (await check.run("input", "x", CONTEXT)).verdict.action == "allow"  # reopens after close


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_webhook_timeout_follows_the_fail_policy(server, checks, fail):
    started = time.monotonic()
    out = await checks(f"{server.base}/slow", timeout=0.3, fail=fail).run("input", "x", CONTEXT)
    assert time.monotonic() - started < 1.5
    assert out.error == "no answer within 0.3s"
    assert out.verdict.reasons[0].startswith("webhook unavailable: no answer within 0.3s")
    if fail == "open":
        assert (out.verdict.action, out.verdict.score) == ("allow", 0.0)
    else:
        assert out.verdict.action == "block" and "fails closed" in out.verdict.reasons[0]


@pytest.mark.parametrize("kind, problem", [
    ("error", "HTTP 500"),
    ("garbage", "the answer is not JSON"),
    ("list", "expected a JSON object"),
    ("bad-action", "'action' must be one of"),
    ("bad-score", "'score' must be a number"),
    ("redact-without-text", "'redact' needs the replacement 'text'"),
    ("redirect", "HTTP 307"),
    ("missing", "HTTP 404"),
])
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_webhook_bad_answers_follow_the_fail_policy(server, checks, kind, problem, fail):
    out = await checks(f"{server.base}/{kind}", fail=fail).run("output", "x", CONTEXT)
    assert out.error is not None and problem in out.error
    assert out.verdict.action == ("allow" if fail == "open" else "block")
    assert out.verdict.reasons[0].startswith(f"webhook unavailable: {out.error}")
    assert out.replacement is None


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_webhook_connection_refused(checks, fail):
    out = await checks(f"http://127.0.0.1:{closed_port()}/hook", fail=fail, timeout=1.0).run("input", "x", CONTEXT)
    assert out.error is not None and "Connect" in out.error
    assert out.verdict.action == ("allow" if fail == "open" else "block")


def test_webhook_config_errors():
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookCheck("ftp://example.com/hook")
    with pytest.raises(ValueError, match="fail must be"):
        WebhookCheck("http://example.com/hook", fail="sometimes")
    with pytest.raises(ValueError, match="timeout"):
        WebhookCheck("http://example.com/hook", timeout=0)


# -------------------------------------------------------------------------------- entry point


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


MOD = "guardrail_entrypoints"


async def test_entry_point_sync_dict(on_path):
    import guardrail_entrypoints

    check = EntryPointCheck(f"{MOD}:keyword_sync")
    assert check.name == "keyword_sync" and not check.is_async
    allowed = await check.run("input", "fine text", CONTEXT)
    assert allowed.verdict.action == "allow" and allowed.verdict.check == "keyword_sync"
    blocked = await check.run("output", "forbidden text", CONTEXT)
    assert (blocked.verdict.action, blocked.verdict.score, blocked.verdict.reasons) == \
        ("block", 0.9, ("output says forbidden",))
    assert guardrail_entrypoints.calls[-1] == ("output", "forbidden text", CONTEXT)


async def test_entry_point_async_redact(on_path):
    check = EntryPointCheck(f"{MOD}:redact_async", name="scrub")
    assert check.is_async
    out = await check.run("output", "my secret", CONTEXT)
    assert (out.verdict.check, out.verdict.action, out.replacement) == ("scrub", "redact", "my [removed]")


async def test_entry_point_verdict_outcome_and_bool_answers(on_path):
    flagged = await EntryPointCheck(f"{MOD}:verdict_sync", name="mine").run("input", "x", CONTEXT)
    assert (flagged.verdict.check, flagged.verdict.action, flagged.verdict.reasons) == ("mine", "flag", ("team t1",))
    upper = await EntryPointCheck(f"{MOD}:outcome_redact").run("output", "abc", CONTEXT)
    assert (upper.verdict.check, upper.replacement) == ("outcome_redact", "ABC")
    check = EntryPointCheck(f"{MOD}:bool_check")
    assert (await check.run("input", "yes please", CONTEXT)).verdict.action == "allow"
    refused = await check.run("input", "no way", CONTEXT)
    assert refused.verdict.action == "block" and refused.verdict.reasons == ("rejected by bool_check",)
    nested = await EntryPointCheck(f"{MOD}:Checks.nested").run("input", "x", CONTEXT)
    assert nested.verdict.reasons == ("nested",)


@pytest.mark.parametrize("target, problem", [
    ("raising", "RuntimeError: the classifier is down"),
    ("returns_none", "got NoneType"),
    ("redact_verdict_without_text", "needs its replacement text"),
])
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_entry_point_failures_follow_the_fail_policy(on_path, target, problem, fail):
    out = await EntryPointCheck(f"{MOD}:{target}", fail=fail).run("input", "x", CONTEXT)
    assert out.error is not None and problem in out.error
    assert out.verdict.action == ("allow" if fail == "open" else "block")
    assert out.verdict.reasons[0].startswith("entry point unavailable:")


@pytest.mark.parametrize("target", ["slow_sync", "slow_async"])
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_entry_point_timeout(on_path, target, fail):
    started = time.monotonic()
    out = await EntryPointCheck(f"{MOD}:{target}", fail=fail, timeout=0.2).run("input", "x", CONTEXT)
    assert time.monotonic() - started < 0.5
    assert out.error == "no answer within 0.2s"
    assert out.verdict.action == ("allow" if fail == "open" else "block")


async def test_a_slow_sync_entry_point_does_not_block_the_loop(on_path):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await EntryPointCheck(f"{MOD}:slow_sync", timeout=2.0).run("input", "x", CONTEXT)
    task.cancel()
    assert ticks >= 20  # the loop kept running during the 0.6 s the function slept


@pytest.mark.parametrize("target, message", [
    ("no_colon_here", "must look like 'package.module:function'"),
    (f"{MOD}:", "must look like"),
    ("sluice_no_such_module_xyz:check", "cannot import 'sluice_no_such_module_xyz'"),
    (f"{MOD}:missing", f"'{MOD}' has no 'missing'"),
    (f"{MOD}:Checks.missing", "has no 'Checks.missing'"),
    (f"{MOD}:NOT_CALLABLE", "is a int, not a callable"),
])
def test_entry_point_bad_targets_fail_at_config_time(on_path, target, message):
    with pytest.raises(ValueError, match="guardrail entry point") as err:
        EntryPointCheck(target)
    assert message in str(err.value)


def test_webhook_payload_without_messages():
    from sluice.policies.guardrails.custom import webhook_payload

    payload = webhook_payload("input", "é ✓", {**CONTEXT, "messages": None})
    assert "messages" not in payload and payload["text"] == "é ✓"


async def test_webhook_sends_canonical_messages(server, checks):
    messages = [Message(role="user", content=[TextPart(text="hi é")])]
    await checks(f"{server.base}/echo").run("input", "hi é", {**CONTEXT, "messages": messages})
    assert server.received[0]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi é"}]}]


def test_webhook_reasons_are_capped():
    from sluice.policies.guardrails.custom import outcome_from_answer

    out = outcome_from_answer("hook", {"action": "flag", "reasons": ["x" * 1000] * 50})
    assert len(out.verdict.reasons) == 10 and all(len(r) == 300 for r in out.verdict.reasons)
