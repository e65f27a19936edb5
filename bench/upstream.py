"""Run Sluice's provider emulator as the benchmark's upstream, with request recording off.

Recording (the emulator's GET /_mock/requests log) is the emulator's own bookkeeping, not a
provider's; turning it off keeps the upstream cheap so that the proxies' costs stand out.

    python bench/upstream.py --port 8090
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between streamed chunks")
    parser.add_argument("--record", action="store_true", help="keep the emulator's request log on")
    args = parser.parse_args()

    from sluice.mock import MockOptions, run_mock

    run_mock(args.host, args.port, MockOptions(record_requests=args.record, chunk_delay_ms=args.chunk_delay_ms))


if __name__ == "__main__":
    main()
