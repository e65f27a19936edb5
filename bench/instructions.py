"""Instructions per call of one Sluice under valgrind (callgrind): a plain key against a limited key.

This machine's speed drifts by ±10% within minutes, so requests/s cannot show a change of a few
percent; the count of instructions the server runs per call barely moves between runs (±2–3%,
from work done per unit of time, such as the ledger's batches). One Sluice runs under callgrind
with its instrumentation switched on only while a phase's load runs; each phase is wrk at
concurrency 32 with one key: a key without limits, then a key with the limits of ``--limits``.

    .venv/bin/python bench/instructions.py --mode json --seconds 15
    BENCH_REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/instructions.py   # the Redis limiter
    .venv/bin/python bench/instructions.py --src /tmp/base   # another checkout (a git worktree)

Counts are user-space instructions: system calls' kernel time is not in them. Needs ``valgrind``
(``apt-get install valgrind``). Under callgrind the server is ~50x slower, so a phase serves a few
hundred calls; the first limited call loads the tokenizer before the phase starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import servers  # noqa: E402
from run import body  # noqa: E402
from wrk_driver import lua_script, run_wrk  # noqa: E402

CLIENT_CPUS = {0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["json", "stream"], default="json")
    p.add_argument("--seconds", type=int, default=15, help="per phase")
    p.add_argument("--limits", default='{"rpm": 100000000, "tpm": 1000000000}', help="the limited key's limits")
    p.add_argument("--src", default=str(servers.ROOT), help="the checkout whose Sluice runs")
    return p.parse_args(argv)


def start(logdir: Path, upstream: servers.Proc, src: str) -> tuple[servers.Proc, Path]:
    port = servers.free_port()
    config = logdir / "sluice.yaml"
    (logdir / "sluice").mkdir()
    config.write_text(servers.SLUICE_YAML.format(
        access_log="false", upstream_port=upstream.port, master_key=servers.MASTER_KEY,
        logdir=logdir / "sluice", deployments=servers._deployments(), extra=servers._extra_yaml(),
        database_url=f"sqlite:///{logdir}/sluice/sluice.db"))
    out = logdir / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no", servers.PYTHON,
           "-c", "import sys; from sluice.cli import app; sys.argv[0] = 'sluice'; sys.exit(app())",
           "serve", "--config", str(config), "--port", str(port)]
    log = open(logdir / "valgrind.log", "wb")  # noqa: SIM115 - closed with the process
    popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=src),
                             cwd=src)
    proc = servers.Proc("sluice", port, popen, logdir / "valgrind.log")
    servers._wait_listening(proc, timeout=300)
    return proc, out


def issue_key(proc: servers.Proc, limits: dict | None) -> str:
    spec: dict = {"name": "instructions"}
    if limits:
        spec["limits"] = limits
    req = urllib.request.Request(f"{proc.url}/admin/keys", data=json.dumps(spec).encode(), headers={
        "authorization": f"Bearer {servers.MASTER_KEY}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - local URL
        return json.loads(resp.read())["key"]


def control(proc: servers.Proc, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(proc.popen.pid)], check=True, capture_output=True)


def dumped_total(out: Path, name: str) -> int:
    for _ in range(50):
        for path in out.parent.glob(out.name + "*"):
            text = path.read_text(errors="replace")
            if f"Trigger: dump {name}" in text:
                for line in text.splitlines():
                    if line.startswith("summary:"):
                        return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump for {name}")


def measure(proc: servers.Proc, out: Path, key: str, name: str, args: argparse.Namespace, tmp: str) -> tuple[int, int]:
    credentials.TOKEN = key
    url = proc.url + "/v1/chat/completions"
    payload = body("bench", args.mode == "stream")
    control(proc, "-i", "on")
    first = urllib.request.Request(url, data=payload, headers={"authorization": f"Bearer {key}",
                                                               "content-type": "application/json"})
    with urllib.request.urlopen(first, timeout=600) as resp:  # noqa: S310 - loads the tokenizer, if any
        resp.read()
    script = lua_script(payload, tmp)
    run_wrk(url, script, 32, 8, cpus=CLIENT_CPUS)  # warm up, instrumented
    control(proc, "--zero")
    res = run_wrk(url, script, 32, args.seconds, cpus=CLIENT_CPUS)
    control(proc, f"--dump={name}")
    return res.requests, dumped_total(out, name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="sluice-instructions-"))
    upstream = servers.start_upstream(logdir, CLIENT_CPUS)
    proc, out = start(logdir, upstream, args.src)
    try:
        keys = {"plain key": issue_key(proc, None), "limited key": issue_key(proc, json.loads(args.limits))}
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for i, (name, key) in enumerate(keys.items()):
                calls, total = measure(proc, out, key, f"phase{i}", args, tmp)
                results[name] = total / max(calls, 1)
                print(f"{args.mode} {name}: {calls} calls, {results[name] / 1e6:.3f} M instructions per call",
                      flush=True)
        extra = results["limited key"] - results["plain key"]
        print(f"the limits stage: {extra / 1e3:+.0f} k instructions per call "
              f"({extra / results['plain key']:+.1%})")
    finally:
        proc.popen.terminate()
        proc.popen.wait(60)
        upstream.stop()


if __name__ == "__main__":
    main()
