"""Custom guardrail checks: an HTTP webhook, or a Python function named by an entry point.

Both see one text (the request's input or the model's answer) and answer with a verdict. Both
return a ``CheckOutcome`` (``sluice.policies.guardrails.outcome``): the ``Verdict``, the
replacement text when the verdict is ``redact``, and ``error`` when the check could not answer.

Webhook contract
----------------
Sluice sends ``POST <url>`` with ``Content-Type: application/json`` and any configured headers
(e.g. ``Authorization``), with this body::

    {
      "stage": "input" | "output",      # the request going up, or the answer coming back
      "text": "…",                      # the text to check
      "messages": [ … ],                # optional: the conversation, in Sluice's canonical shape:
                                        # {"role", "content": [{"type": "text", "text"}, …], …}
      "model": "gpt-4o",                # the model alias the client asked for
      "key_id": "…", "team_id": "…", "user_id": "…", "request_id": "…"   # null when unknown
    }

The webhook answers ``2xx`` with a JSON object::

    {
      "action": "allow" | "flag" | "redact" | "block",   # required
      "score": 0.93,                                      # optional number, default 0
      "reasons": ["mentions a competitor"],               # optional list of strings
      "text": "…"                                         # required with "redact": the text to use instead
    }

``allow`` lets the text through, ``flag`` lets it through and reports the verdict, ``redact``
replaces the text with ``text``, ``block`` refuses the request or the answer.

Anything else is a failure of the webhook: no answer within ``timeout`` seconds (default 2),
a connection error, a status outside 2xx (redirects are not followed), a body that is not such an
object, or a body over 8 MiB. The check's ``fail`` policy then decides: ``closed`` (the default)
blocks, ``open`` allows. Either way the outcome's ``error`` says what went wrong and the verdict's
first reason starts with ``webhook unavailable:``.

Python entry points
-------------------
``target: "package.module:function"`` (or ``module:Class.method``) is imported when the config
loads; a target that cannot be imported or is not callable is a config error. The function is
called as ``function(stage, text, context)``, where ``context`` holds ``model``, ``key_id``,
``team_id``, ``user_id``, ``request_id`` and possibly ``messages``. It may be ``async def`` or a
plain function (run on a worker thread so it cannot stall the gateway) and returns one of:

* a dict with the webhook's answer shape above;
* a ``Verdict`` (``sluice.policies.guardrails.engine``) or a ``CheckOutcome`` (for ``redact``);
* a bool: ``True`` allows, ``False`` blocks.

A function that raises, runs longer than ``timeout`` or returns anything else is handled by the
``fail`` policy as for a webhook. A plain function that times out keeps running on its thread
(Python cannot stop a thread); only its result is ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import math
from typing import Any, Literal, Mapping

import aiohttp
import msgspec
import orjson

from sluice.policies.guardrails.verdict import ACTIONS, Verdict
from sluice.policies.guardrails.outcome import CheckOutcome

Stage = Literal["input", "output"]
FailPolicy = Literal["open", "closed"]

CONTEXT_FIELDS = ("model", "key_id", "team_id", "user_id", "request_id")
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_REASONS, MAX_REASON_CHARS = 10, 300


class CheckFailure(Exception):
    """The check gave no usable answer; its message says why, without a stack trace."""


def _check_fail_policy(fail: str, timeout: float) -> None:
    if fail not in ("open", "closed"):
        raise ValueError(f"fail must be 'open' or 'closed', not {fail!r}")
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def failed(name: str, fail: FailPolicy, problem: str, what: str) -> CheckOutcome:
    """The outcome when a check could not answer: its fail policy decides."""
    if fail == "open":
        return CheckOutcome(Verdict(name, "allow", 0.0, (f"{what} unavailable: {problem}",)), error=problem)
    return CheckOutcome(Verdict(name, "block", 1.0, (f"{what} unavailable: {problem} (the check fails closed)",)),
                        error=problem)


def outcome_from_answer(name: str, answer: Any) -> CheckOutcome:
    """A webhook's or entry point's answer as an outcome; ``CheckFailure`` when it is malformed."""
    # Verdicts are relabelled with the configured name: the header then matches the config.
    if isinstance(answer, CheckOutcome):
        return dataclasses.replace(answer, verdict=dataclasses.replace(answer.verdict, check=name))
    if isinstance(answer, Verdict):
        if answer.action not in ACTIONS:
            raise CheckFailure(f"unknown action {answer.action!r}")
        if answer.action == "redact":
            raise CheckFailure("a 'redact' verdict needs its replacement text: return a dict or a CheckOutcome")
        return CheckOutcome(dataclasses.replace(answer, check=name))
    if isinstance(answer, bool):
        return CheckOutcome(Verdict(name, "allow")) if answer else \
            CheckOutcome(Verdict(name, "block", 1.0, (f"rejected by {name}",)))
    if isinstance(answer, Mapping):
        return _outcome_from_dict(name, answer)
    raise CheckFailure(f"expected a JSON object, a Verdict or a bool, got {type(answer).__name__}")


def _outcome_from_dict(name: str, answer: Mapping[str, Any]) -> CheckOutcome:
    action = answer.get("action")
    if action not in ACTIONS:
        raise CheckFailure(f"'action' must be one of {', '.join(ACTIONS)}, got {action!r}")
    score = answer.get("score", 0.0)
    if score is None:
        score = 0.0
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise CheckFailure(f"'score' must be a number, got {score!r}")
    reasons = answer.get("reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise CheckFailure("'reasons' must be a list of strings")
    # Reasons end up in error messages and logs: a few short ones, not whatever the hook sent.
    reasons = [r if len(r) <= MAX_REASON_CHARS else r[: MAX_REASON_CHARS - 1] + "…" for r in reasons[:MAX_REASONS]]
    replacement = answer.get("text")
    if action == "redact":
        if not isinstance(replacement, str):
            raise CheckFailure("'redact' needs the replacement 'text' (a string)")
    else:
        replacement = None  # only a redaction rewrites the text
    return CheckOutcome(Verdict(name, action, float(score), tuple(reasons)), replacement)


# ---------------------------------------------------------------------------------- webhook


class WebhookCheck:
    """POSTs each text to a webhook and turns its answer into an outcome (see the module docs)."""

    def __init__(self, url: str, *, timeout: float = 2.0, fail: FailPolicy = "closed",
                 headers: dict[str, str] | None = None, name: str = "webhook") -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be an http:// or https:// URL, not {url!r}")
        _check_fail_policy(fail, timeout)
        self.url, self.timeout, self.fail, self.name = url, float(timeout), fail, name
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # no headers: they usually hold a secret
        return f"WebhookCheck({self.url!r}, name={self.name!r}, fail={self.fail!r}, timeout={self.timeout})"

    async def run(self, stage: Stage, text: str, context: Mapping[str, Any]) -> CheckOutcome:
        # msgspec rather than orjson: "messages" may hold Sluice's own Message structs.
        body = msgspec.json.encode(webhook_payload(stage, text, context))
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._post(body)
            return outcome_from_answer(self.name, answer)
        except TimeoutError:
            problem = f"no answer within {self.timeout:g}s"
        except CheckFailure as exc:
            problem = str(exc)
        except Exception as exc:  # connection errors and whatever else: the fail policy decides, not a 500
            problem = _describe(exc)
        return failed(self.name, self.fail, problem, "webhook")

    async def _post(self, body: bytes) -> Any:
        session = self._client()
        async with session.post(self.url, data=body, headers=self.headers, allow_redirects=False) as resp:
            if not 200 <= resp.status < 300:
                raise CheckFailure(f"HTTP {resp.status}")
            raw = await _read_capped(resp, MAX_RESPONSE_BYTES)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CheckFailure("the answer is not JSON") from None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop; one pool for every call of this check.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def webhook_payload(stage: Stage, text: str, context: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"stage": stage, "text": text}
    if context.get("messages") is not None:
        payload["messages"] = context["messages"]
    for key in CONTEXT_FIELDS:
        payload[key] = context.get(key)
    return payload


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise CheckFailure(f"the answer is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise CheckFailure(f"the answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------ entry point


class EntryPointCheck:
    """Calls a Python function named ``"package.module:function"`` (see the module docs)."""

    def __init__(self, target: str, *, fail: FailPolicy = "closed", timeout: float = 2.0,
                 name: str | None = None) -> None:
        _check_fail_policy(fail, timeout)
        self.target = target
        self.function = resolve_entry_point(target)
        self.is_async = _is_async_callable(self.function)
        self.fail, self.timeout = fail, float(timeout)
        self.name = name or target.partition(":")[2]

    def __repr__(self) -> str:
        return f"EntryPointCheck({self.target!r}, name={self.name!r}, fail={self.fail!r}, timeout={self.timeout})"

    async def run(self, stage: Stage, text: str, context: Mapping[str, Any]) -> CheckOutcome:
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._call(stage, text, context)
            return outcome_from_answer(self.name, answer)
        except TimeoutError:
            problem = f"no answer within {self.timeout:g}s"
        except CheckFailure as exc:
            problem = str(exc)
        except Exception as exc:  # the function's own failure: the fail policy decides, we keep serving
            problem = _describe(exc)
        return failed(self.name, self.fail, problem, "entry point")

    async def _call(self, stage: Stage, text: str, context: Mapping[str, Any]) -> Any:
        if self.is_async:
            return await self.function(stage, text, context)
        answer = await asyncio.to_thread(self.function, stage, text, context)
        if inspect.isawaitable(answer):  # e.g. a functools.partial over an async function
            answer = await answer
        return answer

    async def close(self) -> None:
        """Nothing to release; here so every custom check has the same interface."""


def resolve_entry_point(target: str) -> Any:
    """The callable ``"package.module:attr.path"`` names; ``ValueError`` saying why when it cannot."""
    module_name, sep, attr_path = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"guardrail entry point {target!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failing while it runs
        raise ValueError(f"guardrail entry point {target!r}: cannot import {module_name!r} "
                         f"({type(exc).__name__}: {exc})") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"guardrail entry point {target!r}: {module_name!r} has no {attr_path!r}") from None
    if not callable(obj):
        raise ValueError(f"guardrail entry point {target!r} is a {type(obj).__name__}, not a callable")
    return obj


def _is_async_callable(obj: Any) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(getattr(obj, "__call__", None))


__all__ = ["CheckFailure", "EntryPointCheck", "WebhookCheck", "failed", "outcome_from_answer",
           "resolve_entry_point", "webhook_payload"]
