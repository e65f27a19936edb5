"""sluice.yaml validation: strict keys, paths and suggestions in errors, env interpolation, defaults."""

import subprocess
import sys
import textwrap

import pytest

from sluice.config import ConfigError, embedded_defaults, load_config, parse_config
from sluice.server import check_master_key

GOOD = {
    "providers": {"openai": {"kind": "openai", "api_key": "sk-x"}},
    "models": {"gpt": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}},
}


def _error(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    return str(exc.value)


def test_valid_config_parses():
    cfg = parse_config(GOOD)
    assert cfg.models["gpt"].deployments[0].model == "gpt-4o-mini"
    assert cfg.server.port == 4000 and cfg.server.host == "127.0.0.1"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"servr": {}}, "servr: unknown key; did you mean 'server'?"),
        ({"server": {"prot": 1}}, "server.prot: unknown key; did you mean 'port'?"),
        ({"providers": {"o": {"kind": "openai", "api_kee": "x"}}}, "providers.o.api_kee: unknown key; did you mean 'api_key'?"),
        (
            {**GOOD, "models": {"gpt": {"deployments": [{"provider": "openai", "modle": "x"}]}}},
            "models.gpt.deployments.0.modle: unknown key; did you mean 'model'?",
        ),
        (
            {**GOOD, "models": {"gpt": {"deployments": [{"provider": "opena", "model": "x"}]}}},
            "models.gpt.deployments.0.provider: unknown provider 'opena'; did you mean 'openai'?",
        ),
        ({"providers": {"a": {"kind": "azure", "base_url": "https://x"}}}, "providers.a: provider kind 'azure' needs api_version"),
        ({"providers": {"a": {"kind": "opnai"}}}, "providers.a.kind: Input should be"),
        ({"server": {"port": "x"}}, "server.port:"),
        ({"models": {"m": {"deployments": []}}}, "models.m.deployments:"),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_errors_name_the_path(raw, expected):
    assert expected in _error(raw)


def test_env_interpolation(monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_KEY", "sk-from-env")
    cfg = parse_config({"providers": {"o": {"kind": "openai", "api_key": "${SLUICE_TEST_KEY}"}}})
    assert cfg.providers["o"].api_key == "sk-from-env"
    cfg = parse_config({"providers": {"o": {"kind": "openai", "api_key": "${SLUICE_UNSET_VAR:-fallback}"}}})
    assert cfg.providers["o"].api_key == "fallback"
    monkeypatch.delenv("SLUICE_UNSET_VAR", raising=False)
    msg = _error({"providers": {"o": {"kind": "openai", "api_key": "${SLUICE_UNSET_VAR}"}}})
    assert msg == "providers.o.api_key: environment variable SLUICE_UNSET_VAR is not set"


def test_load_config_reports_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_embedded_defaults_demo_when_nothing_configured():
    cfg = embedded_defaults(env={})
    assert list(cfg.providers) == ["emulator"] and list(cfg.models) == ["demo"]


def test_embedded_defaults_from_env_keys_and_ollama():
    cfg = embedded_defaults(env={"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "a-1", "GEMINI_API_KEY": "g-1"},
                            ollama_models=["llama3.2:latest"])
    assert set(cfg.providers) == {"openai", "anthropic", "gemini", "ollama"}
    assert "claude-*" in cfg.models and "gpt-*" in cfg.models and "gemini-*" in cfg.models
    assert cfg.models["llama3.2:latest"].deployments[0].provider == "ollama"
    assert "demo" not in cfg.models


def test_master_key_rules():
    check_master_key(None, "127.0.0.1")  # open on loopback is fine
    with pytest.raises(ConfigError, match="needs a master key"):
        check_master_key(None, "0.0.0.0")
    for weak in ("sk-1234", "short", "a" * 40):
        with pytest.raises(ConfigError, match="too weak"):
            check_master_key(weak, "0.0.0.0")
    check_master_key("3f9a1c7be2d84f06a5c1e9b7d2f4a8c6e1b3d5f7a9c2e4b6", "0.0.0.0")


def test_config_check_cli(tmp_path):
    good = tmp_path / "sluice.yaml"
    good.write_text(textwrap.dedent("""
        providers:
          openai: {kind: openai, api_key: sk-x}
        models:
          gpt: {deployments: [{provider: openai, model: gpt-4o-mini}]}
    """))
    ok = subprocess.run([sys.executable, "-m", "sluice.cli", "config", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  gpt: {deployments: [{provider: nope, model: x}]}\n")
    res = subprocess.run([sys.executable, "-m", "sluice.cli", "config", "check", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "models.gpt.deployments.0.provider: unknown provider 'nope'" in res.stderr
