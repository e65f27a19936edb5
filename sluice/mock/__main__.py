"""``python -m sluice.mock``: the emulator without the full CLI (handy for benchmarks)."""

from __future__ import annotations

import argparse

from sluice.mock.server import run_mock
from sluice.mock.state import DEFAULT_MODELS, MockOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sluice-mock", description="Sluice provider emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before the first byte")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between stream chunks")
    parser.add_argument("--model", action="append", dest="models", help="model to list (repeatable)")
    parser.add_argument("--embedding-dims", type=int, default=1536)
    parser.add_argument("--no-record", action="store_true", help="do not keep a request log")
    parser.add_argument("--require-known-model", action="store_true", help="404 for models not listed")
    args = parser.parse_args(argv)
    options = MockOptions(
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        models=args.models or list(DEFAULT_MODELS),
        embedding_dims=args.embedding_dims,
        record_requests=not args.no_record,
        require_known_model=args.require_known_model,
    )
    run_mock(args.host, args.port, options)


if __name__ == "__main__":
    main()
