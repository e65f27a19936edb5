"""The ``sluice`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Sluice: an AI gateway in front of every model provider.", no_args_is_help=True,
                  add_completion=False)
config_app = typer.Typer(help="Work with sluice.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
err = Console(stderr=True)


@app.command()
def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="sluice.yaml (default: $SLUICE_CONFIG, "
                                          "else embedded defaults from the environment)"),
    host: Optional[str] = typer.Option(None, help="Address to listen on (default from config: 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port to listen on (default from config: 4000)."),
) -> None:
    """Start the gateway."""
    from sluice.config import ConfigError
    from sluice.observability.logs import configure
    from sluice.server import install_uvloop, resolve_config, start

    try:
        cfg = resolve_config(str(config) if config else None)
    except ConfigError as exc:
        err.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
    configure(cfg.server.log_level)
    install_uvloop()

    async def main() -> None:
        running = await start(cfg, host, port)
        models = ", ".join(sorted(cfg.models)) or "none"
        err.print(f"[green]Sluice listening on {running.url}[/green]  models: {models}")
        try:
            await running.task
        finally:
            if running.emulator is not None:
                await running.emulator.close()

    try:
        asyncio.run(main())
    except ConfigError as exc:
        err.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@app.command()
def mock(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8090, help="Port to listen on (0 picks a free one)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Delay before the first byte of every response."),
    chunk_delay_ms: float = typer.Option(0.0, "--chunk-delay-ms", help="Delay between streamed chunks."),
    model: list[str] = typer.Option([], "--model", help="A model name to list (repeatable)."),
    embedding_dims: int = typer.Option(1536, "--embedding-dims", help="Default embedding vector size."),
    no_record: bool = typer.Option(False, "--no-record", help="Do not keep received requests for /_mock/requests."),
    require_known_model: bool = typer.Option(False, "--require-known-model",
                                             help="Answer 404 for models not given with --model."),
) -> None:
    """Run the provider emulator (OpenAI, Azure, Anthropic, Gemini and TGI wire formats)."""
    from sluice.mock import MockOptions, run_mock
    from sluice.server import install_uvloop

    install_uvloop()
    options = MockOptions(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, embedding_dims=embedding_dims,
                          record_requests=not no_record, require_known_model=require_known_model)
    if model:
        options.models = list(model)
    run_mock(host, port, options)


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="The sluice.yaml to validate.")) -> None:
    """Validate a configuration file without starting the gateway."""
    from sluice.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        err.print(f"[red]{path}: invalid[/red]\n{exc}")
        raise typer.Exit(1) from None
    Console().print(f"[green]{path}: ok[/green] — {len(cfg.providers)} providers, {len(cfg.models)} models")


if __name__ == "__main__":
    app()
