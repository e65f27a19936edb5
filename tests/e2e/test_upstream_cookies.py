"""Cookies an upstream sets. The CDN edge in front of the real APIs sets cookies (Cloudflare's
__cf_bm on OpenAI's answers); a gateway serves every caller over one connection pool per
provider, so a cookie kept from one caller's call would go out with everyone's."""

from __future__ import annotations

import aiohttp

from sluice.config import parse_config
from sluice.mock import MockOptions, start_mock
from sluice.server import start
from tests.e2e.conftest import MASTER_KEY, gateway_config


async def test_a_cookie_an_upstream_sets_is_not_sent_on_later_calls(pg_url, tmp_path, sdk):
    mock = await start_mock("127.0.0.1", 0, MockOptions(edge_cookie=True))
    gw = None
    try:
        # By host name: aiohttp's default cookie jar ignores cookies from bare IP addresses.
        upstream = mock.url.replace("127.0.0.1", "localhost")
        gw = await start(parse_config(gateway_config(upstream, pg_url, str(tmp_path / "spill.jsonl"))),
                         "127.0.0.1", 0)
        client = sdk.openai(f"{gw.url}/v1", MASTER_KEY)
        for _ in range(3):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
            assert raw.http_response.status_code == 200
        async with aiohttp.ClientSession() as s, s.get(f"{mock.url}/_mock/requests") as r:
            received = [req for req in (await r.json())["requests"] if req["model"] == "gpt-4o-mini"]
        assert len(received) == 3
        assert not [req for req in received if "cookie" in {k.lower() for k in req["headers"]}]
    finally:
        if gw is not None:
            await gw.stop()
        await mock.close()
