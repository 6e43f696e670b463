"""One batch of the journey runtime (``junction.store.journey_runs``) as one transaction:
what it reads — runs, contacts, definitions, earlier runs, for many at once — and what it
writes when it ends — run states, new runs, counts and sends, each in one statement.

Rules kept here:
- a run this batch has read or moved is always taken at its latest state: rows are written
  only when the batch ends, and a run the batch started has no row until then (its id is
  taken up front: SQLite, after the highest, under the write lock; PostgreSQL, the sequence);
- runs read to be moved are locked on PostgreSQL (``FOR UPDATE``), in id order;
- statements go straight to the driver (``junction.store.raw``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from junction.domain.journeys import FINAL, JourneyDefinition, RunState, SendIntent
from junction.store import journeys as definitions
from junction.store.journey_sends import PendingSend, queue_together, send_alone, simple
from junction.store.raw import Raw

UNFINISHED = f"status NOT IN ({', '.join(repr(status) for status in sorted(FINAL))})"
RUN_COLUMNS = "id, workspace_id, journey_id, version, contact_id, state"


@dataclass(slots=True)
class Run:
    """A run a batch holds: one object per run, its ``state`` the latest (``Batch.write``
    sets it in place)."""

    id: int
    workspace_id: int
    journey_id: int
    version: int
    contact_id: int
    state: RunState


@dataclass(frozen=True, slots=True)
class JourneyRef:
    """What entering needs of a journey's row."""

    id: int
    workspace_id: int
    current_version: int


@dataclass(slots=True)  # not frozen: built for every entry, changed by none
class Earlier:
    """A run a person had of a journey, for its entry rules."""

    id: int
    entered_at: datetime
    status: str


class Batch:
    """One batch's transaction: what it has read (definitions, contacts, runs at their latest
    state) and what it will write (run states, counts, sends), written once at the end.

    Runs are read for many people at once (``load_open_runs``, ``load_runs``,
    ``load_earlier``); a run this batch has moved is always taken at its new state, its
    row being written only when the batch ends."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.raw = Raw(conn)
        self._lock = " FOR UPDATE" if self.raw.postgres else ""
        self._definitions: dict[tuple[int, int], JourneyDefinition] = {}
        self._contacts: dict[int, tuple[str | None, dict[str, Any]]] = {}
        self.runs: dict[int, Run] = {}  # every run read or moved, at its latest state
        self._open: dict[int, list[int]] = {}  # unfinished runs by contact, loaded ones
        self._earlier: dict[tuple[int, int], list[Earlier]] = {}
        self._entered: list[int] = []  # runs this batch started: rows to insert
        self._entered_by_contact: dict[int, list[int]] = {}
        self._last_id: int | None = None
        self._writes: dict[int, datetime | None] = {}  # runs moved: their timers
        # (journey, step, metric): how much to add; ``_advance`` adds to it directly.
        self.counts: dict[tuple[int, str, str], int] = {}
        self.sends: list[PendingSend] = []  # the simple ones, queued together at the end
        self._senders: list[Run] = []  # the run of each

    def definition(self, journey_id: int, version: int) -> JourneyDefinition:
        key = (journey_id, version)
        found = self._definitions.get(key)
        if found is None:
            found = self._definitions[key] = definitions.load_fast(self.raw, journey_id, version)
        return found

    # --- reading, for many at once ---------------------------------------------------------

    def prefetch(self, contact_ids: Iterable[int]) -> None:
        wanted = {c for c in contact_ids if c not in self._contacts}
        rows = self.raw.rows_in(
            "SELECT id, user_id, traits, timezone FROM contacts WHERE id IN ({})", wanted
        )
        for contact_id, user_id, traits, timezone in rows:
            self._contacts[contact_id] = (
                user_id,
                {**(self.raw.read_json(traits) or {}), "timezone": timezone},
            )

    def contact(self, contact_id: int) -> tuple[str | None, dict[str, Any]]:
        if contact_id not in self._contacts:
            self.prefetch([contact_id])
        return self._contacts.get(contact_id, (None, {}))

    def traits_changed(self, contact_id: int, values: dict[str, Any]) -> None:
        user_id, contact = self.contact(contact_id)
        self._contacts[contact_id] = (user_id, {**contact, **values})

    def known(self, rows: list[Any]) -> list[Run]:
        """Runs from rows, those this batch holds at their latest state."""
        found = []
        runs, read_json, from_dict = self.runs, self.raw.read_json, RunState.from_dict
        for run_id, workspace_id, journey_id, version, contact_id, state in rows:
            run = runs.get(run_id)
            if run is None:
                run = runs[run_id] = Run(
                    run_id,
                    workspace_id,
                    journey_id,
                    version,
                    contact_id,
                    from_dict(read_json(state)),
                )
            found.append(run)
        return found

    def load_open_runs(self, contact_ids: Iterable[int]) -> None:
        """The unfinished runs of these people (locked on PostgreSQL)."""
        wanted = sorted({c for c in contact_ids if c not in self._open})
        for contact_id in wanted:
            self._open[contact_id] = []
        rows = self.raw.rows_in(
            f"SELECT {RUN_COLUMNS} FROM journey_runs WHERE {UNFINISHED} "
            f"AND contact_id IN ({{}}) ORDER BY id{self._lock}",
            wanted,
        )
        for run in self.known(rows):
            self._open[run.contact_id].append(run.id)
        for contact_id in wanted:  # runs entered by this batch have no row yet
            self._open[contact_id].extend(self._entered_by_contact.get(contact_id, []))

    def open_runs(self, contact_id: int) -> list[Run]:
        if contact_id not in self._open:
            self.load_open_runs([contact_id])
        return [self.runs[run_id] for run_id in self._open[contact_id]]

    def load_runs(self, run_ids: Iterable[int]) -> None:
        """These runs, if unfinished (locked on PostgreSQL)."""
        wanted = sorted({r for r in run_ids if r not in self.runs})
        rows = self.raw.rows_in(
            f"SELECT {RUN_COLUMNS} FROM journey_runs WHERE {UNFINISHED} "
            f"AND id IN ({{}}) ORDER BY id{self._lock}",
            wanted,
        )
        self.known(rows)

    def load_earlier(self, journey_id: int, contact_ids: Iterable[int]) -> None:
        """The runs these people had of a journey, for its entry rules."""
        wanted = sorted({c for c in contact_ids if (journey_id, c) not in self._earlier})
        for contact_id in wanted:
            self._earlier[(journey_id, contact_id)] = []
        rows = self.raw.rows_in(
            "SELECT id, contact_id, entered_at, status FROM journey_runs "
            "WHERE journey_id = ? AND contact_id IN ({}) ORDER BY id",
            wanted,
            before=(journey_id,),
        )
        for run_id, contact_id, entered_at, status in rows:
            entered = self.raw.read_time(entered_at)
            assert entered is not None
            self._earlier[(journey_id, contact_id)].append(Earlier(run_id, entered, status))

    def earlier(self, journey_id: int, contact_id: int) -> list[Earlier]:
        if (journey_id, contact_id) not in self._earlier:
            self.load_earlier(journey_id, [contact_id])
        return self._earlier[(journey_id, contact_id)]

    def status(self, earlier: Earlier) -> str:
        run = self.runs.get(earlier.id)
        return run.state.status if run is not None and run.state is not None else earlier.status

    # --- writing, once per batch -----------------------------------------------------------

    def insert_run(self, journey: JourneyRef, contact_id: int) -> Run:
        """A new run, at no step yet: its row is written when the batch ends, with the state
        its first advance (made at once) gives it."""
        run_id = self._new_run_id()
        self._entered.append(run_id)
        self._entered_by_contact.setdefault(contact_id, []).append(run_id)
        self.earlier(journey.id, contact_id).append(Earlier(run_id, self.now, "active"))
        if contact_id in self._open:
            self._open[contact_id].append(run_id)
        state: Any = None  # until that first advance
        run = Run(
            run_id, journey.workspace_id, journey.id, journey.current_version, contact_id, state
        )
        self.runs[run_id] = run
        return run

    def _new_run_id(self) -> int:
        """The id the next run will have. SQLite: after the highest, as SQLite would choose
        it (a write transaction holds the database's one write lock, so nobody else takes
        it). PostgreSQL: from the id sequence."""
        if self.raw.postgres:
            found = self.raw.one("SELECT nextval(pg_get_serial_sequence('journey_runs', 'id'))")
            return int(found[0])
        if self._last_id is None:
            self._last_id = int(self.raw.one("SELECT coalesce(max(id), 0) FROM journey_runs")[0])
        self._last_id += 1
        return self._last_id

    def count(self, journey_id: int, step: str, metric: str, amount: int = 1) -> None:
        key = (journey_id, step, metric)
        self.counts[key] = self.counts.get(key, 0) + amount

    def write(self, run: Run, state: RunState, wake_at: datetime | None) -> None:
        """The run's new state (and timer), written when the batch ends."""
        run.state = state
        self._writes[run.id] = wake_at

    def flush(self) -> None:
        if self.sends:
            outcomes = queue_together(self.conn, self.raw, self.sends, self._send_alone, self.now)
            for run, pending, outcome in zip(self._senders, self.sends, outcomes, strict=True):
                self.count(run.journey_id, pending.intent.step, outcome)
            self.sends.clear()
            self._senders.clear()
        if self._writes:
            now, time, json = self.raw.time(self.now), self.raw.time, self.raw.json
            entered = []
            for run_id in self._entered:
                run, wake = self.runs[run_id], self._writes.pop(run_id)
                state = run.state
                entered.append(
                    (
                        *(run_id, run.workspace_id, run.journey_id, run.version, run.contact_id),
                        *(state.status, state.step, json(state.to_dict()), time(wake), now, now),
                    )
                )
            self.raw.many(
                "INSERT INTO journey_runs (id, workspace_id, journey_id, version, contact_id, "
                "status, step, state, wake_at, entered_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                entered,
            )
            self._entered.clear()
            self._entered_by_contact.clear()
            moved = []
            for run_id, wake in self._writes.items():
                state = self.runs[run_id].state
                moved.append(
                    (state.status, state.step, json(state.to_dict()), time(wake), now, run_id)
                )
            self.raw.many(
                "UPDATE journey_runs SET status = ?, step = ?, state = ?, wake_at = ?, "
                "updated_at = ? WHERE id = ?",
                moved,
            )
            self._writes.clear()
        if self.counts:
            definitions.add_counts(self.raw, self.counts)
            self.counts.clear()

    def send(self, run: Run, user_id: str | None, intent: SendIntent, event: Any) -> None:
        """Queue a step's send: a simple one with the batch's others, when it ends."""
        if simple(intent) and user_id is not None:
            self.sends.append(PendingSend(run.workspace_id, run.contact_id, intent, event))
            self._senders.append(run)
            return
        outcome = send_alone(self.conn, run.workspace_id, run.id, user_id, intent, event, self.now)
        self.count(run.journey_id, intent.step, outcome)

    def _send_alone(self, position: int) -> str:
        run, pending = self._senders[position], self.sends[position]
        user_id = self.contact(run.contact_id)[0]
        return send_alone(
            self.conn, run.workspace_id, run.id, user_id, pending.intent, pending.event, self.now
        )
