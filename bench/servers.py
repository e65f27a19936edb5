"""Start and stop the processes under test: the emulator, the bare proxy and Sluice."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import credentials

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("BENCH_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
SLUICE = os.environ.get("BENCH_SLUICE", str(ROOT / ".venv" / "bin" / "sluice"))

SLUICE_YAML = """\
server:
  host: 127.0.0.1
  access_log: {access_log}
  log_level: info
  detect_ollama: false
  master_key: {master_key}
database:
  url: {database_url}
ledger:
  spill_path: {logdir}/ledger-spill.jsonl
providers:
  mock:
    kind: openai-compatible
    base_url: http://127.0.0.1:{upstream_port}/v1
    api_key: x
models:
  bench:
    deployments:
{deployments}
{extra}"""


def _deployments() -> str:
    """BENCH_DEPLOYMENTS=N spreads the alias over N deployments (same upstream) to measure routing cost."""
    n = int(os.environ.get("BENCH_DEPLOYMENTS", "1"))
    return "\n".join(f"      - {{provider: mock, model: bench-model, name: mock-{i}}}" for i in range(n))


def _extra_yaml() -> str:
    """BENCH_REDIS_URL shares state (and the limiter) through Redis, as a fleet would."""
    url = os.environ.get("BENCH_REDIS_URL")
    extra = f"redis:\n  url: {url}\n  prefix: bench\n" if url else ""
    if os.environ.get("BENCH_CACHE"):  # the response cache (bench/cache.py)
        extra += "cache:\n  enabled: true\n"
    # BENCH_EXTRA_YAML appends top-level config (e.g. "ledger: {enabled: false}") to isolate a stage's cost.
    return extra + os.environ.get("BENCH_EXTRA_YAML", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(name: str, cmd: list[str], port: int, logdir: Path, cpus: set[int] | None) -> Proc:
    log_path = logdir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=pin, cwd=ROOT)
    proc = Proc(name, port, popen, log_path)
    _wait_listening(proc)
    return proc


def _wait_listening(proc: Proc, timeout: float = float(os.environ.get("BENCH_START_TIMEOUT", "20"))) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited at start-up:\n{proc.log_path.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", proc.port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} did not listen on port {proc.port} within {timeout}s")


def start_upstream(logdir: Path, cpus: set[int] | None, chunk_delay_ms: float = 0.0) -> Proc:
    port = free_port()
    cmd = [PYTHON, str(ROOT / "bench" / "upstream.py"), "--port", str(port), "--chunk-delay-ms", str(chunk_delay_ms)]
    return spawn("upstream", cmd, port, logdir, cpus)


def start_bare(upstream: Proc, logdir: Path, cpus: set[int] | None) -> Proc:
    port = free_port()
    cmd = [PYTHON, str(ROOT / "bench" / "bare_proxy.py"), "--upstream", upstream.url, "--port", str(port)]
    return spawn("bare", cmd, port, logdir, cpus)


def start_sluice(upstream: Proc, logdir: Path, cpus: set[int] | None, access_log: bool, name: str) -> Proc:
    port = free_port()
    config = logdir / f"{name}.yaml"
    config.write_text(SLUICE_YAML.format(access_log=str(access_log).lower(), upstream_port=upstream.port,
                                         master_key=MASTER_KEY, logdir=logdir.resolve() / name,
                                         deployments=_deployments(), extra=_extra_yaml(),
                                         database_url=os.environ.get("BENCH_DATABASE_URL")
                                         or f"sqlite:///{logdir.resolve() / name}/sluice.db"))
    (logdir / name).mkdir(parents=True, exist_ok=True)
    # BENCH_SLUICE_CMD swaps the executable (e.g. another checkout's sluice) for comparisons.
    base = shlex.split(os.environ["BENCH_SLUICE_CMD"]) if os.environ.get("BENCH_SLUICE_CMD") else [SLUICE]
    cmd = [*base, "serve", "--config", str(config), "--port", str(port)]
    proc = spawn(name, cmd, port, logdir, cpus)
    credentials.TOKEN = issue_key(proc)
    return proc


MASTER_KEY = "sk-bench-" + "0123456789abcdef" * 3


def issue_key(proc: Proc) -> str:
    """A virtual key from the admin API: the load then exercises key lookup and the ledger.

    BENCH_KEY_LIMITS (a JSON limits object, e.g. '{"rpm": 100000000, "tpm": 1000000000}') gives
    the key limits far above the load, so the limits stage runs on every call but never refuses.
    """
    import json
    import urllib.request

    spec: dict = {"name": "bench"}
    if os.environ.get("BENCH_KEY_LIMITS"):
        spec["limits"] = json.loads(os.environ["BENCH_KEY_LIMITS"])
    req = urllib.request.Request(f"{proc.url}/admin/keys", data=json.dumps(spec).encode(),
                                 headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - local URL
        return json.loads(resp.read())["key"]


def python_version() -> str:
    out = subprocess.run([PYTHON, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or sys.version.split()[0]
