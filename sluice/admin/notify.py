"""Announcing auth-relevant changes after they commit, so every instance drops its cached view.

Topics (see ``sluice.store.events``): ``("key", <key hash>)``, ``("team", <team id>)``,
``("user", <user id>)``, and ``("budget", <budget id>)`` when a budget is created, changed or
deleted (so instances reload their budgets). Publishing happens only after the transaction
committed: an instance that reloads on the message must find the new state.
"""

from __future__ import annotations

import logging

from sluice.store.events import Events

log = logging.getLogger("sluice.admin")


async def announce(events: Events | None, messages: list[tuple[str, str]]) -> None:
    if events is None:
        return
    for topic, value in dict.fromkeys(messages):
        try:
            await events.publish(topic, value)
        except Exception:  # noqa: BLE001 - the change is committed; cache TTLs bound the staleness
            log.exception("could not announce a %s change", topic)
