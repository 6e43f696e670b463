"""The `junction` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from junction.clock import SystemClock
from junction.errors import JunctionError
from junction.settings import Settings
from junction.store.database import Database

app = typer.Typer(
    help="Junction: self-hosted cross-channel customer messaging.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces and their API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
app.add_typer(import_app, name="import")
webpush_app = typer.Typer(help="Web push (VAPID) keys.", no_args_is_help=True)
app.add_typer(webpush_app, name="webpush")

console = Console()
errors = Console(stderr=True)
DEMO_WORKSPACE = "demo"
IMPORT_BATCH = 500


def _database(settings: Settings) -> Database:
    return Database(settings.database_url)


def _fail(error: Exception) -> None:
    errors.print(f"[red]error:[/red] {error}")
    raise typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration not yet applied."""
    from junction.store import migrate

    settings = Settings()
    migrate.upgrade(_database(settings))
    console.print(f"database at [bold]{settings.database_url}[/bold] is up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail if the migrated database and the tables in code differ."""
    from alembic.util import CommandError

    from junction.store import migrate

    try:
        migrate.check(_database(Settings()))
    except CommandError as error:
        _fail(error)
    console.print("the database matches the code")


@workspace_app.command("create")
def workspace_create(name: str) -> None:
    """Create a workspace and print its first API key (shown once, never again)."""
    from junction.store import migrate
    from junction.store.workspaces import create_workspace

    settings = Settings()
    database = _database(settings)
    migrate.upgrade(database)
    try:
        with database.write() as conn:
            issued = create_workspace(
                conn, name, SystemClock().now(), settings.resolved_secret_key()
            )
    except JunctionError as error:
        _fail(error)
    console.print(f"workspace [bold]{issued.workspace.name}[/bold] (id {issued.workspace.id})")
    console.print("API key (shown once; keep it somewhere safe):")
    print(issued.key)


@workspace_app.command("list")
def workspace_list() -> None:
    """List the workspaces."""
    from junction.store.workspaces import list_workspaces

    with _database(Settings()).read() as conn:
        rows = list_workspaces(conn)
    table = Table("id", "name", "created")
    for workspace in rows:
        table.add_row(str(workspace.id), workspace.name, workspace.created_at.isoformat())
    console.print(table)


@workspace_app.command("key")
def workspace_key(
    workspace: str,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
) -> None:
    """Issue another API key for a workspace (by name or id)."""
    from junction.store.workspaces import find_workspace, issue_key

    settings = Settings()
    try:
        with _database(settings).write() as conn:
            found = find_workspace(conn, workspace)
            issued = issue_key(
                conn, found, SystemClock().now(), settings.resolved_secret_key(), label
            )
    except JunctionError as error:
        _fail(error)
    print(issued.key)


@workspace_app.command("revoke")
def workspace_revoke(prefix: str) -> None:
    """Revoke an API key by its prefix (the `jk_XXXXXXXX` part)."""
    from junction.store.workspaces import revoke_key

    try:
        with _database(Settings()).write() as conn:
            revoke_key(conn, prefix, SystemClock().now())
    except JunctionError as error:
        _fail(error)
    console.print(f"revoked {prefix}")


@import_app.command("contacts")
def import_contacts(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".csv or .jsonl")],
    workspace: Annotated[str, typer.Option(help="Workspace name or id.")] = DEMO_WORKSPACE,
) -> None:
    """Import contacts as identify calls; bad rows are reported by line, good rows kept."""
    from junction.importer import count_lines, read_rows
    from junction.store.ingest import Batch, ingest
    from junction.store.workspaces import find_workspace

    settings = Settings()
    database = _database(settings)
    secret = settings.resolved_secret_key()
    clock = SystemClock()
    try:
        with database.read() as conn:
            workspace_id = find_workspace(conn, workspace).id
    except JunctionError as error:
        _fail(error)

    imported = 0
    bad: list[str] = []
    pending: list = []  # type: ignore[type-arg]

    def flush() -> None:
        nonlocal imported
        if pending:
            with database.write() as conn:
                ingest(conn, workspace_id, Batch(list(pending), clock.now()), secret)
            imported += len(pending)
            pending.clear()

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    try:
        total = count_lines(file)
        with Progress(*columns, console=errors) as progress:
            task = progress.add_task(f"importing {file.name}", total=total)
            last_line = 0
            for row in read_rows(file):
                progress.update(task, completed=row.line)
                last_line = row.line
                if row.identify is None:
                    reasons = "; ".join(f"{e.field}: {e.message}" for e in row.errors)
                    bad.append(f"line {row.line}: {reasons}")
                    continue
                pending.append(row.identify)
                if len(pending) >= IMPORT_BATCH:
                    flush()
            flush()
            progress.update(task, completed=max(last_line, total))
    except ValueError as error:
        _fail(error)
    for line in bad:
        errors.print(f"[yellow]skipped[/yellow] {line}")
    console.print(f"imported {imported} contacts, skipped {len(bad)} bad rows")
    if bad:
        raise typer.Exit(code=2 if imported == 0 else 0)


@app.command()
def serve(
    demo: Annotated[
        bool, typer.Option(help="Create the demo workspace and print a key for it.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the API and the dispatcher in one process (the embedded set-up)."""
    import uvicorn

    from junction.api.app import create_app
    from junction.logs import configure_logging
    from junction.store import migrate

    settings = Settings()
    configure_logging(settings)
    database = _database(settings)
    migrate.upgrade(database)
    if demo:
        _print_demo_key(settings, database, host or settings.host, port or settings.port)
    api = create_app(settings, database, run_dispatcher=True)
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


@webpush_app.command("keys")
def webpush_keys() -> None:
    """Generate a VAPID key pair: the private key goes in the webpush provider's config, the
    public key is the applicationServerKey your site passes to pushManager.subscribe()."""
    from junction.channels.webpush import generate_vapid_keys

    private_pem, public_key = generate_vapid_keys()
    # Plain print: a terminal-width wrap would break the keys when copied.
    console.print("public key (applicationServerKey):")
    print(public_key)
    console.print("private key (vapid_private_key; keep it secret):")
    print(private_pem)


@app.command()
def worker() -> None:
    """Run only the dispatcher: claim due messages and send them (scale-out on PostgreSQL)."""
    import asyncio
    import signal

    from junction.engine import loop
    from junction.engine.dispatcher import Dispatcher, settings_from
    from junction.engine.personalising import links_from
    from junction.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    database = _database(settings)

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(sig, stop.set)
        console.print("dispatcher running; Ctrl-C to stop")
        await Dispatcher(
            database, SystemClock(), settings_from(settings), links=links_from(settings)
        ).run(stop)

    loop.run(main())


def _print_demo_key(settings: Settings, database: Database, host: str, port: int) -> None:
    """Each demo start issues a fresh key (keys are stored hashed, so an old one cannot be
    shown again) and revokes the previous demo key."""
    from junction.store.workspaces import create_workspace, find_workspace, issue_key, revoke_keys

    now = SystemClock().now()
    secret = settings.resolved_secret_key()
    with database.write() as conn:
        try:
            workspace = find_workspace(conn, DEMO_WORKSPACE)
        except JunctionError:
            workspace = create_workspace(conn, DEMO_WORKSPACE, now, secret).workspace
        revoke_keys(conn, workspace.id, now, label="demo")
        issued = issue_key(conn, workspace, now, secret, label="demo")
    console.rule("[bold]Junction demo")
    console.print(f"API     http://{host}:{port}   docs: http://{host}:{port}/docs")
    console.print(f"Key     [bold green]{issued.key}[/bold green]   (workspace '{DEMO_WORKSPACE}')")
    console.print(f"Try     curl -u {issued.key}: http://{host}:{port}/v1/track \\")
    console.print(
        "          -H 'Content-Type: application/json' "
        '-d \'{"userId":"ada","event":"Signed Up"}\''
    )
    console.rule()
    sys.stdout.flush()
