"""Config references of issue 5 and 7: aliases named under limits and cache must exist."""

from __future__ import annotations

import pytest

from sluice.config import ConfigError, parse_config

BASE = {"providers": {"p": {"kind": "openai", "base_url": "http://x/v1", "api_key": "k"}},
        "models": {"gpt": {"deployments": [{"provider": "p", "model": "gpt-4o"}]}}}


@pytest.mark.parametrize("extra, path", [
    ({"limits": {"models": {"gtp": {"rpm": 5}}}}, "limits.models.gtp"),
    ({"cache": {"models": {"gtp": {"ttl": 5}}}}, "cache.models.gtp"),
    ({"cache": {"semantic": {"enabled": True, "embedder": "emb"}}}, "cache.semantic.embedder"),
    ({"limits": {"models": {"q/gpt-4o": {"rpm": 5}}}}, "limits.models.q/gpt-4o"),  # no provider q
    ({"limits": {"models": {"p/gpt-4o": {"rpm": 5}}}, "passthrough": False}, "limits.models.p/gpt-4o"),
    ({"cache": {"semantic": {"enabled": True, "embedder": "p/emb"}}}, "cache.semantic.embedder"),
])
def test_unknown_aliases_are_named(extra, path):
    with pytest.raises(ConfigError, match=path):
        parse_config(BASE | extra)


def test_known_aliases_and_defaults_pass():
    config = parse_config(BASE | {"limits": {"models": {"gpt": {"rpm": 5}}}, "cache": {"enabled": True}})
    assert config.limits.models["gpt"].rpm == 5 and config.cache.namespace == "team"
    assert config.cache.semantic.enabled is False and config.limits.redis_failure == "open"


def test_passthrough_and_wildcard_names_can_have_limits_and_cache_settings():
    """What a client can call can be limited: ``<provider>/<model>`` (passthrough on) and names a
    wildcard alias matches, not only aliases."""
    raw = BASE | {"models": {**BASE["models"], "claude-*": {"deployments": [{"provider": "p", "model": "c"}]}},
                  "limits": {"models": {"p/gpt-4o-mini": {"rpm": 5}, "claude-haiku": {"tpm": 100}}},
                  "cache": {"models": {"p/gpt-4o-mini": {"ttl": 5}}}}
    config = parse_config(raw)
    assert config.limits.models["p/gpt-4o-mini"].rpm == 5 and config.limits.models["claude-haiku"].tpm == 100
