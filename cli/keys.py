"""``nbo keys``: make API keys and the ``NBO_API_KEYS`` entries that hold only their hashes."""

from __future__ import annotations

import json
import sys
from typing import cast

import typer
from pydantic import ValidationError

from core.api_keys import SCOPES, ApiKeyEntry, ApiScope, hash_key, new_key
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True)

SCOPES_HELP = f"Comma-separated scopes: {', '.join(SCOPES)}, or 'all'."


def _scopes(value: str) -> tuple[ApiScope, ...]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    if names == ["all"]:
        return SCOPES
    unknown = [n for n in names if n not in SCOPES]
    if unknown or not names:
        raise typer.BadParameter(f"unknown scope {', '.join(unknown) or '(none)'}; {SCOPES_HELP}")
    return tuple(dict.fromkeys(cast(list[ApiScope], names)))


def _entry(key: str, name: str, scopes: str, rate_limit: str | None) -> ApiKeyEntry:
    try:
        return ApiKeyEntry(
            name=name, sha256=hash_key(key), scopes=_scopes(scopes), rate_limit=rate_limit
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


def _entry_json(entry: ApiKeyEntry) -> str:
    return json.dumps(entry.model_dump(exclude_none=True))


NAME = typer.Option(..., "--name", help="Who holds the key, e.g. 'mobile-app' (not secret).")
SCOPES_OPTION = typer.Option("recommend", "--scopes", help=SCOPES_HELP)
RATE_LIMIT = typer.Option(
    None, "--rate-limit", help="This key's own limit, e.g. '50/second' or 'off'."
)


@app.command("new")
def new(
    name: str = NAME,
    scopes: str = SCOPES_OPTION,
    rate_limit: str | None = RATE_LIMIT,
    as_json: bool = typer.Option(False, "--json", help="Print {key, entry} as one JSON line."),
) -> None:
    """Make a random API key; print it once, with the NBO_API_KEYS entry holding its hash.

    Give the key to its holder (a secret store, never a repository); put the entry in the
    service's NBO_API_KEYS list. The key itself is shown only now.

    Example: nbo keys new --name mobile-app --scopes recommend,events
    """
    key = new_key()
    entry = _entry(key, name, scopes, rate_limit)
    if as_json:
        typer.echo(json.dumps({"key": key, "entry": entry.model_dump(exclude_none=True)}))
        return
    typer.echo(f"key (shown once): {key}")
    typer.echo(f"NBO_API_KEYS entry: {_entry_json(entry)}")


@app.command("hash")
def hash_(
    name: str = NAME,
    scopes: str = SCOPES_OPTION,
    rate_limit: str | None = RATE_LIMIT,
) -> None:
    """The NBO_API_KEYS entry of an existing key, read from standard input (or a prompt).

    The key is never an argument, so it stays out of shell history and process lists.

    Example: nbo keys hash --name batch-job --scopes audit < batch-job.key
    """
    if sys.stdin.isatty():
        key = typer.prompt("API key", hide_input=True)
    else:
        key = sys.stdin.read().strip()
    if not key:
        raise typer.BadParameter("no key on standard input")
    typer.echo(_entry_json(_entry(key, name, scopes, rate_limit)))


@app.command("list")
def list_() -> None:
    """The configured keys (NBO_API_KEYS): name, scopes and rate limit - never a key.

    Example: nbo keys list
    """
    settings = get_settings()
    if settings.auth_disabled:
        typer.echo("NBO_AUTH_DISABLED is set: the service accepts requests without a key")
    if not settings.api_keys:
        typer.echo("no API keys configured (NBO_API_KEYS); make one with `nbo keys new`")
    for entry in settings.api_keys:
        limit = entry.rate_limit or settings.rate_limit or "off"
        typer.echo(f"{entry.name}\t{','.join(entry.scopes)}\t{limit}")
