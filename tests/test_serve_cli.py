"""`sluice serve` with no configuration: the README's first command answers the first curl."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import openai


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embedded_defaults_serve_demo_model(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "SLUICE_CONFIG", "SLUICE_MASTER_KEY")}
    proc = subprocess.Popen([sys.executable, "-m", "sluice.cli", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="anything", max_retries=0)
        resp = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello"}])
        assert resp.choices[0].message.content == "Echo: Hello"
        assert [m.id for m in client.models.list()] == ["demo"]
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode in (0, -15), err
    # Logs are JSON lines and the access log names the request.
    access = [line for line in err.splitlines() if '"path":"/v1/chat/completions"' in line]
    assert access and '"request_id"' in access[0] and '"status":200' in access[0]


def test_refuses_public_bind_without_master_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_MASTER_KEY", "SLUICE_CONFIG")}
    res = subprocess.run([sys.executable, "-m", "sluice.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "needs a master key" in res.stderr
