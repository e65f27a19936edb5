"""Durations written the way people type them: ``30d``, ``12h``, ``90m``, ``2w``, ``45s``."""

from __future__ import annotations

import re
from datetime import timedelta

from sluice.schema import GatewayError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str, *, param: str = "duration", allow_zero: bool = False) -> timedelta:
    match = _PATTERN.match(text or "")
    if not match or int(match.group(1)) < (0 if allow_zero else 1):
        raise GatewayError("invalid_request", f"{param}: expected a positive duration like 30d, 12h, 90m "
                           f"or 2w, got {text!r}", param=param)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
