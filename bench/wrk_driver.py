"""Drive one wrk run with a POST body and read its results back as a dict.

wrk's own summary is for people; a Lua ``done`` hook prints one JSON line instead, with the
percentiles taken from wrk's full latency histogram (microseconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass

import credentials

WRK = os.environ.get("WRK", "/usr/bin/wrk")
_MARK = "WRKJSON "

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.body = [==[%(body)s]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect_errors":%%d,"read_errors":%%d,' ..
    '"write_errors":%%d,"status_errors":%%d,"timeouts":%%d,"mean_us":%%.1f,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


_UNIQUE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local prefix = [==[%(prefix)s]==]
local suffix = [==[%(suffix)s]==]
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

init = function(args)
  counter = 0
end

request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. tid .. "-" .. counter .. suffix)
end
""" + _LUA.split('wrk.body = [==[%(body)s]==]')[1]


def unique_body_script(prefix: bytes, suffix: bytes, directory: str) -> str:
    """A script whose every request differs: ``prefix`` + "<thread>-<n>" + ``suffix`` (cache misses)."""
    fd, path = tempfile.mkstemp(suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(_UNIQUE_LUA % {"prefix": prefix.decode(), "suffix": suffix.decode(), "mark": _MARK,
                               "token": credentials.TOKEN})
    return path


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    requests: int
    errors: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def lua_script(body: bytes, directory: str) -> str:
    fd, path = tempfile.mkstemp(suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(_LUA % {"body": body.decode(), "mark": _MARK, "token": credentials.TOKEN})
    return path


def run_wrk(url: str, script: str, connections: int, duration: float, threads: int | None = None,
            cpus: set[int] | None = None) -> WrkResult:
    threads = threads or (1 if connections == 1 else 2)
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", script, url]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, preexec_fn=pin).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no results:\n{out}")
    raw = json.loads(line[len(_MARK):])
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return WrkResult(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000, max_ms=raw["max_us"] / 1000,
        requests=raw["requests"], errors=errors,
    )
