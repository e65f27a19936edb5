"""Conditional routing: ordered rules that send a request to another alias by its properties.

A rule matches when every condition it names holds (conditions left out are not checked); the
first matching rule wins. Examples: ``tags: [free] → mini``, ``prompt_tokens_gt: 30000 →
long-context``, ``has_images: true → vision``. ``model`` limits a rule to requested aliases
(glob patterns).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(slots=True)
class Facts:
    """What rules may look at; ``prompt_tokens`` is computed only when a rule needs it."""

    model: str
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] | None = None
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    headers: Mapping[str, str] | None = None
    has_tools: bool = False
    has_images: bool = False
    prompt_tokens: Callable[[], int] = field(default=lambda: 0)


@dataclass(slots=True)
class Rule:
    name: str
    route_to: str
    model: str | None = None
    tags: tuple[str, ...] = ()  # all of these tags
    metadata: Mapping[str, Any] | None = None  # these key/values in the request's metadata
    key: str | None = None
    team: str | None = None
    user: str | None = None
    headers: Mapping[str, str] | None = None  # header name (lower-case) → value
    has_tools: bool | None = None
    has_images: bool | None = None
    prompt_tokens_gt: int | None = None
    prompt_tokens_lt: int | None = None

    def matches(self, f: Facts) -> bool:
        checks = (
            self.model is None or fnmatch.fnmatchcase(f.model, self.model),
            not self.tags or set(self.tags) <= set(f.tags),
            not self.metadata or all((f.metadata or {}).get(k) == v for k, v in self.metadata.items()),
            self.key is None or f.key_id == self.key,
            self.team is None or f.team_id == self.team,
            self.user is None or f.user_id == self.user,
            not self.headers or all((f.headers or {}).get(k) == v for k, v in self.headers.items()),
            self.has_tools is None or f.has_tools == self.has_tools,
            self.has_images is None or f.has_images == self.has_images,
        )
        if not all(checks):
            return False
        if self.prompt_tokens_gt is None and self.prompt_tokens_lt is None:
            return True
        tokens = f.prompt_tokens()
        return ((self.prompt_tokens_gt is None or tokens > self.prompt_tokens_gt)
                and (self.prompt_tokens_lt is None or tokens < self.prompt_tokens_lt))


class ConditionalRouter:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def pick(self, facts: Facts) -> Rule | None:
        for rule in self.rules:
            if rule.matches(facts):
                return rule
        return None
