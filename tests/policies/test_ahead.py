"""AdmissionAhead: one answer, told once, shared by every attempt that awaits it."""

from __future__ import annotations

import asyncio

import pytest

from sluice.policies.ahead import AdmissionAhead
from sluice.schema import GatewayError


def tracked(pending) -> tuple[AdmissionAhead, list, list]:
    admitted: list = []
    refused: list = []
    return AdmissionAhead(pending, admitted.append, refused.append), admitted, refused


async def test_an_admission_is_told_once_and_shared_by_attempts_that_wait_together():
    reply = asyncio.get_running_loop().create_future()

    async def pending():
        return await reply

    ahead, admitted, refused = tracked(pending())
    assert not ahead.started
    waiters = [asyncio.ensure_future(_await(ahead)) for _ in range(3)]  # a hedge's attempts
    await asyncio.sleep(0)
    assert ahead.started and not any(w.done() for w in waiters)
    reply.set_result("admission")
    await asyncio.gather(*waiters)
    await ahead  # a later attempt (a retry) does not wait again
    assert admitted == ["admission"] and refused == [] and not ahead.refused


async def test_a_refusal_is_raised_to_every_attempt_and_told_once():
    reply = asyncio.get_running_loop().create_future()
    err = GatewayError("rate_limited", "over the key's limits", status=429)

    async def pending():
        await reply
        raise err

    ahead, admitted, refused = tracked(pending())
    waiters = [asyncio.ensure_future(_await(ahead)) for _ in range(2)]
    await asyncio.sleep(0)
    reply.set_result(None)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert results == [err, err]
    with pytest.raises(GatewayError):
        await ahead
    assert ahead.refused and refused == [err] and admitted == []


async def test_a_first_waiter_cancelled_cancels_the_others_and_is_not_a_refusal():
    reply = asyncio.get_running_loop().create_future()

    async def pending():
        return await reply

    ahead, admitted, refused = tracked(pending())
    first = asyncio.ensure_future(_await(ahead))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(_await(ahead))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert not ahead.refused and admitted == [] and refused == []


async def _await(ahead: AdmissionAhead) -> None:
    await ahead
