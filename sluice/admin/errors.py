"""Turning database constraint failures into answers a client can act on."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.schema import GatewayError


def conflict(message: str) -> GatewayError:
    return GatewayError("invalid_request", message, status=409, code="conflict")


@asynccontextmanager
async def unique(session: AsyncSession, message: str) -> AsyncIterator[None]:
    """Flush inside; a unique-constraint failure becomes a 409 with ``message``."""
    try:
        yield
        await session.flush()
    except IntegrityError:
        raise conflict(message) from None
