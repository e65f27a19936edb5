"""bench/limits_stage.py runs (a smoke test, not a timing: the figures are the script's to print)."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench_script


@pytest.mark.parametrize("mode", ["none", "local", "redis"])
async def test_the_limits_stage_script_admits_and_settles(mode, redis_url, redis_prefix, capsys):
    stage = load_bench_script("limits_stage")
    await stage.run(stage.parse_args([mode, "--calls", "320", "--redis-url", redis_url,
                                      "--prefix", f"{redis_prefix}:stage"]))
    assert f"{mode}: " in capsys.readouterr().out
