"""The `junction` command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from junction.clock import SystemClock
from junction.errors import InvalidInput, JunctionError
from junction.settings import Settings
from junction.store.database import Database

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy import Connection

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
schema_app = typer.Typer(help="JSON Schemas of the files Junction reads.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

console = Console()
errors = Console(stderr=True)
DEMO_WORKSPACE = "demo"
IMPORT_BATCH = 500


def _database(settings: Settings) -> Database:
    return Database(settings.database_url)


@contextmanager
def _opened(settings: Settings) -> Iterator[Database]:
    """The database, its connections closed when the command is done."""
    database = _database(settings)
    try:
        yield database
    finally:
        database.dispose()


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


# Definitions kept as files: apply, preview, schema ---------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentType:
    """A kind of definition `junction apply` reads, recognised by its top-level fields."""

    name: str
    marks: tuple[str, ...]  # a document with any of these fields is one of these
    rank: Callable[[dict[str, Any]], int]  # the order documents are saved in, lowest first
    save: Callable[[Connection, int, dict[str, Any], datetime], dict[str, Any]]


def document_types() -> list[DocumentType]:
    """What `junction apply` can save. A new kind of definition (journeys) is one more entry:
    its marks must not overlap another's, so that a document is never two things at once."""
    from junction.store import journeys, segments, templates

    return [
        DocumentType(
            name="segment",
            marks=("where",),
            rank=lambda body: 0,  # before the journeys that start on them
            save=segments.save,
        ),
        DocumentType(
            name="template",
            marks=("channels", "page", "kind"),
            # Landing pages first: an SMS may link to one applied alongside it.
            rank=lambda body: 0 if body.get("kind") == "landing" else 1,
            save=templates.save,
        ),
        DocumentType(
            name="journey",
            marks=("steps", "trigger"),
            rank=lambda body: 2,  # after the templates its steps send
            save=journeys.save,
        ),
    ]


@dataclass(frozen=True, slots=True)
class _Document:
    where: str  # the file, and the document's number when the file holds several
    body: dict[str, Any]
    type: DocumentType
    position: int  # in the order given, for the report


class _Rejected(Exception):
    """Rolls the apply transaction back."""


def _load_documents(path: Path) -> list[Any]:
    """The documents of a JSON file (one) or a YAML file (one or more, split by ``---``);
    ``ValueError`` naming the line and column of a syntax error."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("file: is not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as error:
            raise ValueError(
                f"json: line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
    try:
        return [body for body in yaml.safe_load_all(text) if body is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        raise ValueError(f"yaml: {at}{getattr(error, 'problem', None) or error}") from None


def _document_type(body: Any, types: list[DocumentType]) -> DocumentType | str:
    """The type of a document, or why it has none."""
    known = "; ".join(f"a {t.name} has {', '.join(t.marks)}" for t in types)
    if not isinstance(body, dict):
        return f"a definition is a mapping of fields, not {type(body).__name__} ({known})"
    found = [t for t in types if any(mark in body for mark in t.marks)]
    if not found:
        return f"not a definition Junction knows ({known})"
    if len(found) > 1:
        return f"looks like both a {found[0].name} and a {found[1].name}"
    return found[0]


def _print_problem(line: str) -> None:
    errors.print(escape(line), soft_wrap=True)


@app.command("apply")
def apply_files(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="YAML or JSON files of definitions."),
    ],
    workspace: Annotated[str, typer.Option(help="Workspace name or id.")] = DEMO_WORKSPACE,
) -> None:
    """Save the templates defined in YAML or JSON files, all or nothing: every file is checked
    first, and if any is invalid nothing is saved. A YAML file may hold several, split by ---.
    An unchanged template keeps its version; a changed one becomes the next version."""
    from junction.store.workspaces import find_workspace

    types = document_types()
    problems: list[str] = []
    documents: list[_Document] = []
    for path in files:
        try:
            found = _load_documents(path)
        except ValueError as error:
            problems.append(f"{path}: {error}")
            continue
        if not found:
            problems.append(f"{path}: file: holds no definition")
        for number, body in enumerate(found, start=1):
            where = str(path) if len(found) == 1 else f"{path} (document {number})"
            kind = _document_type(body, types)
            if isinstance(kind, str):
                problems.append(f"{where}: document: {kind}")
            else:
                documents.append(_Document(where, body, kind, len(documents)))
    first_of: dict[tuple[str, Any], str] = {}
    for document in documents:
        name = (document.type.name, document.body.get("key"))
        if name[1] is not None and name in first_of:
            problems.append(
                f"{document.where}: key: {name[1]!r} is also defined in {first_of[name]}"
            )
        first_of.setdefault(name, document.where)

    saved: dict[int, dict[str, Any]] = {}
    try:
        with _opened(Settings()) as database, database.write() as conn:
            workspace_id = find_workspace(conn, workspace).id
            now = SystemClock().now()
            for document in sorted(documents, key=lambda d: d.type.rank(d.body)):
                try:
                    saved[document.position] = document.type.save(
                        conn, workspace_id, document.body, now
                    )
                except InvalidInput as error:
                    problems += [f"{document.where}: {e.field}: {e.message}" for e in error.errors]
            if problems:
                raise _Rejected
    except _Rejected:
        for line in problems:
            _print_problem(line)
        errors.print(f"[red]nothing saved:[/red] {len(problems)} problem(s)")
        raise typer.Exit(code=1) from None
    except JunctionError as error:
        _fail(error)

    table = Table("key", "kind", "version", "", "variables")
    for position in sorted(saved):
        summary = saved[position]
        table.add_row(
            summary["key"],
            summary.get("kind", documents[position].type.name),
            str(summary["version"]),
            "created" if summary["created"] else "unchanged",
            ", ".join(summary.get("variables", [])),
        )
    console.print(table)
    created = sum(1 for s in saved.values() if s["created"])
    console.print(f"{created} created, {len(saved) - created} unchanged")


def _json_object(path: Path | None, option: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        _fail(ValueError(f"{option} {path}: line {error.lineno} column {error.colno}: {error.msg}"))
    except UnicodeDecodeError:
        _fail(ValueError(f"{option} {path}: is not UTF-8 text"))
    if isinstance(value, dict):
        return value
    _fail(ValueError(f"{option} {path}: must hold a JSON object"))
    return None


@app.command("preview")
def preview_template(
    key: Annotated[str, typer.Argument(help="The template's key.")],
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="Render for this stored contact.")
    ] = None,
    contact: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="JSON object of traits (over the stored contact's)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON object: the send's {{ data }}."),
    ] = None,
    event: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON object: a sample {{ event }}."),
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="Only this channel (repeatable).")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Locale, e.g. fr-CA.")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="A version other than the current one.")
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="Show each email's HTML too.")] = False,
    workspace: Annotated[str, typer.Option(help="Workspace name or id.")] = DEMO_WORKSPACE,
) -> None:
    """Show a template rendered for one contact, channel by channel, as it would be sent
    (links tracked, as they will be); SMS with segments and encoding."""
    from junction.engine.personalising import links_from
    from junction.store import templates
    from junction.store.workspaces import find_workspace

    request = templates.PreviewRequest(
        version=version,
        user_id=user_id,
        contact=_json_object(contact, "--contact"),
        data=_json_object(data, "--data"),
        event=_json_object(event, "--event"),
        channels=channel or None,
        locale=locale,
    )
    try:
        settings = Settings()
        with _opened(settings) as database, database.read() as conn:
            workspace_id = find_workspace(conn, workspace).id
            shown = templates.preview(conn, workspace_id, key, request, links_from(settings))
    except JunctionError as error:
        _fail(error)
    console.print(
        f"[bold]{escape(shown['key'])}[/bold] version {shown['version']}, "
        f"locale {escape(shown['locale'] or 'default')}"
    )
    failed = False
    for name, entry in shown["channels"].items():
        failed |= not _show_channel(name, entry, html)
    if failed:
        raise typer.Exit(code=1)


def _show_channel(channel: str, entry: dict[str, Any], html: bool) -> bool:
    """Print one channel's rendering; False when it could not be rendered."""
    console.rule(escape(channel if entry["locale"] is None else f"{channel} ({entry['locale']})"))
    if "error" in entry:
        errors.print(f"[red]cannot render:[/red] {escape(entry['error'])}", soft_wrap=True)
        return False
    content: dict[str, Any] = entry["content"]
    if channel == "email":
        _show_field("subject", content.get("subject", ""))
        if "text" in content:
            _show_field("text", content["text"])
        if html and "html" in content:
            _show_field("html", content["html"])
    elif channel == "sms":
        _show_field("text", content["text"])
        sms = entry["sms"]
        plural = "" if sms["segments"] == 1 else "s"
        console.print(
            f"[dim]{sms['segments']} segment{plural}, {sms['encoding']}, "
            f"{sms['characters']} characters[/dim]"
        )
    else:
        for name, value in content.items():
            _show_field(name, value)
    for problem in entry.get("problems", []):
        errors.print(
            f"[yellow]problem:[/yellow] {escape(problem['field'])}: {escape(problem['message'])}",
            soft_wrap=True,
        )
    return True


def _show_field(name: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
    if "\n" in text.strip():
        console.print(f"[bold]{name}:[/bold]")
        console.print(escape(text.rstrip("\n")), soft_wrap=True, highlight=False)
    else:
        console.print(f"[bold]{name}:[/bold] {escape(text)}", soft_wrap=True, highlight=False)


def schema_text(model: type[BaseModel]) -> str:
    """A model's JSON Schema as published in ``docs/schemas/`` (2-space indent, final newline)."""
    schema = model.model_json_schema(by_alias=True)
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@schema_app.command("template")
def schema_template() -> None:
    """Print the JSON Schema of a template definition (docs/schemas/template.schema.json)."""
    from junction.domain.templates import TemplateDefinition

    sys.stdout.write(schema_text(TemplateDefinition))


@schema_app.command("journey")
def schema_journey() -> None:
    """Print the JSON Schema of a journey definition (docs/schemas/journey.schema.json)."""
    from junction.domain.journey_model import JourneyDefinition

    sys.stdout.write(schema_text(JourneyDefinition))


@schema_app.command("segment")
def schema_segment() -> None:
    """Print the JSON Schema of a segment definition (docs/schemas/segment.schema.json)."""
    from junction.domain.segments import SegmentDefinition

    sys.stdout.write(schema_text(SegmentDefinition))


@app.command("simulate")
def simulate_journey(
    journey: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The journey's YAML or JSON file.")
    ],
    templates: Annotated[
        list[Path] | None,
        typer.Option(
            "--templates",
            exists=True,
            dir_okay=False,
            help="Files of the templates it sends (repeatable); missing ones get placeholders.",
        ),
    ] = None,
    contacts: Annotated[int, typer.Option(min=1, help="How many synthetic people.")] = 1000,
    days: Annotated[int, typer.Option(min=1, help="How long to simulate.")] = 7,
    assume: Annotated[
        str,
        typer.Option(
            help="Probabilities: opens (per email), clicks (per email, SMS, push), and any "
            "other name is an event each person performs once, e.g. "
            "opens=0.3,clicks=0.05,purchase=0.02."
        ),
    ] = "",
    event_name: Annotated[
        list[str] | None,
        typer.Option(
            "--event-name",
            help='The event an assumption performs, e.g. purchase="Order Completed" '
            "(repeatable; default: the assumption's name).",
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='JSON lines to replay: {"userId": "sim-000001", "event": "...", '
            '"properties": {...}, "at": HOURS_FROM_START}.',
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same numbers.")] = 1,
    step_hours: Annotated[
        float, typer.Option(min=0.01, help="How far the clock moves at each step.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Forecast a journey before it goes live: run it on a virtual clock, in a throwaway
    database, for synthetic people (sim-000001…, each with an email, a phone and a push
    device), sending through the capture provider (nothing leaves). Everyone performs the
    trigger event at hour 0 (or is entered through the API; a schedule fires on its cron).
    Prints, per step, how many entered, were sent each channel, failed, wait, converted and
    exited; and when messages go out, day by day (hour by hour within 2 days). Details and
    examples: "Simulating" in docs/journeys.md."""
    from junction.simulate import Forecast, Refused, parse_assumptions, simulate

    try:
        assumed = parse_assumptions(assume)
        names: dict[str, str] = {}
        for item in event_name or []:
            key, sign, value = item.partition("=")
            if not sign or not key.strip() or not value.strip():
                raise ValueError(f"--event-name {item!r}: write name=Event Name")
            names[key.strip()] = value.strip().strip("\"'")
    except ValueError as error:
        _fail(error)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=errors, disable=as_json, transient=True) as progress:
            task = progress.add_task(f"simulating {journey.name}", total=None)
            forecast: Forecast = simulate(
                journey,
                templates or [],
                contacts,
                days,
                assumed,
                events,
                seed,
                step_hours,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                event_names=names,
            )
    except Refused as refused:
        for line in refused.problems:
            _print_problem(line)
        errors.print("[red]not simulated[/red]")
        raise typer.Exit(code=1) from None
    if as_json:
        print(json.dumps(forecast.as_dict(), indent=2))
        return
    _print_forecast(forecast)


def _print_forecast(forecast: Any) -> None:
    from rich import box

    console.print(
        f"[bold]{escape(forecast.journey)}[/bold]: {forecast.contacts} people, "
        f"{forecast.days} days, seed {forecast.seed}, steps of {forecast.step_hours:g} h"
    )
    for note in forecast.notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    steps = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    for name in ("step", "type", "entered", "sent", "failed", "waiting", "converted", "exited"):
        left = name in ("step", "type")
        steps.add_column(name, no_wrap=True, justify="left" if left else "right")
    for step in forecast.steps:
        sent = ", ".join(f"{channel} {n}" for channel, n in step.sent.items())
        if step.pending:
            sent += f" ({step.pending} pending)"
        steps.add_row(
            step.id,
            step.type,
            str(step.entered),
            sent or ("0" if step.type == "send" else ""),
            str(step.failed or ""),
            str(step.waiting or ""),
            str(step.converted or ""),
            str(step.exited or ""),
        )
    console.print(steps)
    console.print()
    channels = list(forecast.channels)
    when = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    for name in ("when", *channels, "total"):
        when.add_column(name, no_wrap=True, justify="left" if name == "when" else "right")
    first = forecast.timeline[0] if forecast.timeline else None
    hourly = first is not None and first.to_hour - first.from_hour < 24
    for bucket in forecast.timeline:
        total = sum(bucket.sent.values())
        if hourly and not total:
            continue
        span = f"{bucket.label} ({bucket.from_hour:g}-{bucket.to_hour:g} h)"
        when.add_row(span, *(str(bucket.sent.get(c, 0)) for c in channels), str(total))
    when.add_row(
        "[bold]total[/bold]",
        *(str(forecast.channels[c]) for c in channels),
        str(sum(forecast.channels.values())),
    )
    console.print(when)
    console.print(
        f"entered {forecast.entered}; runs: "
        + (", ".join(f"{status} {n}" for status, n in forecast.runs.items()) or "none")
    )
    performed = ", ".join(f"{escape(name)} {n}" for name, n in forecast.events.items())
    console.print(f"[dim]events performed: {performed or 'none'}[/dim]")


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
    from junction.engine import loop
    from junction.logs import configure_logging
    from junction.store import migrate

    settings = Settings()
    configure_logging(settings)
    database = _database(settings)
    migrate.upgrade(database)
    if demo:
        _print_demo_key(settings, database, host or settings.host, port or settings.port)
    api = create_app(settings, database, run_dispatcher=True)
    loop.settle_collector()
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


# Campaigns: create, schedule, send, pause, resume, cancel, status -------------------------

campaign_app = typer.Typer(help="Campaigns (broadcasts).", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
WorkspaceOption = Annotated[str, typer.Option(help="Workspace name or id.")]


def _in_workspace(workspace: str, fn: Callable[..., Any], *args: Any, write: bool = True) -> Any:
    """``fn(conn, workspace_id, *args, now)`` on the configured database; errors printed,
    each invalid field on its own line."""
    from junction.store.workspaces import find_workspace

    try:
        with (
            _opened(Settings()) as database,
            database.write() if write else database.read() as conn,
        ):
            workspace_id = find_workspace(conn, workspace).id
            return fn(conn, workspace_id, *args)
    except InvalidInput as error:
        for problem in error.errors:
            _print_problem(f"{problem.field}: {problem.message}")
        raise typer.Exit(code=1) from None
    except JunctionError as error:
        _fail(error)


@campaign_app.command("create")
def campaign_create(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".yaml or .json")],
    workspace: WorkspaceOption = DEMO_WORKSPACE,
) -> None:
    """Save a campaign definition as a draft (or change a draft)."""
    from junction.store import campaigns

    try:
        documents = _load_documents(file)
    except ValueError as error:
        _fail(error)
    if len(documents) != 1:
        _fail(ValueError(f"{file.name}: holds {len(documents)} documents; give one campaign"))
    saved = _in_workspace(workspace, campaigns.save, documents[0], SystemClock().now())
    what = "created" if saved["created"] else "changed" if saved["changed"] else "unchanged"
    console.print(f"campaign {escape(saved['key'])}: {what} ({saved['status']})")


@campaign_app.command("schedule")
def campaign_schedule(
    key: str,
    at: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"], help="ISO time."),
    ] = None,
    workspace: WorkspaceOption = DEMO_WORKSPACE,
) -> None:
    """Schedule a draft at its time (or --at, with an offset unless it is a local time)."""
    from junction.store import campaigns

    shown = _in_workspace(workspace, campaigns.schedule, key, SystemClock().now(), at)
    console.print(f"campaign {escape(key)}: scheduled, starts {shown['scheduledAt']}")


def _campaign_move(action: str) -> Callable[[str, str], None]:
    def command(key: str, workspace: WorkspaceOption = DEMO_WORKSPACE) -> None:
        from junction.store import campaigns

        now = SystemClock().now()
        if action == "send":
            shown = _in_workspace(workspace, campaigns.send, key, now)
        else:
            shown = _in_workspace(workspace, campaigns.move, key, action, now)
        console.print(f"campaign {escape(key)}: {shown['status']}")

    return command


for _action, _help in (
    ("send", "Start sending now: the audience is frozen."),
    ("pause", "Pause a scheduled or sending campaign."),
    ("resume", "Resume a paused campaign."),
    ("cancel", "Cancel: nobody not yet queued will be sent it."),
):
    campaign_app.command(_action, help=_help)(_campaign_move(_action))


@campaign_app.command("status")
def campaign_status(
    key: str,
    watch: Annotated[
        bool, typer.Option("--watch", help="A progress bar until it is no longer sending.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 1.0,
    workspace: WorkspaceOption = DEMO_WORKSPACE,
) -> None:
    """A campaign's state, progress and per-variant results."""
    import time

    from junction.store import campaigns

    shown = _in_workspace(workspace, campaigns.status, key, write=False)
    if watch and shown["status"] in ("scheduled", "sending"):
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=errors) as progress:
            task = progress.add_task(f"campaign {key}", total=None, state=shown["status"])
            while True:
                done = shown["progress"]
                total = done["audience"] - done["control"]
                progress.update(
                    task,
                    total=total or None,
                    completed=done["queued"] + done["skipped"],
                    state=shown["status"],
                )
                if shown["status"] not in ("scheduled", "sending"):
                    break
                time.sleep(interval)  # a person watching: one look per interval
                shown = _in_workspace(workspace, campaigns.status, key, False, write=False)
        shown = _in_workspace(workspace, campaigns.status, key, write=False)
    _print_campaign(shown)


def _print_campaign(shown: dict[str, Any]) -> None:
    console.print(f"[bold]{escape(shown['key'])}[/bold] {shown['status']}")
    for name in ("scheduledAt", "startedAt", "finishedAt", "winner"):
        if shown.get(name):
            console.print(f"  {name}: {shown[name]}")
    console.print("  " + ", ".join(f"{name} {value}" for name, value in shown["progress"].items()))
    if shown["variants"]:
        table = Table(
            "variant", "recipients", "sent", "delivered", "opened", "clicked", "converted"
        )
        for name, counts in shown["variants"].items():
            table.add_row(
                name,
                *(
                    str(counts.get(c, 0))
                    for c in ("recipients", "sent", "delivered", "opened", "clicked", "converted")
                ),
            )
        console.print(table)
    group = shown["controlGroup"]
    if group["recipients"]:
        console.print(f"  control group: {group['recipients']}, converted {group['converted']}")


@schema_app.command("campaign")
def schema_campaign() -> None:
    """Print the JSON Schema of a campaign definition (docs/schemas/campaign.schema.json)."""
    from junction.domain.campaigns import CampaignDefinition

    sys.stdout.write(schema_text(CampaignDefinition))


# Segments ----------------------------------------------------------------------------------

segment_app = typer.Typer(help="Segments: behavioural audiences.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")


@segment_app.command("list")
def segment_list(workspace: WorkspaceOption = DEMO_WORKSPACE) -> None:
    """Segments and how many people are in each now."""
    from junction.store import segments

    found = _in_workspace(workspace, segments.list_segments, write=False)
    table = Table("key", "name", "status", "version", "members")
    for row in found:
        table.add_row(
            row["key"], row["name"] or "", row["status"], str(row["version"]), str(row["members"])
        )
    console.print(table)


@segment_app.command("show")
def segment_show(
    key: Annotated[str, typer.Argument(help="The segment's key.")],
    workspace: WorkspaceOption = DEMO_WORKSPACE,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many members to list.")] = 20,
) -> None:
    """A segment's member count and its first members."""
    from junction.store import segments

    shown = _in_workspace(workspace, segments.get, key, write=False)
    page = _in_workspace(workspace, segments.members, key, limit, write=False)
    console.print(f"{escape(shown['key'])}: {shown['members']} member(s), {shown['status']}")
    for member in page["members"]:
        console.print(f"  {escape(member['userId'] or str(member['id']))}")


@segment_app.command("evaluate")
def segment_evaluate(
    key: Annotated[str, typer.Argument(help="The segment's key.")],
    workspace: WorkspaceOption = DEMO_WORKSPACE,
) -> None:
    """Evaluate a whole segment again now (after a bulk import that bypassed the event
    stream), with a progress bar."""
    from junction.store import segments

    with Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("evaluate", total=None)

        def moved(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = _in_workspace(workspace, segments.reevaluate, key, SystemClock().now(), moved)
    console.print(f"{escape(result['key'])}: {result['members']} member(s)")
