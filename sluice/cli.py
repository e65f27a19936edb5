"""The ``sluice`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

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
    edge_cookie: bool = typer.Option(False, "--edge-cookie",
                                     help="Set a cookie on OpenAI chat answers, as the real API's CDN edge does."),
) -> None:
    """Run the provider emulator (OpenAI, Azure, Anthropic, Gemini and TGI wire formats)."""
    from sluice.mock import MockOptions, run_mock
    from sluice.server import install_uvloop

    install_uvloop()
    options = MockOptions(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, embedding_dims=embedding_dims,
                          record_requests=not no_record, require_known_model=require_known_model,
                          edge_cookie=edge_cookie)
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


# ---- admin commands: an HTTP client of the admin API ------------------------------------------
# They talk to a running gateway (``--url``), never to its database, so the same role rules
# apply whoever runs them. Only ``db upgrade`` works on the database directly.

keys_app = typer.Typer(help="Virtual keys: create, list, get, update, revoke, rotate.", no_args_is_help=True)
teams_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
budgets_app = typer.Typer(help="Spending limits in USD per key, team, user, end user, model or tag.",
                          no_args_is_help=True)
db_app = typer.Typer(help="The SQL database.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")
app.add_typer(users_app, name="users")
app.add_typer(budgets_app, name="budgets")
app.add_typer(db_app, name="db")

UrlOpt = Annotated[str, typer.Option("--url", envvar="SLUICE_URL", help="The gateway's address.",
                                     show_envvar=True)]
KeyOpt = Annotated[Optional[str], typer.Option("--key", envvar=["SLUICE_API_KEY", "SLUICE_MASTER_KEY"],
                                               help="An admin credential (master key or a key with a role).",
                                               show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
# Limits of a key, team or user (see docs/limits.md); on update they are merged into the current ones.
RpmOpt = Annotated[Optional[int], typer.Option("--rpm", min=0, help="Requests per minute.", show_default=False)]
TpmOpt = Annotated[Optional[int], typer.Option("--tpm", min=0, help="Tokens per minute (input + output).",
                                               show_default=False)]
InTpmOpt = Annotated[Optional[int], typer.Option("--input-tpm", min=0, help="Input tokens per minute.",
                                                 show_default=False)]
OutTpmOpt = Annotated[Optional[int], typer.Option("--output-tpm", min=0, help="Output tokens per minute.",
                                                  show_default=False)]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", min=0, help="Requests in flight at once.",
                                                       show_default=False)]
ModelLimitOpt = Annotated[Optional[list[str]], typer.Option(
    "--model-limit", help="Limits for one model alias, ALIAS:rpm=60,tpm=1000 (repeatable; replaces that alias's).",
    show_default=False)]
NoLimitsOpt = Annotated[bool, typer.Option("--no-limits", help="Remove every limit (before applying any given).")]
PriorityOpt = Annotated[Optional[str], typer.Option("--priority", help="interactive, default or batch.",
                                                    show_default=False)]
DEFAULT_URL = "http://127.0.0.1:4000"


class AdminClient:
    """A small synchronous client of ``/admin/…`` (stdlib only: the CLI must start fast)."""

    def __init__(self, url: str, key: str | None) -> None:
        if not key:
            err.print("[red]error:[/red] no API key: pass --key or set SLUICE_API_KEY (or SLUICE_MASTER_KEY)")
            raise typer.Exit(2)
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None) -> Any:
        import urllib.error
        import urllib.parse
        import urllib.request

        import orjson

        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(target, method=method, data=orjson.dumps(body) if body is not None else None,
                                         headers={"authorization": f"Bearer {self.key}",
                                                  "content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the operator's URL
                data = response.read()
                is_json = response.headers.get_content_type() == "application/json"
        except urllib.error.HTTPError as exc:
            _fail_http(exc.code, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            err.print(f"[red]error:[/red] cannot reach {self.url}: {reason}")
            raise typer.Exit(1) from None
        if not data:
            return None
        return orjson.loads(data) if is_json else data.decode()


def _fail_http(status: int, payload: bytes) -> None:
    import orjson

    try:
        error = orjson.loads(payload)["error"]
        message, kind = error["message"], error.get("type") or "error"
    except (ValueError, KeyError, TypeError):
        message, kind = payload.decode(errors="replace")[:500] or "no details", "error"
    err.print(f"[red]error {status}[/red] ({kind}): {message}")
    raise typer.Exit(1)


def _print_json(value: Any) -> None:
    import orjson

    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items())
    return str(value)


def _nested(value: Any) -> str:
    """A value inside a dict cell: nested objects (per-model limits, a status) as compact JSON."""
    import orjson

    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


def _show(value: Any, as_json: bool, columns: tuple[str, ...] = ()) -> None:
    """A list as a table with ``columns``; one object as field/value rows."""
    from rich.table import Table

    if as_json:
        _print_json(value)
        return
    if isinstance(value, dict) and "data" in value:
        table = Table(*columns)
        for row in value["data"]:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        Console().print(table)
        return
    table = Table("field", "value", show_header=False)
    for name, item in (value or {}).items():
        table.add_row(name, _cell(item))
    Console().print(table)


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text is not None else None


def _metadata(pairs: list[str]) -> dict[str, Any]:
    import orjson

    result: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            err.print(f"[red]error:[/red] --metadata expects key=value, got {pair!r}")
            raise typer.Exit(2)
        try:
            result[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            result[name] = raw
    return result


def _expiry(expires: str | None) -> dict[str, Any]:
    """``--expires 30d`` is a duration; anything else is taken as a date/time (ISO 8601)."""
    import re

    if expires is None:
        return {}
    if re.fullmatch(r"\s*\d+\s*[smhdw]\s*", expires):
        return {"duration": expires.strip()}
    return {"expires_at": expires}


LIMIT_NAMES = ("rpm", "tpm", "input_tpm", "output_tpm", "concurrency")


def _model_limit(text: str) -> tuple[str, dict[str, int]]:
    """``ALIAS:rpm=60,tpm=1000`` → (alias, limits); the alias may itself hold colons."""
    alias, sep, spec = text.rpartition(":")
    values: dict[str, int] = {}
    for pair in spec.split(",") if sep and alias else ():
        name, eq, raw = pair.strip().partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in LIMIT_NAMES or not raw.strip().isdigit():
            values = {}
            break
        values[name] = int(raw)
    if not values:
        err.print(f"[red]error:[/red] --model-limit expects ALIAS:name=N,… with names among "
                  f"{', '.join(LIMIT_NAMES)}; got {text!r}")
        raise typer.Exit(2)
    return alias, values


def _limits_given(counts: tuple[Optional[int], ...], model_limits: Optional[list[str]]) -> dict[str, Any]:
    """The limits named on the command line: ``counts`` in the order of LIMIT_NAMES."""
    given: dict[str, Any] = {name: n for name, n in zip(LIMIT_NAMES, counts, strict=True) if n is not None}
    per_model = dict(_model_limit(text) for text in model_limits or [])
    if per_model:
        given["models"] = per_model
    return given


def _merged_limits(current: Optional[dict], given: dict[str, Any], clear: bool) -> Optional[dict]:
    """The whole limits object to send: the API replaces it, so options not given keep their value."""
    merged = {} if clear else {k: v for k, v in (current or {}).items() if k != "models"}
    models = {} if clear else dict((current or {}).get("models") or {})
    models.update(given.get("models", {}))
    merged.update({k: v for k, v in given.items() if k != "models"})
    if models:
        merged["models"] = models
    return merged or None


def _limits_change(client: "AdminClient", path: str, given: dict[str, Any], clear: bool) -> dict[str, Any]:
    """``{"limits": …}`` for a PATCH body when limit options were given, else nothing."""
    if not given and not clear:
        return {}
    current = None if clear else client.call("GET", path).get("limits")
    return {"limits": _merged_limits(current, given, clear)}


KEY_COLUMNS = ("id", "key_prefix", "name", "user_id", "team_id", "models", "status", "expires_at")
TEAM_COLUMNS = ("id", "name", "models", "metadata", "created_at")
USER_COLUMNS = ("id", "email", "name", "role", "team_id")


def _secret_notice(result: dict, as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    _show({k: v for k, v in result.items() if k != "key"}, False)
    Console().print(f"[bold]key:[/bold] {result['key']}")
    err.print("[yellow]This is the only time the key is shown. Store it now.[/yellow]")


@keys_app.command("create")
def keys_create(
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
    name: Optional[str] = typer.Option(None, "--name", help="A label."),
    team: Optional[str] = typer.Option(None, "--team", help="Team id."),
    user: Optional[str] = typer.Option(None, "--user", help="Owner's user id."),
    models: Optional[str] = typer.Option(None, "--models", help="Allowed model aliases, comma-separated."),
    expires: Optional[str] = typer.Option(None, "--expires", help="30d, 12h, … or an ISO 8601 time."),
    tag: list[str] = typer.Option([], "--tag", help="A tag (repeatable)."),
    metadata: list[str] = typer.Option([], "--metadata", help="key=value (repeatable)."),
    rpm: RpmOpt = None, tpm: TpmOpt = None, input_tpm: InTpmOpt = None, output_tpm: OutTpmOpt = None,
    concurrency: ConcurrencyOpt = None, model_limit: ModelLimitOpt = None, priority: PriorityOpt = None,
) -> None:
    """Create a key; its secret is printed once."""
    body = {"name": name, "team_id": team, "user_id": user, "models": _split(models), "tags": tag,
            "metadata": _metadata(metadata), **_expiry(expires)}
    limits = _limits_given((rpm, tpm, input_tpm, output_tpm, concurrency), model_limit)
    if limits:  # only when asked: a member may create keys, but not with limits
        body["limits"] = limits
    if priority is not None:
        body["priority"] = priority
    _secret_notice(AdminClient(url, key).call("POST", "/admin/keys", body=body), as_json)


@keys_app.command("list")
def keys_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
              team: Optional[str] = typer.Option(None, "--team"), user: Optional[str] = typer.Option(None, "--user"),
              status: Optional[str] = typer.Option(None, "--status", help="active, revoked or expired"),
              limit: int = typer.Option(100, "--limit")) -> None:
    """Keys you may see."""
    params = {"team_id": team, "user_id": user, "status": status, "limit": limit}
    _show(AdminClient(url, key).call("GET", "/admin/keys", params=params), as_json, KEY_COLUMNS)


@keys_app.command("get")
def keys_get(key_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """One key (never its secret)."""
    _show(AdminClient(url, key).call("GET", f"/admin/keys/{_q(key_id)}"), as_json)


@keys_app.command("update")
def keys_update(
    key_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
    name: Optional[str] = typer.Option(None, "--name"),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated; replaces the list."),
    all_models: bool = typer.Option(False, "--all-models", help="Remove the key's own model list."),
    expires: Optional[str] = typer.Option(None, "--expires", help="30d, 12h, … or an ISO 8601 time."),
    no_expiry: bool = typer.Option(False, "--no-expiry", help="Remove the expiry."),
    tag: Optional[list[str]] = typer.Option(None, "--tag", help="Replaces the tags (repeatable)."),
    metadata: Optional[list[str]] = typer.Option(None, "--metadata", help="Replaces the metadata: key=value."),
    rpm: RpmOpt = None, tpm: TpmOpt = None, input_tpm: InTpmOpt = None, output_tpm: OutTpmOpt = None,
    concurrency: ConcurrencyOpt = None, model_limit: ModelLimitOpt = None, no_limits: NoLimitsOpt = False,
    priority: PriorityOpt = None,
) -> None:
    """Change a key's name, models, expiry, tags, metadata, limits or priority."""
    client = AdminClient(url, key)
    given = _limits_given((rpm, tpm, input_tpm, output_tpm, concurrency), model_limit)
    body: dict[str, Any] = {**_expiry(expires), **_limits_change(client, f"/admin/keys/{_q(key_id)}", given,
                                                                   no_limits)}
    if priority is not None:
        body["priority"] = priority
    if name is not None:
        body["name"] = name
    if models is not None or all_models:
        body["models"] = None if all_models else _split(models)
    if no_expiry:
        body["expires_at"] = None
    if tag is not None:
        body["tags"] = tag
    if metadata is not None:
        body["metadata"] = _metadata(metadata)
    _show(client.call("PATCH", f"/admin/keys/{_q(key_id)}", body=body), as_json)


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key now."""
    _show(AdminClient(url, key).call("POST", f"/admin/keys/{_q(key_id)}/revoke"), as_json)


@keys_app.command("rotate")
def keys_rotate(key_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                grace: str = typer.Option("24h", "--grace", help="How long the old key keeps working.")) -> None:
    """Replace a key by a new one with the same settings; the new secret is printed once."""
    result = AdminClient(url, key).call("POST", f"/admin/keys/{_q(key_id)}/rotate", body={"grace": grace})
    _secret_notice(result, as_json)


def _q(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


@teams_app.command("create")
def teams_create(name: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                 models: Optional[str] = typer.Option(None, "--models", help="Allowed model aliases (default all)."),
                 metadata: list[str] = typer.Option([], "--metadata", help="key=value (repeatable).")) -> None:
    """Create a team (admin only)."""
    body = {"name": name, "models": _split(models), "metadata": _metadata(metadata)}
    _show(AdminClient(url, key).call("POST", "/admin/teams", body=body), as_json)


@teams_app.command("list")
def teams_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Teams you may see."""
    _show(AdminClient(url, key).call("GET", "/admin/teams"), as_json, TEAM_COLUMNS)


@teams_app.command("get")
def teams_get(team_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    _show(AdminClient(url, key).call("GET", f"/admin/teams/{_q(team_id)}"), as_json)


@teams_app.command("update")
def teams_update(team_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                 name: Optional[str] = typer.Option(None, "--name"),
                 models: Optional[str] = typer.Option(None, "--models", help="Comma-separated; replaces the list."),
                 all_models: bool = typer.Option(False, "--all-models", help="Allow every model."),
                 metadata: Optional[list[str]] = typer.Option(None, "--metadata", help="Replaces: key=value."),
                 rpm: RpmOpt = None, tpm: TpmOpt = None, input_tpm: InTpmOpt = None, output_tpm: OutTpmOpt = None,
                 concurrency: ConcurrencyOpt = None, model_limit: ModelLimitOpt = None,
                 no_limits: NoLimitsOpt = False) -> None:
    """Rename, change models, metadata or limits (a team admin: metadata only)."""
    client = AdminClient(url, key)
    given = _limits_given((rpm, tpm, input_tpm, output_tpm, concurrency), model_limit)
    body: dict[str, Any] = _limits_change(client, f"/admin/teams/{_q(team_id)}", given, no_limits)
    if name is not None:
        body["name"] = name
    if models is not None or all_models:
        body["models"] = None if all_models else _split(models)
    if metadata is not None:
        body["metadata"] = _metadata(metadata)
    _show(client.call("PATCH", f"/admin/teams/{_q(team_id)}", body=body), as_json)


@teams_app.command("delete")
def teams_delete(team_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                 yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a team; its keys are revoked and its users left without a team."""
    if not yes:
        typer.confirm(f"Delete team {team_id} and revoke all its keys?", abort=True)
    AdminClient(url, key).call("DELETE", f"/admin/teams/{_q(team_id)}")
    err.print(f"team {team_id} deleted")


@teams_app.command("members")
def teams_members(team_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """A team's users."""
    _show(AdminClient(url, key).call("GET", f"/admin/teams/{_q(team_id)}/members"), as_json, USER_COLUMNS)


@teams_app.command("add-member")
def teams_add_member(team_id: str, user_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                     as_json: JsonOpt = False,
                     role: Optional[str] = typer.Option(None, "--role", help="team_admin, member or viewer")) -> None:
    """Add a user to a team."""
    body = {"user_id": user_id, "role": role}
    _show(AdminClient(url, key).call("POST", f"/admin/teams/{_q(team_id)}/members", body=body), as_json)


@teams_app.command("remove-member")
def teams_remove_member(team_id: str, user_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                        as_json: JsonOpt = False) -> None:
    """Remove a user from a team (their keys in it are revoked)."""
    _show(AdminClient(url, key).call("DELETE", f"/admin/teams/{_q(team_id)}/members/{_q(user_id)}"), as_json)


@users_app.command("create")
def users_create(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                 email: Optional[str] = typer.Option(None, "--email"),
                 name: Optional[str] = typer.Option(None, "--name"),
                 role: str = typer.Option("member", "--role", help="admin, team_admin, member or viewer"),
                 team: Optional[str] = typer.Option(None, "--team"),
                 external_id: Optional[str] = typer.Option(None, "--external-id", help="The IdP's subject.")) -> None:
    """Create a user."""
    body = {"email": email, "name": name, "role": role, "team_id": team, "external_id": external_id}
    _show(AdminClient(url, key).call("POST", "/admin/users", body=body), as_json)


@users_app.command("list")
def users_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
               team: Optional[str] = typer.Option(None, "--team"), role: Optional[str] = typer.Option(None, "--role"),
               limit: int = typer.Option(100, "--limit")) -> None:
    """Users you may see."""
    params = {"team_id": team, "role": role, "limit": limit}
    _show(AdminClient(url, key).call("GET", "/admin/users", params=params), as_json, USER_COLUMNS)


@users_app.command("get")
def users_get(user_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    _show(AdminClient(url, key).call("GET", f"/admin/users/{_q(user_id)}"), as_json)


@users_app.command("update")
def users_update(user_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                 email: Optional[str] = typer.Option(None, "--email"),
                 name: Optional[str] = typer.Option(None, "--name"),
                 role: Optional[str] = typer.Option(None, "--role"), team: Optional[str] = typer.Option(None, "--team"),
                 no_team: bool = typer.Option(False, "--no-team", help="Take the user out of their team."),
                 external_id: Optional[str] = typer.Option(None, "--external-id"),
                 rpm: RpmOpt = None, tpm: TpmOpt = None, input_tpm: InTpmOpt = None, output_tpm: OutTpmOpt = None,
                 concurrency: ConcurrencyOpt = None, model_limit: ModelLimitOpt = None,
                 no_limits: NoLimitsOpt = False) -> None:
    """Change a user's email, name, role, team or limits (limits: admin only)."""
    client = AdminClient(url, key)
    given = _limits_given((rpm, tpm, input_tpm, output_tpm, concurrency), model_limit)
    fields = {"email": email, "name": name, "role": role, "team_id": team, "external_id": external_id}
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    body.update(_limits_change(client, f"/admin/users/{_q(user_id)}", given, no_limits))
    if no_team:
        body["team_id"] = None
    _show(client.call("PATCH", f"/admin/users/{_q(user_id)}", body=body), as_json)


@users_app.command("delete")
def users_delete(user_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                 yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a user; all their keys are revoked."""
    if not yes:
        typer.confirm(f"Delete user {user_id} and revoke all their keys?", abort=True)
    AdminClient(url, key).call("DELETE", f"/admin/users/{_q(user_id)}")
    err.print(f"user {user_id} deleted")


BUDGET_COLUMNS = ("id", "scope", "subject", "period", "max_usd", "soft_usd", "name", "team_id", "status")


@budgets_app.command("create")
def budgets_create(
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
    budget_scope: str = typer.Option(..., "--scope", help="key, team, user, end_user, model or tag"),
    subject: str = typer.Option(..., "--subject", help="Key, team or user id; end-user id, model alias or tag."),
    max_usd: float = typer.Option(..., "--max-usd", help="Hard limit in USD: calls are refused once reached."),
    soft_usd: Optional[float] = typer.Option(None, "--soft-usd", help="Alert threshold in USD (<= --max-usd)."),
    period: str = typer.Option("monthly", "--period", help="daily, weekly, monthly or none (UTC periods)."),
    name: Optional[str] = typer.Option(None, "--name", help="A label."),
) -> None:
    """Create a budget."""
    body = {"scope": budget_scope, "subject": subject, "max_usd": max_usd, "soft_usd": soft_usd, "period": period,
            "name": name}
    _show(AdminClient(url, key).call("POST", "/admin/budgets", body=body), as_json)


@budgets_app.command("list")
def budgets_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                 budget_scope: Optional[str] = typer.Option(None, "--scope"),
                 subject: Optional[str] = typer.Option(None, "--subject"),
                 team: Optional[str] = typer.Option(None, "--team"), limit: int = typer.Option(100, "--limit")) -> None:
    """Budgets you may see, with their live status when the gateway tracks spending."""
    params = {"scope": budget_scope, "subject": subject, "team_id": team, "limit": limit}
    _show(AdminClient(url, key).call("GET", "/admin/budgets", params=params), as_json, BUDGET_COLUMNS)


@budgets_app.command("get")
def budgets_get(budget_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """One budget and its status."""
    _show(AdminClient(url, key).call("GET", f"/admin/budgets/{_q(budget_id)}"), as_json)


@budgets_app.command("update")
def budgets_update(budget_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
                   max_usd: Optional[float] = typer.Option(None, "--max-usd"),
                   soft_usd: Optional[float] = typer.Option(None, "--soft-usd"),
                   no_soft: bool = typer.Option(False, "--no-soft", help="Remove the alert threshold."),
                   period: Optional[str] = typer.Option(None, "--period"),
                   name: Optional[str] = typer.Option(None, "--name")) -> None:
    """Change a budget's amounts, period or name."""
    fields = {"max_usd": max_usd, "soft_usd": soft_usd, "period": period, "name": name}
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if no_soft:
        body["soft_usd"] = None
    _show(AdminClient(url, key).call("PATCH", f"/admin/budgets/{_q(budget_id)}", body=body), as_json)


@budgets_app.command("delete")
def budgets_delete(budget_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                   yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a budget: its subject spends without this limit from now on."""
    if not yes:
        typer.confirm(f"Delete budget {budget_id}?", abort=True)
    AdminClient(url, key).call("DELETE", f"/admin/budgets/{_q(budget_id)}")
    err.print(f"budget {budget_id} deleted")


@app.command()
def usage(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
          group_by: str = typer.Option("model", "--group-by", help="key, team, user, model, tag or day"),
          start: Optional[str] = typer.Option(None, "--start", help="ISO 8601 date/time (default: 30 days ago)."),
          end: Optional[str] = typer.Option(None, "--end", help="ISO 8601 date/time (default: now)."),
          key_id: Optional[str] = typer.Option(None, "--key-id"), team: Optional[str] = typer.Option(None, "--team"),
          user: Optional[str] = typer.Option(None, "--user"),
          csv: bool = typer.Option(False, "--csv", help="Print CSV.")) -> None:
    """Requests, tokens and cost, grouped, over a time range."""
    from rich.table import Table

    params = {"group_by": group_by, "start": start, "end": end, "key_id": key_id, "team_id": team, "user_id": user,
              "format": "csv" if csv else None}
    result = AdminClient(url, key).call("GET", "/admin/usage", params=params)
    if csv:
        typer.echo(result, nl=False)
        return
    if as_json:
        _print_json(result)
        return
    columns = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd")
    table = Table(group_by, *columns, title=f"usage {result['start']} → {result['end']}", show_footer=True)
    for column in table.columns[1:]:
        column.justify = "right"
    for row in result["rows"]:
        table.add_row(_cell(row.get("group")), *(_number(row.get(c)) for c in columns))
    table.columns[0].footer = "total"
    for column, name in zip(table.columns[1:], columns, strict=True):
        column.footer = _number(result["totals"].get(name))
    Console().print(table)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return _cell(value)


@app.command()
def audit(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
          team: Optional[str] = typer.Option(None, "--team"), actor: Optional[str] = typer.Option(None, "--actor"),
          action: Optional[str] = typer.Option(None, "--action", help="e.g. key.create, team.update"),
          object_type: Optional[str] = typer.Option(None, "--object-type"),
          object_id: Optional[str] = typer.Option(None, "--object-id"),
          request_id: Optional[str] = typer.Option(None, "--request-id"),
          start: Optional[str] = typer.Option(None, "--start"), end: Optional[str] = typer.Option(None, "--end"),
          limit: int = typer.Option(50, "--limit")) -> None:
    """The audit log, newest first."""
    params = {"team_id": team, "actor": actor, "action": action, "object_type": object_type, "object_id": object_id,
              "request_id": request_id, "start": start, "end": end, "limit": limit}
    columns = ("ts", "actor", "action", "object_type", "object_id", "team_id", "request_id")
    _show(AdminClient(url, key).call("GET", "/admin/audit", params=params), as_json, columns)


@db_app.command("upgrade")
def db_upgrade(database_url: Optional[str] = typer.Option(None, "--database-url", envvar="SLUICE_DATABASE_URL",
                                                          help="Default: sqlite:///./sluice.db",
                                                          show_envvar=True)) -> None:
    """Create or migrate the database schema to the current version."""
    from sluice.store.db import database_url as resolve
    from sluice.store.migrate import upgrade

    try:
        asyncio.run(upgrade(database_url))
    except Exception as exc:  # noqa: BLE001 - the operator needs the reason, not a traceback
        err.print(f"[red]error:[/red] upgrade failed: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    err.print(f"[green]database is up to date[/green] ({_safe_url(resolve(database_url))})")


def _safe_url(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
