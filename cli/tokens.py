"""``torc-graph tokens create|list|revoke``: API tokens (admin only on a server), and the admin
token ``torc-graph serve`` creates on first start."""

from __future__ import annotations

import os
import re
from typing import Any

import click

from torc_graph.cli.output import Column, emit_json, emit_table
from torc_graph.cli.options import client_options, json_option
from torc_graph.client import Client, seg
from torc_graph.config import config_dir

TOKEN_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name"),
    Column("ROLE", "role"),
    Column("WORKFLOW", "workflow"),
    Column("EXPIRES", "expires"),
    Column("REVOKED", "revoked"),
    Column("CREATED", "created"),
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(_ctx, _param, value: str | None) -> float | None:
    if value is None:
        return None
    m = _DURATION.match(value.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter("use a positive number of seconds or 30m, 12h, 7d")
    return float(m.group(1)) * _SECONDS[m.group(2)]


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (needs an admin token when talking to a server).

    \b
    Example:
        torc-graph tokens create --name alice --role editor
        torc-graph tokens create --name node-7 --role executor --workflow 12 --expires-in 2d
        torc-graph tokens list
        torc-graph tokens revoke 42
    """


@tokens.command("create")
@click.option("--name", required=True, help="Who or what holds the token (shown in audits).")
@click.option("--role", required=True,
              type=click.Choice(["reader", "editor", "executor", "admin"]),
              help="reader: read all; editor: create and change own workflows; executor: run "
                   "the jobs of one workflow; admin: everything.")
@click.option("--workflow", help="The workflow key of an executor token (required for it).")
@click.option("--expires-in", callback=_duration, metavar="DURATION",
              help="Lifetime: seconds or 30m, 12h, 7d (default: no expiry).")
@click.option("--output", "output", type=click.Path(dir_okay=False),
              help="Write the token to this new file (mode 0600) instead of printing it.")
@json_option
@client_options
def create_token(client: Client, as_json: bool, name: str, role: str, workflow: str | None,
                 expires_in: float | None, output: str | None) -> None:
    """Create a token. It is shown once (or written to --output); only its hash is stored.

    \b
    Example:
        torc-graph tokens create --name slurm-12 --role executor --workflow 12 \\
            --expires-in 1d --output ~/.config/torc_graph/wf12.token
    """
    body: dict[str, Any] = {"name": name, "role": role}
    if workflow is not None:
        body["workflow"] = workflow
    if expires_in is not None:
        body["expires_in"] = expires_in
    created = client.post("/tokens", body)
    if output:
        write_secret_file(output, created["token"])
        created = {**created, "token": None, "file": os.path.abspath(output)}
    if as_json:
        emit_json(created)
        return
    doc = created["document"]
    click.echo(f"Created {doc['role']} token {doc['_key']} ({doc['name']}).")
    if output:
        click.echo(f"Token written to {created['file']} (mode 0600); "
                   f"use it with TORC_GRAPH_TOKEN_FILE={created['file']}")
    else:
        click.echo(created["token"])


@tokens.command("list")
@json_option
@client_options
def list_tokens(client: Client, as_json: bool) -> None:
    """List tokens (never their secrets).

    \b
    Example:
        torc-graph tokens list --json
    """
    emit_table(client.get("/tokens")["items"], TOKEN_COLUMNS, as_json, empty="No tokens.")


@tokens.command("revoke")
@click.argument("key")
@json_option
@client_options
def revoke_token(client: Client, as_json: bool, key: str) -> None:
    """Revoke a token by key: it stops working at once.

    \b
    Example:
        torc-graph tokens revoke 42
    """
    doc = client.delete(f"/tokens/{seg(key)}")
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"Revoked token {doc['_key']} ({doc['name']}).")


def write_secret_file(path: str, secret: str) -> None:
    """Write ``secret`` to the NEW file ``path`` with mode 0600 (its directory 0700 if created).
    Raises click.ClickException if the file exists."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; not overwriting a token file") from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


def default_token_file() -> str:
    """``~/.config/torc_graph/token`` (where clients look last, docs/execution-model.md §6)."""
    return os.path.join(config_dir(), "token")


def bootstrap_admin_token(store, settings: dict[str, Any]) -> str | None:
    """First start of ``torc-graph serve``: create an admin token, write it (mode 0600) and print
    the path once. Nothing happens when the token file already holds a valid token of this
    database. Returns the path written, if any."""
    from torc_graph.engine import tokens as engine_tokens

    path = settings["admin_token_file"] or default_token_file()
    existing = _read(path)
    if existing and engine_tokens.verify(store, existing):
        return None
    if engine_tokens.has_admin(store):
        if existing is None:
            click.echo(f"Authentication is on; this database's admin token is not in {path} "
                       "(set TORC_GRAPH_TOKEN_FILE for clients).", err=True)
        return None
    target, n = path, 1
    while os.path.exists(target):  # another database's token: keep it
        target, n = f"{path}.{n}", n + 1
    token, _ = engine_tokens.create(store, name="admin", role="admin", created_by="serve")
    write_secret_file(target, token)
    hint = "" if target == default_token_file() else f" (clients: TORC_GRAPH_TOKEN_FILE={target})"
    click.echo(f"Created the admin token in {target} (mode 0600){hint}.", err=True)
    return target


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None
